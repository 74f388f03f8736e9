"""An internal hop of an image against a raw gRPC transfer of the same bytes on loopback.

Subject: the mesh's own hop: a server made by `shared.server.build_server` (the interceptors, metrics, health and
message-size options every service has) answering a unary call whose request and reply are the `imagemesh.v1.Image`
message the orchestrator sends the services (raw RGBA 1024x1024, as the shotgun hop carries it), called through
`shared.clients.create_channel` + `clients.call` (client interceptors, retries, service config).
Baseline (what a user would write instead): a bare `grpc.aio` server and channel with identity serializers
echoing the same bytes; only the message-size limit is raised (gRPC's 4 MB default refuses a 1024x1024 RGBA).
Both ends of both in this process, loopback, interleaved. Goal (issue 15): <= 1.5x.
"""

from __future__ import annotations

import os

import grpc
import numpy as np

from bench.harness import Comparison, compare
from shared import clients
from shared.config import ServiceSettings
from shared.gen.imagemesh.v1 import common_pb2
from shared.server import build_server

SIZE = 1024
REPEATS = int(os.environ.get("BENCH_HOP_REPEATS", "30"))
LIMIT = 64 * 1024 * 1024
METHOD = "/imagemesh.bench.Echo/Echo"


def _echo_handler(request_deserializer=None, response_serializer=None) -> grpc.GenericRpcHandler:
    async def echo(request, context):
        return request

    return grpc.method_handlers_generic_handler("imagemesh.bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(
        echo, request_deserializer=request_deserializer, response_serializer=response_serializer)})


async def run() -> list[Comparison]:
    pixels = np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 4), dtype=np.uint8).tobytes()
    message = common_pb2.Image(data=pixels, media_type="image/x-raw-rgba", width=SIZE, height=SIZE)

    settings = ServiceSettings(service_name="bench_echo", host="127.0.0.1", grpc_port=0, metrics_port=-1,
                               log_json=False)
    runtime = build_server(settings, lambda server: server.add_generic_rpc_handlers(
        (_echo_handler(common_pb2.Image.FromString, common_pb2.Image.SerializeToString),)), ["imagemesh.bench.Echo"])
    await runtime.start()
    mesh_channel = clients.create_channel(f"127.0.0.1:{runtime.port}")
    mesh_echo = mesh_channel.unary_unary(METHOD, request_serializer=common_pb2.Image.SerializeToString,
                                         response_deserializer=common_pb2.Image.FromString)

    options = [("grpc.max_send_message_length", LIMIT), ("grpc.max_receive_message_length", LIMIT)]
    raw_server = grpc.aio.server(options=options)
    raw_server.add_generic_rpc_handlers((_echo_handler(),))
    raw_port = raw_server.add_insecure_port("127.0.0.1:0")
    await raw_server.start()
    raw_channel = grpc.aio.insecure_channel(f"127.0.0.1:{raw_port}", options=options)
    raw_echo = raw_channel.unary_unary(METHOD)
    pb_server = grpc.aio.server(options=options)
    pb_server.add_generic_rpc_handlers((_echo_handler(common_pb2.Image.FromString, common_pb2.Image.SerializeToString),))
    pb_port = pb_server.add_insecure_port("127.0.0.1:0")
    await pb_server.start()
    pb_channel = grpc.aio.insecure_channel(f"127.0.0.1:{pb_port}", options=options)
    pb_echo = pb_channel.unary_unary(METHOD, request_serializer=common_pb2.Image.SerializeToString,
                                     response_deserializer=common_pb2.Image.FromString)

    async def mesh_hop():
        reply = await clients.call(mesh_echo, message, timeout=60)
        assert len(reply.data) == len(pixels)

    async def pb_hop():
        reply = await pb_echo(message, timeout=60)
        assert len(reply.data) == len(pixels)

    async def raw_hop():
        reply = await raw_echo(pixels, timeout=60)
        assert len(reply) == len(pixels)

    try:
        row = await compare(f"internal hop of a {SIZE}x{SIZE} RGBA image, request and reply (goal <= 1.5x)",
                            ("mesh hop: build_server + clients.call, imagemesh.v1.Image", mesh_hop),
                            ("raw grpc.aio echo of the same bytes", raw_hop), repeats=REPEATS, warmup=3,
                            notes=f"{len(pixels) / 1e6:.1f} MB each way, loopback, both ends in one process")
        # Where the difference goes: the protobuf message itself (raw grpc.aio carrying imagemesh.v1.Image) and the
        # mesh's stack (interceptors, metrics, retries) on top of that.
        split = await compare("  of which: the protobuf message", ("raw grpc.aio, imagemesh.v1.Image", pb_hop),
                              ("raw grpc.aio echo of the same bytes", raw_hop), repeats=REPEATS, warmup=1)
        stack = await compare("  of which: the mesh's stack", ("mesh hop", mesh_hop),
                              ("raw grpc.aio, imagemesh.v1.Image", pb_hop), repeats=REPEATS, warmup=1)
    finally:
        await mesh_channel.close()
        await raw_channel.close()
        await pb_channel.close()
        await pb_server.stop(0)
        await runtime.server.stop(0)
        await raw_server.stop(0)
    return [row, split, stack]
