"""Every documented error of the BackgroundRemoval service, reached for real."""

from __future__ import annotations

import asyncio
import textwrap

import grpc
import onnxruntime as ort
import pytest
from PIL import Image

from services.background_removal.catalog import CatalogError, load_catalog
from services.background_removal.core import BackgroundRemovalCore, RemovalJob
from services.background_removal.loaded import LoadedModels
from services.background_removal.settings import DEFAULT_CATALOG
from shared import clients
from shared.errors import (
    ImageTooLarge,
    InvalidArgument,
    InvalidFormat,
    InvalidModel,
    MissingImage,
    ModelUnavailable,
    QueueFull,
)
from shared.gen.imagemesh.v1 import background_removal_service_pb2 as pb
from shared.gen.imagemesh.v1 import common_pb2
from tests.background_removal.conftest import ASTRONAUT, red_disc, remove, running_service
from tests.images import decompression_bomb_png


async def test_unknown_model_is_invalid_model_with_the_supported_list(stub):
    img, _ = red_disc(64, 16)
    with pytest.raises(InvalidModel) as error:
        await remove(stub, img, "no-such-model")
    assert error.value.reason == "INVALID_MODEL"
    assert error.value.metadata["supported"] == "u2netp,modnet"
    assert error.value.metadata["field"] == "model"
    assert "u2netp" in error.value.message and "modnet" in error.value.message


async def test_configured_model_without_its_file_is_model_unavailable(stub):
    img, _ = red_disc(64, 16)
    with pytest.raises(ModelUnavailable) as error:
        await remove(stub, img, "isnet-general-use")
    assert error.value.reason == "MODEL_UNAVAILABLE"
    assert "isnet-general-use.onnx is not in" in error.value.message


async def test_missing_image(stub):
    with pytest.raises(MissingImage):
        await clients.call(stub.RemoveBackground, pb.RemoveBackgroundRequest(model="u2netp"))


async def test_unreadable_image_is_invalid_format(stub):
    with pytest.raises(InvalidFormat) as error:
        await remove(stub, b"definitely not an image", "u2netp")
    assert error.value.metadata["field"] == "image"


async def test_decompression_bomb_is_image_too_large(stub):
    with pytest.raises(ImageTooLarge):
        await remove(stub, decompression_bomb_png(), "u2netp")


async def test_raw_rgba_with_the_wrong_length_is_invalid_argument(stub):
    raw = common_pb2.Image(data=b"\0" * 10, media_type="image/x-raw-rgba", width=4, height=4)
    with pytest.raises(InvalidArgument):
        await remove(stub, raw, "u2netp")


@pytest.mark.parametrize("options,field", [
    ({"background_color": "green"}, "background_color"),
    ({"output_format": common_pb2.IMAGE_FORMAT_JPEG}, "output_format"),
    ({"alpha_matting": True, "alpha_matting_foreground_threshold": 300}, "alpha_matting_foreground_threshold"),
    ({"alpha_matting": True, "alpha_matting_foreground_threshold": 50, "alpha_matting_background_threshold": 60},
     "alpha_matting_background_threshold"),
    ({"alpha_matting": True, "alpha_matting_erode_size": 500}, "alpha_matting_erode_size"),
])
async def test_bad_options_are_invalid_argument(stub, options, field):
    img, _ = red_disc(64, 16)
    with pytest.raises(InvalidArgument) as error:
        await remove(stub, img, "u2netp", **options)
    assert error.value.metadata["field"] == field


async def test_errors_map_to_grpc_status_codes(stub):
    img, _ = red_disc(64, 16)
    from tests.background_removal.conftest import png

    with pytest.raises(grpc.aio.AioRpcError) as raw:
        await stub.RemoveBackground(pb.RemoveBackgroundRequest(image=common_pb2.Image(data=png(img)), model="x"))
    assert raw.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as raw:
        await stub.RemoveBackground(pb.RemoveBackgroundRequest(image=common_pb2.Image(data=png(img)),
                                                               model="silueta"))
    assert raw.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_alpha_matting_past_its_pixel_limit_is_image_too_large(service):
    core = BackgroundRemovalCore(service.deps.model_registry, alpha_matting_max_pixels=100 * 100)
    with pytest.raises(ImageTooLarge) as error:
        core.validate(RemovalJob(image=Image.new("RGB", (101, 100)), model="u2netp", alpha_matting=True))
    assert error.value.metadata["field"] == "alpha_matting"
    core.validate(RemovalJob(image=Image.new("RGB", (101, 100)), model="u2netp"))  # no matting, no limit


async def test_past_the_queue_bound_is_queue_full(tmp_path):
    async with running_service(tmp_path, max_concurrency=1, max_queue=0, preload_all=False) as running:
        stub = running.stub
        photo = ASTRONAUT.read_bytes()
        results = await asyncio.gather(*(remove(stub, photo, "u2netp", alpha_matting=True) for _ in range(3)),
                                       return_exceptions=True)
    errors = [r for r in results if isinstance(r, Exception)]
    assert any(isinstance(e, QueueFull) for e in errors), results
    assert all(isinstance(e, QueueFull) for e in errors)
    assert len(errors) < 3  # the one that got the worker finished


def _catalog(tmp_path, body: str):
    path = tmp_path / "models.yaml"
    path.write_text(textwrap.dedent(body))
    return path


async def test_default_model_that_cannot_load_keeps_health_not_serving(tmp_path):
    config = _catalog(tmp_path, """
        default_model: broken
        models:
          - {id: broken, kind: modnet, file: modnet.onnx, sha256: "0000"}
          - {id: u2netp, kind: rembg, session: u2netp, file: u2netp.onnx}
    """)
    async with running_service(tmp_path, models_config=config) as (_runtime, stub, channel, _deps):
        assert await clients.check_health(channel) == "NOT_SERVING"
        listed = {m.id: m for m in (await clients.call(stub.ListRemovalModels, pb.ListRemovalModelsRequest())).models}
        assert not listed["broken"].available and "sha256" in listed["broken"].unavailable_reason
        with pytest.raises(ModelUnavailable) as error:
            await remove(stub, red_disc(64, 16)[0], "broken")
        assert "sha256" in error.value.message
        # The other model still works: one bad file does not take the service down with it.
        assert (await remove(stub, red_disc(64, 16)[0], "u2netp")).model_id == "u2netp"


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="this machine has CUDA")
async def test_cuda_asked_without_cuda_fails_clearly_never_falls_back(tmp_path):
    async with running_service(tmp_path, provider="cuda") as (runtime, stub, channel, _deps):
        assert await clients.check_health(channel) == "NOT_SERVING"
        listed = {m.id: m for m in (await clients.call(stub.ListRemovalModels, pb.ListRemovalModelsRequest())).models}
        assert not listed["u2netp"].available
        assert "cuda" in listed["u2netp"].unavailable_reason and "IMAGEMESH_PROVIDER=cpu" in \
            listed["u2netp"].unavailable_reason
        with pytest.raises(ModelUnavailable):
            await remove(stub, red_disc(64, 16)[0], "u2netp")
        assert runtime.metrics.registry.get_sample_value(
            "imagemesh_background_removal_model_loaded", {"model": "u2netp", "provider": "CPUExecutionProvider"}) \
            is None


def test_auto_provider_reports_what_it_runs_on():
    from services.background_removal.providers import requested_providers

    expected = "CUDAExecutionProvider" if "CUDAExecutionProvider" in ort.get_available_providers() else \
        "CPUExecutionProvider"
    assert requested_providers("auto")[0] == expected


@pytest.mark.parametrize("body,message", [
    ("models: []", "non-empty"),
    ("models: [{id: a, kind: torch, file: a.onnx}]", "kind must be"),
    ("models: [{id: a, kind: rembg, session: u2netp, file: other.onnx}]", "u2netp.onnx"),
    ("models: [{id: a, kind: modnet}]", "'file' is required"),
    ("default_model: b\nmodels: [{id: a, kind: modnet, file: a.onnx}]", "default model 'b'"),
    ("models: [{id: a, kind: modnet, file: a.onnx, colour: red}]", "unknown keys"),
    ("models: [{id: a, kind: modnet, file: a.onnx}, {id: a, kind: modnet, file: b.onnx}]", "duplicate"),
])
def test_malformed_catalogue_refuses_to_start(tmp_path, body, message):
    with pytest.raises(CatalogError, match=message):
        load_catalog(_catalog(tmp_path, body))


def test_registry_never_downloads_a_missing_rembg_model(tmp_path):
    catalog = load_catalog(_catalog(tmp_path, "models: [{id: u2net, kind: rembg, file: u2net.onnx}]"))
    registry = LoadedModels(catalog, tmp_path, "cpu", 1, 1)
    with pytest.raises(ModelUnavailable, match="u2net.onnx is not in"):
        registry.runner("u2net")
    assert not list(tmp_path.rglob("*.onnx"))


def test_shipped_catalogue_lists_the_models_md_files():
    catalog = load_catalog(DEFAULT_CATALOG)
    assert catalog.default_model == "u2netp"
    assert catalog.get("u2netp").sha256.startswith("309c8469258dda74")
    assert catalog.get("modnet").sha256.startswith("07c308cf0fc7e6e8")
