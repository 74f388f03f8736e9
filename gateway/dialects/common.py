"""GET /health, shared by the FLUX Krea (001) and shotgun (002) dialects: the union of both field sets."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from gateway import translate

router = APIRouter()


class HealthResponse(BaseModel):
    status: str
    version: str
    model: str
    device: str
    services: dict[str, str]


@router.get("/health", response_model=HealthResponse)
async def health(request: Request) -> JSONResponse:
    mesh = request.app.state.mesh
    services = await mesh.health()
    healthy = all(status == "SERVING" for status in services.values())
    model, device = "", ""
    if services.get("generate") == "SERVING":
        try:
            listing = await translate.list_models(request)
            model, device = listing.default_model, listing.device
        except Exception:  # noqa: BLE001 - health must answer even when a listing fails
            healthy = False
    body = HealthResponse(status="healthy" if healthy else "unhealthy", version=request.app.state.settings.version,
                          model=model, device=device, services=services)
    # 503 lets load balancers act on it; the body still says which service is down.
    return JSONResponse(status_code=200 if healthy else 503, content=body.model_dump())
