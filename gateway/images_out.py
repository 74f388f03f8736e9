"""GET /images/{ref}: a stored result, for the dialects whose documents give no download path of their own.

Not a dialect: any dialect may link here (the shotgun's `image_url`), so none has to build another dialect's URLs.
The owner check is the orchestrator's: another key's reference is NOT_FOUND.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from gateway import translate
from gateway.security import guard
from shared.gen.imagemesh.v1 import common_pb2

router = APIRouter(tags=["images"])


def image_url(request: Request, image: common_pb2.Image) -> str | None:
    """Where a client can fetch a stored result; None for an inline one."""
    return str(request.url_for("stored_image", ref=image.ref)) if image.ref else None


@router.get("/images/{ref}", dependencies=[Depends(guard("images"))], name="stored_image", response_class=Response,
            summary="A stored result image (a redirect to an expiring URL when the store is S3)",
            responses={200: {"content": {"image/png": {}, "image/webp": {}, "image/jpeg": {}}}})
async def stored_image(ref: str, request: Request,
                       thumbnail: bool = Query(False, description="the thumbnail (WebP, longest side 256)")) -> Response:
    return await translate.stored_image_response(request, ref, thumbnail)
