"""A real Upscale server (in-process, port 0, real models from var/models) and helpers for its tests."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pytest
import pytest_asyncio
from PIL import Image

from services.upscale.server import create_server
from services.upscale.settings import UpscaleSettings
from shared import clients
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import upscale_service_pb2_grpc as pb_grpc
from tests.mesh import MODELS_DIR, service_kwargs


@dataclass
class UpscaleServer:
    stub: pb_grpc.UpscaleServiceStub
    runtime: object
    settings: UpscaleSettings

    async def call(self, rpc: str, request):
        return await clients.call(getattr(self.stub, rpc), request, timeout=120)


def settings_for(tmp, **overrides) -> UpscaleSettings:
    # Two intra-op threads: the machine is small and shared; the service default is all cores.
    return UpscaleSettings(**{**service_kwargs(tmp), "sr_threads": 2, **overrides})


@pytest_asyncio.fixture(scope="session")
async def upscale(tmp_path_factory) -> UpscaleServer:
    if not (MODELS_DIR / "realesrgan" / "realesr-animevideov3-x4.onnx").is_file():
        pytest.fail(f"models missing under {MODELS_DIR}: run scripts/prepare_models.py (make models)")
    settings = settings_for(tmp_path_factory.mktemp("upscale"))
    runtime, port = create_server(settings)
    await runtime.start()
    channel = clients.create_channel(f"127.0.0.1:{port}")
    yield UpscaleServer(pb_grpc.UpscaleServiceStub(channel), runtime, settings)
    await channel.close()
    await runtime.stop(0)


def png_message(img: Image.Image) -> common_pb2.Image:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return common_pb2.Image(data=buf.getvalue(), media_type="image/png")


def decode(message: common_pb2.Image) -> Image.Image:
    img = Image.open(io.BytesIO(message.data))
    img.load()
    return img


def photo_crop() -> Image.Image:
    """The astronaut's face, 128x128: real skin, hair and edges."""
    return Image.open(MODELS_DIR / "testdata" / "astronaut.png").convert("RGB").crop((160, 60, 288, 188))


def psnr(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mse = np.mean((a - b) ** 2)
    return float(10 * np.log10(255.0**2 / mse))
