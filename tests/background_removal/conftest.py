"""A real BackgroundRemoval server (real models from var/models) on port 0, shared by this directory's tests."""

from __future__ import annotations

import io
from contextlib import asynccontextmanager
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import pytest_asyncio
from PIL import Image, ImageDraw

from services.background_removal.server import BackgroundRemovalDeps, build_deps, create_server
from services.background_removal.settings import BackgroundRemovalSettings
from shared import clients
from shared.clients import create_channel
from shared.gen.imagemesh.v1 import background_removal_service_pb2 as pb
from shared.gen.imagemesh.v1 import background_removal_service_pb2_grpc as pb_grpc
from shared.gen.imagemesh.v1 import common_pb2
from shared.server import ServiceRuntime
from tests.mesh import MODELS_DIR, service_kwargs

ASTRONAUT = MODELS_DIR / "testdata" / "astronaut.png"


def red_disc(size: int = 256, radius: int = 64) -> tuple[Image.Image, np.ndarray]:
    """MODELS.md's synthetic test: a red disc on grey, and its true 0/1 area."""
    img = Image.new("RGB", (size, size), (128, 128, 128))
    c = size // 2
    ImageDraw.Draw(img).ellipse((c - radius, c - radius, c + radius, c + radius), fill=(255, 0, 0))
    truth = np.asarray(Image.new("L", (size, size), 0).copy())
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).ellipse((c - radius, c - radius, c + radius, c + radius), fill=255)
    truth = np.asarray(mask) / 255.0
    return img, truth


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def decoded(message: common_pb2.Image) -> Image.Image:
    if message.media_type == "image/x-raw-rgba":
        return Image.frombytes("RGBA", (message.width, message.height), message.data)
    img = Image.open(io.BytesIO(message.data))
    img.load()
    return img


class RunningService(NamedTuple):
    runtime: ServiceRuntime
    stub: pb_grpc.BackgroundRemovalServiceStub
    channel: object
    deps: BackgroundRemovalDeps  # kept, so tests can reach the loaded runners through deps.model_registry


@asynccontextmanager
async def running_service(tmp: Path, **overrides):
    settings = BackgroundRemovalSettings(**{**service_kwargs(tmp), **overrides})
    deps = build_deps(settings)
    runtime, port = create_server(settings, deps)
    await runtime.start()
    channel = create_channel(f"127.0.0.1:{port}")
    try:
        yield RunningService(runtime, pb_grpc.BackgroundRemovalServiceStub(channel), channel, deps)
    finally:
        await channel.close()
        await runtime.stop(0)


@pytest_asyncio.fixture(scope="module")
async def service(tmp_path_factory: pytest.TempPathFactory):
    async with running_service(tmp_path_factory.mktemp("bgremoval")) as running:
        yield running


@pytest.fixture
def stub(service):
    return service.stub


async def remove(stub, image: Image.Image | bytes | common_pb2.Image, model: str = "", **options):
    output_format = options.pop("output_format", common_pb2.IMAGE_FORMAT_PNG)
    if isinstance(image, Image.Image):
        image = common_pb2.Image(data=png(image))
    elif isinstance(image, bytes):
        image = common_pb2.Image(data=image)
    request = pb.RemoveBackgroundRequest(image=image, model=model, output_format=output_format,
                                         options=pb.RemovalOptions(**options))
    return await clients.call(stub.RemoveBackground, request, timeout=120)
