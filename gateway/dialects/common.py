"""GET /health, shared by the FLUX Krea (001) and shotgun (002) dialects: the union of both field sets."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

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
    # Both come from caches the mesh keeps current in the background: this handler makes no RPC.
    services = await mesh.health()
    info = mesh.generate_info
    healthy = all(status == "SERVING" for status in services.values()) and info.known
    model, device = info.model, info.device
    # HealthResponse's fields as a plain dict: this is the hottest path (probes, load balancers), and a model built
    # and dumped per call costs more than everything else the handler does (bench/README.md).
    body = {"status": "healthy" if healthy else "unhealthy", "version": request.app.state.settings.version,
            "model": model, "device": device, "services": dict(services)}
    # 503 lets load balancers act on it; the body still says which service is down.
    return JSONResponse(status_code=200 if healthy else 503, content=body)
