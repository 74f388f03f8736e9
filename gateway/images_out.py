"""GET /images/{ref}: a stored result, for the dialects whose documents give no download path of their own.

Not a dialect: any dialect may link here (the shotgun's `image_url`), so none has to build another dialect's URLs.
The owner check is the orchestrator's: another key's reference is NOT_FOUND.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from starlette.requests import HTTPConnection

from gateway import translate
from gateway.limits import IdPath
from gateway.security import guard
from shared.gen.imagemesh.v1 import common_pb2

router = APIRouter(tags=["images"])


def public_url(request: HTTPConnection, name: str, **path_params: str) -> str:
    """An absolute URL of one of this gateway's routes, on the configured public base URL (never the request's
    Host header, which a client controls)."""
    path = request.app.url_path_for(name, **path_params)
    return request.app.state.settings.resolved_public_base_url + str(path)


def image_url(request: HTTPConnection, image: common_pb2.Image) -> str | None:
    """Where a client can fetch a stored result; None for an inline one."""
    return public_url(request, "stored_image", ref=image.ref) if image.ref else None


@router.get("/images/{ref}", dependencies=[Depends(guard("images"))], name="stored_image", response_class=Response,
            summary="A stored result image (a redirect to an expiring URL when the store is S3)",
            responses={200: {"content": {"image/png": {}, "image/webp": {}, "image/jpeg": {}}}})
async def stored_image(ref: IdPath, request: Request,
                       thumbnail: bool = Query(False, description="the thumbnail (WebP, longest side 256)")) -> Response:
    return await translate.stored_image_response(request, ref, thumbnail)
