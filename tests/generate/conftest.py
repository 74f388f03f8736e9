"""Real in-process Generate servers over the tiny offline pipelines (var/models/tiny-sd*)."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
import yaml
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from services.generate.core import GenerateCore
from services.generate.server import GenerateDeps, build_deps, create_server
from services.generate.settings import GenerateSettings
from shared.clients import create_channel
from shared.gen.imagemesh.v1 import generate_service_pb2 as pb
from shared.gen.imagemesh.v1 import generate_service_pb2_grpc as pb_grpc
from tests.mesh import MODELS_DIR, service_kwargs

# Tiny sizes keep the whole directory fast on two shared cores.
SIZE = 64
STEPS = 3


def tiny_entry(model_id: str, path: str, **extra) -> dict:
    entry = dict(id=model_id, path=path, dtype="float32", default_steps=STEPS, min_steps=1, max_steps=800,
                 default_width=SIZE, default_height=SIZE, min_size=64, max_size=512, size_multiple=8)
    entry.update(extra)
    return entry


def write_registry(tmp: Path, entries: list[dict], default: str | None = None) -> Path:
    path = tmp / "models.yaml"
    path.write_text(yaml.safe_dump({"default": default or entries[0]["id"], "models": entries}))
    return path


def standard_entries() -> list[dict]:
    return [
        tiny_entry("tiny-sd", "tiny-sd", aliases=["flux-1", "imagen3", "black-forest-labs/FLUX.1-schnell"],
                   operations=["text_to_image", "image_to_image"]),
        tiny_entry("tiny-sd-b", "tiny-sd-b", aliases=["flux-dev"], supports_negative_prompt=False),
        tiny_entry("tiny-sd-inpaint", "tiny-sd-inpaint", pipeline="StableDiffusionInpaintPipeline",
                   operations=["inpaint"]),
    ]


@dataclass
class GenServer:
    runtime: object
    channel: object
    stub: pb_grpc.GenerateServiceStub
    deps: GenerateDeps

    @property
    def core(self) -> GenerateCore:
        return self.deps.core

    async def close(self) -> None:
        await self.channel.close()
        await self.runtime.stop(0)


async def start_generate(tmp: Path, entries: list[dict] | None = None, default: str | None = None,
                         **overrides) -> GenServer:
    tmp.mkdir(parents=True, exist_ok=True)
    registry = write_registry(tmp, entries or standard_entries(), default)
    # Pinned to cpu so that the assertions hold on a GPU machine too (auto is tested in test_registry).
    settings = dict(service_kwargs(tmp), models_file=registry, device="cpu", torch_threads=1, batch_window_ms=0,
                    max_batch_images=4)
    settings.update(overrides)
    generate_settings = GenerateSettings(**settings)
    deps = build_deps(generate_settings)  # kept, so tests can look at the model manager and the worker
    runtime, port = create_server(generate_settings, deps)
    await runtime.start()
    channel = create_channel(f"127.0.0.1:{port}")
    return GenServer(runtime, channel, pb_grpc.GenerateServiceStub(channel), deps)


@pytest_asyncio.fixture(scope="module")
async def gen(tmp_path_factory):
    server = await start_generate(tmp_path_factory.mktemp("generate"))
    yield server
    await server.close()


@pytest.fixture(scope="session", autouse=True)
def _few_threads():
    import torch

    torch.set_num_threads(1)


def params(**kwargs) -> pb.GenerateParameters:
    base = dict(prompt="a photo of an astronaut", width=SIZE, height=SIZE, steps=STEPS, seed=1234)
    base.update(kwargs)
    return pb.GenerateParameters(**base)


def pixels(image_msg) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(image_msg.data)).convert("RGB"), dtype=np.int16)


__all__ = [
    "MODELS_DIR",
    "SIZE",
    "STEPS",
    "GenServer",
    "params",
    "pixels",
    "standard_entries",
    "start_generate",
    "tiny_entry",
    "write_registry",
]
