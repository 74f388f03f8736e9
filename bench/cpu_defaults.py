"""Upscale (Real-ESRGAN) and Generate (the tiny pipeline at 512x512) on CPU: a lone request to the service as
`make run` starts it (its own process, default settings) against the same work in-process with the library's
defaults (what a user would run instead):

- Upscale: `realesrgan-x4` on a 256x256 crop of the astronaut (-> 1024x1024, PNG out) against onnxruntime's
  `InferenceSession` with default options on the same .onnx file, untiled, plus the same PNG decode and encode.
- Generate: 512x512, 4 steps, seed 7, one image, against `DiffusionPipeline.from_pretrained` on the same folder
  with torch's default threads, plus the PNG encode.

Both sides interleaved in one run. Goal (issue 15): each <= 1.05x.
"""

from __future__ import annotations

import asyncio
import io
import os

import numpy as np
from PIL import Image

from bench._procs import MODELS_DIR, MeshProcesses
from bench.harness import Comparison, compare

REPEATS = int(os.environ.get("BENCH_CPU_REPEATS", "3"))
PROMPT = "a photo of an astronaut riding a horse"
SIZE, STEPS = 512, 4


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


async def run() -> list[Comparison]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import grpc
    import onnxruntime as ort
    import torch
    from diffusers import DiffusionPipeline

    from shared import clients
    from shared.gen.imagemesh.v1 import common_pb2
    from shared.gen.imagemesh.v1 import generate_service_pb2 as gen_pb
    from shared.gen.imagemesh.v1 import generate_service_pb2_grpc as gen_grpc
    from shared.gen.imagemesh.v1 import upscale_service_pb2 as up_pb
    from shared.gen.imagemesh.v1 import upscale_service_pb2_grpc as up_grpc

    crop = Image.open(MODELS_DIR / "testdata" / "astronaut.png").convert("RGB").crop((128, 0, 384, 256))
    crop_png = _png(crop)
    session = ort.InferenceSession(str(MODELS_DIR / "realesrgan" / "realesr-animevideov3-x4.onnx"),
                                   providers=["CPUExecutionProvider"])  # default SessionOptions
    input_name = session.get_inputs()[0].name

    def upscale_in_process():
        rgb = np.asarray(Image.open(io.BytesIO(crop_png)).convert("RGB"), dtype=np.float32) / 255.0
        y = session.run(None, {input_name: rgb.transpose(2, 0, 1)[None]})[0][0]
        out = (np.clip(y.transpose(1, 2, 0), 0, 1) * 255.0 + 0.5).astype(np.uint8)
        _png(Image.fromarray(out))

    pipe = DiffusionPipeline.from_pretrained(str(MODELS_DIR / "tiny-sd"))
    pipe.set_progress_bar_config(disable=True)

    def generate_in_process():
        image = pipe(prompt=PROMPT, width=SIZE, height=SIZE, num_inference_steps=STEPS, guidance_scale=7.5,
                     generator=torch.Generator().manual_seed(7)).images[0]
        _png(image)

    mesh = await asyncio.to_thread(MeshProcesses(services=("generate", "upscale"), gateway=False).start)
    rows = []
    try:
        up_channel = grpc.aio.insecure_channel(mesh.addresses["IMAGEMESH_UPSCALE_ADDRESS"],
                                               options=[("grpc.max_receive_message_length", 64 << 20)])
        gen_channel = grpc.aio.insecure_channel(mesh.addresses["IMAGEMESH_GENERATE_ADDRESS"],
                                                options=[("grpc.max_receive_message_length", 64 << 20)])
        upscale = up_grpc.UpscaleServiceStub(up_channel)
        generate = gen_grpc.GenerateServiceStub(gen_channel)

        async def upscale_service():
            reply = await clients.call(upscale.Upscale, up_pb.UpscaleRequest(
                image=common_pb2.Image(data=crop_png), method="realesrgan-x4", scale_factor=4,
                output_format=common_pb2.IMAGE_FORMAT_PNG), timeout=600)
            assert reply.image.data[:4] == b"\x89PNG"

        async def generate_service():
            reply = await clients.call(generate.Generate, gen_pb.GenerateRequest(parameters=gen_pb.GenerateParameters(
                prompt=PROMPT, width=SIZE, height=SIZE, steps=STEPS, seed=7, guidance_scale=7.5)), timeout=600)
            assert reply.images

        threads = torch.get_num_threads()
        rows.append(await compare("upscale realesrgan-x4 256->1024 lone request (goal <= 1.05x)",
                                  ("Upscale service (make run defaults)", upscale_service),
                                  ("onnxruntime in-process, default options", lambda: asyncio.to_thread(
                                      upscale_in_process)), repeats=REPEATS,
                                  notes="one gRPC hop on loopback, PNG in and out"))
        rows.append(await compare(f"generate tiny-sd {SIZE}x{SIZE} {STEPS} steps lone request (goal <= 1.05x)",
                                  ("Generate service (make run defaults)", generate_service),
                                  ("diffusers in-process, library defaults", lambda: asyncio.to_thread(
                                      generate_in_process)), repeats=REPEATS,
                                  notes=f"one gRPC hop on loopback, PNG out; torch threads in-process {threads}"))
        await up_channel.close()
        await gen_channel.close()
    finally:
        await asyncio.to_thread(mesh.stop)
    return rows
