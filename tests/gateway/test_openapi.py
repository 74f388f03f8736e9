"""The generated OpenAPI schema covers every documented endpoint of the five dialects with its models."""

from __future__ import annotations

import pytest

DOCUMENTED = {
    # 000 Freepik at /v1 (+ the job event stream and the result images the tasks link to)
    ("post", "/v1/generate"), ("get", "/v1/generate/{task_id}"), ("post", "/v1/workflows/{workflow_id}/execute"),
    ("get", "/v1/workflows"), ("post", "/v1/post-process/upscale"), ("post", "/v1/post-process/relight"),
    ("post", "/v1/post-process/remove-background"), ("get", "/v1/analytics/user"), ("get", "/v1/jobs/{job_id}/events"),
    # 001 FLUX Krea and 002 shotgun at /
    ("get", "/health"), ("post", "/generate"), ("get", "/models"), ("post", "/remove-background"),
    ("post", "/upscale"), ("post", "/process"), ("post", "/log-selection"),
    # 003 Image Studio
    *(("post", f"/api/image-studio/{p}") for p in ("create", "estimate-cost", "edit/process", "upscale",
                                                    "control/process", "social/optimize")),
    *(("get", f"/api/image-studio/{p}") for p in ("templates", "templates/search", "templates/recommend", "providers",
                                                   "edit/operations", "control/operations",
                                                   "social/platforms/{platform}/formats", "platform-specs/{platform}",
                                                   "health")),
    # 004 CyberImage
    ("get", "/api/models"), ("post", "/api/generate"), ("get", "/api/status/{job_id}"),
    ("get", "/api/get_image/{image_id}"), ("get", "/api/image/{image_id}/metadata"), ("delete", "/api/image/{image_id}"),
    ("get", "/api/queue"), ("post", "/api/reset_queue"), ("get", "/api/gallery"), ("post", "/api/enrich"),
    # AUTOMATIC1111 web UI API (and the rembg extension)
    *(("post", f"/sdapi/v1/{p}") for p in ("txt2img", "img2img", "extra-single-image", "interrupt", "skip", "options")),
    *(("get", f"/sdapi/v1/{p}") for p in ("progress", "sd-models", "samplers", "upscalers", "options", "scripts")),
    ("post", "/rembg"),
}


@pytest.fixture(scope="module")
async def schema(mesh):
    reply = await mesh.http.get("/openapi.json")
    assert reply.status_code == 200
    return reply.json()


async def test_every_documented_endpoint_is_in_the_schema(schema):
    present = {(method, path) for path, item in schema["paths"].items() for method in item}
    assert DOCUMENTED <= present, sorted(DOCUMENTED - present)


async def test_every_endpoint_documents_its_models(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            ok = operation["responses"]["200"]
            content = ok.get("content", {})
            assert content, f"{method} {path}: no 200 response content"
            if "application/json" in content and path not in ("/api/image/{image_id}/metadata",):
                assert content["application/json"]["schema"], f"{method} {path}: untyped JSON"
            # Body-less actions on one resource: reset the queue, cancel a job.
            if method == "post" and path not in ("/api/reset_queue", "/v1/jobs/{job_id}/cancel"):
                assert "requestBody" in operation, f"{method} {path}: no request body model"


async def test_request_constraints_are_documented(schema):
    flux = schema["components"]["schemas"]["GenerateParams"]["properties"]
    assert flux["steps"]["minimum"] == 20 and flux["steps"]["maximum"] == 50
    assert flux["width"]["multipleOf"] == 8 and flux["prompt"]["maxLength"] == 1000


async def test_auth_schemes_are_documented(schema):
    schemes = schema["components"]["securitySchemes"]
    assert {"HTTPBearer", "APIKeyHeader"} <= set(schemes)


async def test_docs_page(mesh):
    reply = await mesh.http.get("/docs")
    assert reply.status_code == 200 and "swagger" in reply.text.lower()
