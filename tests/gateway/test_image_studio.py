"""Contract of Image Studio (seed 003) at /api/image-studio, against the real mesh."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from services.generate import segmentation
from shared import clients
from shared.clients import create_channel
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as orch_pb
from shared.gen.imagemesh.v1 import orchestrator_service_pb2_grpc
from tests.gateway.conftest import SEEDS, assert_error_format, assert_shape
from tests.gateway.helpers import decode_image
from tests.images import b64, disc_rgba, gradient_rgb
from tests.mesh import MODELS_DIR

SEED = SEEDS["003"]
BASE = "/api/image-studio"


def data_url(img) -> str:
    return "data:image/png;base64," + b64(img)


@pytest.mark.parametrize("query,expected", [
    ("", 17), ("?platform=instagram", 3), ("?category=blog_content", 2), ("?platform=instagram&category=blog_content", 0),
])
async def test_templates_filtered(http, query, expected):
    reply = await http.get(f"{BASE}/templates{query}")
    assert reply.status_code == 200
    body = reply.json()
    assert_shape(body, SEED["templates"])
    assert body["total"] == len(body["templates"]) == expected


async def test_search_and_recommend_templates(http):
    body = (await http.get(f"{BASE}/templates/search", params={"query": "linkedin"})).json()
    assert_shape(body, SEED["templates"])
    assert {t["id"] for t in body["templates"]} == {"linkedin_post", "linkedin_banner"}
    body = (await http.get(f"{BASE}/templates/recommend", params={"use_case": "product showcase",
                                                                   "platform": "instagram"})).json()
    assert_shape(body, SEED["templates"])
    assert body["templates"][0]["platform"] == "instagram"
    assert all("Product showcase" in t["use_cases"] for t in body["templates"][:2])
    reply = await http.get(f"{BASE}/templates/search")
    assert_error_format("image_studio", reply, 422)


async def test_providers(http):
    body = (await http.get(f"{BASE}/providers")).json()
    assert_shape(body, SEED["providers"], maps=frozenset({"$.providers"}))
    assert set(body["providers"]) == {"stability", "wavespeed", "huggingface", "gemini"}
    assert body["providers"]["wavespeed"]["models"] == ["ideogram-v3-turbo", "qwen-image"]
    # Which providers a registered model serves is Generate's registry data (models.yaml `providers`).
    assert all(provider["available"] for provider in body["providers"].values())


async def test_templates_carry_generates_exact_sizes(http):
    body = (await http.get(f"{BASE}/templates", params={"platform": "linkedin"})).json()
    sizes = {t["id"]: (t["aspect_ratio"]["width"], t["aspect_ratio"]["height"]) for t in body["templates"]}
    assert sizes == {"linkedin_post": (1200, 628), "linkedin_banner": (1584, 396)}
    story = (await http.get(f"{BASE}/templates/search", params={"query": "instagram story"})).json()["templates"]
    assert [(t["aspect_ratio"]["width"], t["aspect_ratio"]["height"]) for t in story] == [(1080, 1920)]


async def test_estimate_cost(http, mesh):
    reply = await http.post(f"{BASE}/estimate-cost", json=SEED["estimate_cost_request"])
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert_shape(body, SEED["estimate_cost_response"])
    assert body["currency"] == "credits"
    # The credits are the Orchestrator's estimate (its price table, its credit rate), rounded to 2 decimals.
    channel = create_channel(mesh.address("orchestrator"))
    try:
        estimate = await clients.call(orchestrator_service_pb2_grpc.OrchestratorServiceStub(channel).EstimateCost,
                                      orch_pb.EstimateCostRequest(action="generate", model_id="ideogram-v3-turbo",
                                                                  width=1200, height=628, count=1))
    finally:
        await channel.close()
    assert body["estimated_cost"] == round(estimate.credits, 2) > 0
    # Larger outputs cost more; more images cost proportionally more.
    one = (await http.post(f"{BASE}/estimate-cost", json={"provider": "stability", "model": "core",
                                                           "num_images": 1, "width": 2048, "height": 2048})).json()
    two = (await http.post(f"{BASE}/estimate-cost", json={"provider": "stability", "model": "core",
                                                           "num_images": 2, "width": 2048, "height": 2048})).json()
    assert two["estimated_cost"] == pytest.approx(2 * one["estimated_cost"], abs=0.01)
    assert one["estimated_cost"] > body["estimated_cost"]
    reply = await http.post(f"{BASE}/estimate-cost", json={"provider": "wavespeed", "operation": "upscale"})
    assert_error_format("image_studio", reply, 400)
    reply = await http.post(f"{BASE}/estimate-cost", json={"provider": "nobody"})
    body = assert_error_format("image_studio", reply, 400)
    assert "stability" in body["detail"]


@pytest.mark.parametrize("kind,names", [
    ("edit", {"remove_background", "inpaint", "outpaint", "search_replace", "search_recolor", "general_edit"}),
    ("control", {"sketch", "structure", "style", "style_transfer"}),
])
async def test_operations_list_availability(http, kind, names):
    body = (await http.get(f"{BASE}/{kind}/operations")).json()
    assert set(body["operations"]) == names
    if kind == "edit":
        assert_shape(body, SEED["edit_operations"])
    listing = (await http.get("/models")).json()["models"]
    for name, operation in body["operations"].items():
        if name == "remove_background":
            assert operation["available"] is True
        elif not operation["available"]:
            assert operation["unavailable_reason"].startswith("operation not available: no model configured")
    if not listing:  # no generation model registered: every generative operation says so
        assert not any(op["available"] for name, op in body["operations"].items() if name != "remove_background")


async def test_create_generates_with_a_template(http):
    reply = await http.post(f"{BASE}/create", json={"prompt": "Modern office workspace", "template_id": "linkedin_post",
                                                     "quality": "draft", "width": 128, "height": 64, "steps": 2,
                                                     "seed": 7})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert_shape(body, SEED["create_response"])
    assert body["request"]["template_name"] == "LinkedIn Post"
    assert body["request"]["enhanced_prompt"].startswith("Modern office workspace, professional photography")
    assert body["total_generated"] == 1 and body["total_failed"] == 0
    assert decode_image(body["results"][0]["image_base64"]).size == (128, 64)


async def test_create_with_a_template_alone_is_exactly_the_templates_size(http):
    reply = await http.post(f"{BASE}/create", json={"prompt": "Modern office workspace", "template_id": "linkedin_post",
                                                     "steps": 1, "seed": 3})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    # Seed 003's example: linkedin_post is 1200x628 and answers as its recommended provider.
    assert body["request"]["dimensions"] == "1200x628" and body["request"]["provider"] == "wavespeed"
    result = body["results"][0]
    assert (result["width"], result["height"]) == (1200, 628)
    assert decode_image(result["image_base64"]).size == (1200, 628)


async def test_create_more_variations_than_one_request_takes(http):
    # Generate takes 8 images a request; the orchestrator splits the job, seeds continuing image by image.
    reply = await http.post(f"{BASE}/create", json={"prompt": "a lighthouse", "num_variations": 10, "steps": 1,
                                                     "width": 64, "height": 64, "seed": 40})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["total_generated"] == 10 and body["total_failed"] == 0
    assert [r["seed"] for r in body["results"]] == list(range(40, 50))
    assert [r["variation"] for r in body["results"]] == list(range(1, 11))


async def test_create_by_provider_uses_the_model_serving_it(http):
    reply = await http.post(f"{BASE}/create", json={"prompt": "a lighthouse", "provider": "stability", "steps": 1,
                                                     "width": 64, "height": 64, "quality": "premium"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["request"]["provider"] == "stability" and body["request"]["model"] == "tiny-sdxl"


async def test_create_unknown_model_lists_the_supported_ones(http):
    reply = await http.post(f"{BASE}/create", json={"prompt": "x", "model": "no-such-model"})
    body = assert_error_format("image_studio", reply, 400)
    assert "no-such-model" in body["detail"]


async def test_create_unknown_template_is_404(http):
    reply = await http.post(f"{BASE}/create", json={"prompt": "x", "template_id": "nope"})
    assert_error_format("image_studio", reply, 404)


@pytest.mark.parametrize("payload", [
    {"prompt": "x", "num_variations": 11}, {"prompt": "x", "quality": "ultra"}, {"prompt": "x", "steps": 0},
    {"prompt": "x", "width": 10},
], ids=["variations", "quality", "steps", "width"])
async def test_create_out_of_range_is_400(http, payload):
    assert_error_format("image_studio", await http.post(f"{BASE}/create", json=payload), 400)


async def test_create_without_prompt_is_422(http):
    assert_error_format("image_studio", await http.post(f"{BASE}/create", json={}), 422)


async def test_edit_remove_background(http):
    reply = await http.post(f"{BASE}/edit/process", json={"image_base64": data_url(gradient_rgb(64, 48)),
                                                           "operation": "remove_background"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert_shape(body, SEED["edit_response"])
    assert (body["width"], body["height"]) == (64, 48)
    assert decode_image(body["image_base64"]).mode == "RGBA"


@pytest.mark.parametrize("operation,path", [
    ("inpaint", "inpaint"), ("outpaint", "inpaint"), ("general_edit", "instruct-pix2pix"),
    # A mask, when given, wins over the search text (there is none here).
    ("search_replace", "inpaint"), ("search_recolor", "inpaint"),
])
async def test_generative_edits_run_their_models(http, operation, path):
    payload = {"image_base64": data_url(gradient_rgb(64, 64)), "operation": operation, "prompt": "a red ball",
               "mask_base64": b64(disc_rgba(64)), "expand_right": 32, "steps": 2, "seed": 1}
    operations = (await http.get(f"{BASE}/edit/operations")).json()["operations"]
    assert operations[operation]["available"] is True
    reply = await http.post(f"{BASE}/edit/process", json=payload)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert_shape(body, SEED["edit_response"])
    assert body["metadata"]["path"] == path
    expected = (96, 64) if operation == "outpaint" else (64, 64)
    assert decode_image(body["image_base64"]).size == expected == (body["width"], body["height"])


@pytest.mark.parametrize("payload,detail", [
    ({"operation": "inpaint"}, "Prompt is required for inpainting"),
    ({"operation": "teleport"}, "Unsupported operation"),
    ({"operation": "remove_background", "image_base64": "!!!"}, "not valid base64"),
    ({"operation": "general_edit", "prompt": "x", "options": {"image_guidance_scale": [1]}},
     "options.image_guidance_scale must be a number"),
])
async def test_edit_errors(http, payload, detail):
    body = {"image_base64": data_url(gradient_rgb(16, 16)), **payload}
    reply = await http.post(f"{BASE}/edit/process", json=body)
    assert detail in assert_error_format("image_studio", reply, 400)["detail"]


@pytest.mark.parametrize("operation,field", [("search_replace", "search_prompt"), ("search_recolor", "select_prompt")])
async def test_edit_search_without_search_text_or_mask_says_what_is_missing(http, operation, field):
    reply = await http.post(f"{BASE}/edit/process", json={"image_base64": data_url(gradient_rgb(16, 16)),
                                                           "operation": operation, "prompt": "a cat"})
    assert f"{field} is required" in assert_error_format("image_studio", reply, 400)["detail"]


def _changed(before, after):
    return np.abs(np.asarray(before, dtype=np.int16) - np.asarray(after, dtype=np.int16)).max(axis=2) > 0


async def test_search_replace_finds_the_region_with_clipseg(http):
    """A search text that is not the main subject: Generate's segmentation model finds the region and only that
    region is repainted."""
    source = Image.open(MODELS_DIR / "testdata" / "astronaut.png").convert("RGB").resize((64, 64))
    reply = await http.post(f"{BASE}/edit/process", json={
        "image_base64": data_url(source), "operation": "search_replace", "prompt": "a golden helmet",
        "search_prompt": "helmet", "steps": 2, "seed": 4})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert_shape(body, SEED["edit_response"])
    assert body["metadata"]["path"] == "search:clipseg"
    out = decode_image(body["image_base64"]).convert("RGB")
    assert out.size == (64, 64)
    # The same segmentation model, run here, selects the region: the edit happened there and nowhere else.
    region = np.asarray(segmentation.load(str(MODELS_DIR / "tiny-clipseg"), "cpu", None).region(source, "helmet")) > 0
    assert 0 < region.mean() < 1
    changed = _changed(source, out)
    assert not changed[~region].any() and changed[region].mean() > 0.9


async def test_search_recolor_of_the_subject_uses_the_subject_mask(http):
    """A select text naming the main subject: the orchestrator chains BackgroundRemoval's subject mask into
    Generate, and only the subject (a red disc on grey) changes colour."""
    source = Image.new("RGB", (128, 128), (128, 128, 128))
    ImageDraw.Draw(source).ellipse((40, 40, 88, 88), fill=(220, 20, 20))
    reply = await http.post(f"{BASE}/edit/process", json={
        "image_base64": data_url(source), "operation": "search_recolor", "prompt": "bright blue",
        "select_prompt": "the main object", "steps": 2, "seed": 4})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["metadata"]["path"] == "search:subject-mask"
    assert any("subject mask by background removal" in note for note in body["metadata"]["notes"])
    out = decode_image(body["image_base64"]).convert("RGB")
    assert out.size == (128, 128)
    changed = _changed(source, out)
    yy, xx = np.mgrid[:128, :128]
    distance = np.hypot(xx - 64, yy - 64)
    assert changed[distance < 20].mean() > 0.9  # the disc's middle is repainted
    assert not changed[distance > 34].any()  # the background, away from the disc's edge, is untouched


@pytest.mark.parametrize("operation,path,size", [
    ("sketch", "controlnet:lineart", (64, 48)), ("structure", "controlnet:canny", (64, 48)),
    ("style", "ip-adapter", (182, 91)), ("style_transfer", "ip-adapter:img2img", (64, 48)),
])
async def test_control_runs_its_model(http, operation, path, size):
    operations = (await http.get(f"{BASE}/control/operations")).json()["operations"]
    assert operations[operation]["available"] is True
    reply = await http.post(f"{BASE}/control/process", json={
        "control_image_base64": data_url(gradient_rgb(64, 48)), "operation": operation, "prompt": "an office",
        "style_image_base64": data_url(disc_rgba(32).convert("RGB")), "aspect_ratio": "2:1",
        "control_strength": 0.8, "fidelity": 0.5, "composition_fidelity": 0.7, "seed": 3})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert_shape(body, SEED["control_response"])
    assert body["metadata"]["path"] == path
    assert decode_image(body["image_base64"]).size == size == (body["width"], body["height"])


async def test_style_transfer_needs_its_style_image(http):
    reply = await http.post(f"{BASE}/control/process", json={
        "control_image_base64": data_url(gradient_rgb(64, 48)), "operation": "style_transfer", "prompt": "x"})
    assert "style_image_base64 is required" in assert_error_format("image_studio", reply, 400)["detail"]


async def test_control_needs_a_prompt_and_a_known_operation(http):
    reply = await http.post(f"{BASE}/control/process", json={"control_image_base64": b64(disc_rgba(8)),
                                                              "operation": "sketch"})
    assert_error_format("image_studio", reply, 422)
    reply = await http.post(f"{BASE}/control/process", json={"control_image_base64": b64(disc_rgba(8)),
                                                              "operation": "doodle", "prompt": "x"})
    assert_error_format("image_studio", reply, 400)
    reply = await http.post(f"{BASE}/control/process", json={"control_image_base64": b64(disc_rgba(8)),
                                                              "operation": "sketch", "prompt": "x",
                                                              "control_strength": 1.5})
    assert_error_format("image_studio", reply, 400)


@pytest.mark.parametrize("payload,size", [
    ({"mode": "fast", "target_width": 96}, (96, 96)),
    ({"mode": "fast"}, (128, 128)),
    ({"mode": "auto", "preset": "web"}, None),
])
async def test_upscale(http, payload, size):
    reply = await http.post(f"{BASE}/upscale", json={"image_base64": data_url(disc_rgba(32)), **payload})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert_shape(body, SEED["upscale_response"], nullable=frozenset({"preset"}))
    assert body["metadata"]["original_width"] == 32
    if size:
        assert (body["width"], body["height"]) == size == decode_image(body["image_base64"]).size


async def test_upscale_bad_mode_is_400(http):
    reply = await http.post(f"{BASE}/upscale", json={"image_base64": b64(disc_rgba(8)), "mode": "magic"})
    assert_error_format("image_studio", reply, 400)


async def test_social_optimize(http):
    reply = await http.post(f"{BASE}/social/optimize", json={
        "image_base64": data_url(gradient_rgb(200, 150)), "platforms": ["instagram", "facebook"],
        "crop_mode": "center"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert_shape(body, SEED["social_response"])
    assert [r["platform"] for r in body["results"]] == ["instagram", "facebook"]
    for result in body["results"]:
        assert decode_image(result["image_base64"]).size == (result["width"], result["height"])


async def test_platform_formats_and_specs(http):
    reply = await http.get(f"{BASE}/social/platforms/instagram/formats")
    assert reply.status_code == 200, reply.text
    assert_shape(reply.json(), SEED["platform_formats"])
    specs = await http.get(f"{BASE}/platform-specs/instagram")
    assert specs.status_code == 200
    assert_shape(specs.json(), SEED["platform_specs"])
    assert specs.json()["name"] == "Instagram"


async def test_unknown_platform_is_404(http):
    for path in ("social/platforms/myspace/formats", "platform-specs/myspace"):
        reply = await http.get(f"{BASE}/{path}")
        assert_error_format("image_studio", reply, 404)


async def test_health(http):
    reply = await http.get(f"{BASE}/health")
    assert reply.status_code == 200
    body = reply.json()
    assert_shape(body, SEED["health"])
    assert body["service"] == "image_studio" and body["modules"]["templates"] == "available"


async def test_payload_errors(http):
    reply = await http.post(f"{BASE}/upscale", json={"image_base64": "not base64 at all!"})
    assert "not valid base64" in assert_error_format("image_studio", reply, 400)["detail"]
    reply = await http.post(f"{BASE}/upscale", json={})
    assert_error_format("image_studio", reply, 422)


async def test_without_a_capable_model_generative_edits_say_so(mesh, tmp_path):
    """A Generate service whose registry has only a text-to-image model: every generative edit and control
    operation is listed unavailable and answers 501 "operation not available: no model configured"."""
    from services.generate.server import create_server
    from services.generate.settings import GenerateSettings
    from services.orchestrator.server import create_server as create_orchestrator
    from services.orchestrator.settings import OrchestratorSettings
    from tests.gateway.conftest import gateway
    from tests.mesh import service_kwargs

    registry = tmp_path / "models.yaml"
    registry.write_text("default: tiny-sd\nmodels:\n  - id: tiny-sd\n    path: tiny-sd\n"
                        "    operations: [text_to_image]\n    aliases: [flux-1]\n    preload: false\n")
    runtime, port = create_server(GenerateSettings(**service_kwargs(tmp_path), models_file=registry, preload=False))
    await runtime.start()
    # The gateway reaches Generate's catalogue through the orchestrator: this one drives the restricted Generate.
    orchestrator, orchestrator_port = create_orchestrator(OrchestratorSettings(
        **service_kwargs(tmp_path / "orchestrator"), generate_address=f"127.0.0.1:{port}",
        background_removal_address=mesh.address("background_removal"), upscale_address=mesh.address("upscale")))
    await orchestrator.start()
    try:
        async with gateway(mesh, tmp_path, generate_address=f"127.0.0.1:{port}",
                           orchestrator_address=f"127.0.0.1:{orchestrator_port}") as client:
            for kind, operation, payload in (
                ("edit", "inpaint", {"image_base64": data_url(gradient_rgb(32, 32)), "prompt": "x"}),
                ("edit", "general_edit", {"image_base64": data_url(gradient_rgb(32, 32)), "prompt": "x"}),
                ("control", "sketch", {"control_image_base64": data_url(gradient_rgb(32, 32)), "prompt": "x"}),
            ):
                listed = (await client.get(f"{BASE}/{kind}/operations")).json()["operations"]
                assert listed[operation]["available"] is False
                assert listed[operation]["unavailable_reason"].startswith("operation not available: no model")
                reply = await client.post(f"{BASE}/{kind}/process", json={"operation": operation, **payload})
                body = assert_error_format("image_studio", reply, 501)
                assert body["detail"].startswith("operation not available: no model configured")
            listed = (await client.get(f"{BASE}/edit/operations")).json()["operations"]
            assert listed["remove_background"]["available"] is True
    finally:
        await orchestrator.stop(0)
        await runtime.stop(0)
