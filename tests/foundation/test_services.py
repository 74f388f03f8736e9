"""Every service starts, answers its list RPC, exposes reflection and metrics, and maps errors once."""

from __future__ import annotations

import urllib.request

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from services.upscale.server import create_server as create_upscale
from services.upscale.settings import UpscaleSettings
from shared import clients
from shared.clients import create_channel
from shared.errors import ImageTooLarge, InvalidArgument, InvalidFormat, NotImplementedYet
from shared.gen.imagemesh.v1 import (
    background_removal_service_pb2 as br_pb,
)
from shared.gen.imagemesh.v1 import (
    background_removal_service_pb2_grpc as br_grpc,
)
from shared.gen.imagemesh.v1 import (
    common_pb2,
)
from shared.gen.imagemesh.v1 import (
    generate_service_pb2 as gen_pb,
)
from shared.gen.imagemesh.v1 import (
    generate_service_pb2_grpc as gen_grpc,
)
from shared.gen.imagemesh.v1 import (
    orchestrator_service_pb2 as orch_pb,
)
from shared.gen.imagemesh.v1 import (
    orchestrator_service_pb2_grpc as orch_grpc,
)
from shared.gen.imagemesh.v1 import (
    upscale_service_pb2 as up_pb,
)
from shared.gen.imagemesh.v1 import (
    upscale_service_pb2_grpc as up_grpc,
)
from tests.images import decompression_bomb_png, disc_rgba, png_bytes
from tests.mesh import service_kwargs


async def test_upscale_lists_its_methods(mesh):
    channel = create_channel(mesh.address("upscale"))
    try:
        reply = await up_grpc.UpscaleServiceStub(channel).ListMethods(up_pb.ListMethodsRequest())
        assert "lanczos" in [m.id for m in reply.methods]
    finally:
        await channel.close()


async def test_generate_and_background_removal_answer_their_list_rpcs(mesh):
    channel = create_channel(mesh.address("generate"))
    try:
        reply = await gen_grpc.GenerateServiceStub(channel).ListModels(gen_pb.ListModelsRequest())
        assert reply.device
    finally:
        await channel.close()
    channel = create_channel(mesh.address("background_removal"))
    try:
        await br_grpc.BackgroundRemovalServiceStub(channel).ListRemovalModels(br_pb.ListRemovalModelsRequest())
    finally:
        await channel.close()


async def test_reflection_lists_the_service(mesh):
    channel = create_channel(mesh.address("orchestrator"))
    try:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)

        async def requests():
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        names = []
        async for reply in stub.ServerReflectionInfo(requests()):
            names = [s.name for s in reply.list_services_response.service]
        assert "imagemesh.v1.OrchestratorService" in names
        assert "grpc.health.v1.Health" in names
    finally:
        await channel.close()


async def test_errors_carry_error_info_reason_across_grpc(mesh):
    channel = create_channel(mesh.address("upscale"))
    stub = up_grpc.UpscaleServiceStub(channel)
    try:
        with pytest.raises(ImageTooLarge) as bomb:
            await clients.call(stub.Upscale, up_pb.UpscaleRequest(
                image=common_pb2.Image(data=decompression_bomb_png()), scale_factor=2))
        assert bomb.value.reason == "IMAGE_TOO_LARGE" and bomb.value.metadata["field"] == "image"
        with pytest.raises(InvalidFormat):
            await clients.call(stub.Upscale, up_pb.UpscaleRequest(image=common_pb2.Image(data=b"nope"), scale_factor=2))
        with pytest.raises(grpc.aio.AioRpcError) as raw:
            await stub.Upscale(up_pb.UpscaleRequest(image=common_pb2.Image(data=b"nope"), scale_factor=2))
        assert raw.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        await channel.close()


async def test_unbuilt_capability_says_so(mesh):
    channel = create_channel(mesh.address("orchestrator"))
    try:
        # Every orchestrator RPC is built; an unbuilt method of a backend still says so, through a job too.
        spec = orch_pb.JobSpec(upscale=up_pb.UpscaleRequest(
            image=common_pb2.Image(data=png_bytes(disc_rgba(8))), scale_factor=2, method="creative-diffusion"))
        with pytest.raises(NotImplementedYet):
            await clients.call(orch_grpc.OrchestratorServiceStub(channel).RunJob, orch_pb.RunJobRequest(spec=spec))
    finally:
        await channel.close()


async def test_unknown_exception_is_internal_with_a_generic_message(tmp_path):
    from services.upscale.core import UpscaleCore
    from services.upscale.server import UpscaleDeps

    class BrokenCore(UpscaleCore):
        def upscale(self, job):
            raise RuntimeError("secret internals")

    settings = UpscaleSettings(**service_kwargs(tmp_path))
    runtime, port = create_upscale(settings, UpscaleDeps(core=BrokenCore(settings, engines={})))
    await runtime.start()
    channel = create_channel(f"127.0.0.1:{port}")
    try:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await up_grpc.UpscaleServiceStub(channel).Upscale(up_pb.UpscaleRequest(
                image=common_pb2.Image(data=png_bytes(disc_rgba(8))), scale_factor=2))
        assert err.value.code() == grpc.StatusCode.INTERNAL
        assert "secret" not in err.value.details()
    finally:
        await channel.close()
        await runtime.stop(0)


async def test_metrics_endpoint_counts_requests_by_method_and_code(tmp_path):
    runtime, port = create_upscale(UpscaleSettings(**{**service_kwargs(tmp_path), "metrics_port": 0}))
    await runtime.start()
    channel = create_channel(f"127.0.0.1:{port}")
    try:
        stub = up_grpc.UpscaleServiceStub(channel)
        await stub.ListMethods(up_pb.ListMethodsRequest())
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Upscale(up_pb.UpscaleRequest(image=common_pb2.Image(data=b"x"), scale_factor=2))
        text = urllib.request.urlopen(f"http://127.0.0.1:{runtime.metrics_port}/metrics").read().decode()
        assert 'imagemesh_grpc_requests_total{code="OK",method="/imagemesh.v1.UpscaleService/ListMethods"} 1.0' in text
        assert 'code="INVALID_ARGUMENT",method="/imagemesh.v1.UpscaleService/Upscale"' in text
        assert "imagemesh_grpc_request_duration_seconds_bucket" in text
        assert "imagemesh_grpc_in_flight" in text
    finally:
        await channel.close()
        await runtime.stop(0)


async def test_large_messages_pass_the_default_4mb_limit(mesh):
    # 1500x1500 RGB raw is 9 MB: it must cross the mesh (the 4 MB default would refuse it).
    from PIL import Image

    img = Image.new("RGBA", (1500, 1500), (1, 2, 3, 255))
    channel = create_channel(mesh.address("upscale"))
    try:
        reply = await up_grpc.UpscaleServiceStub(channel).Upscale(up_pb.UpscaleRequest(
            image=common_pb2.Image(data=img.tobytes(), media_type="image/x-raw-rgba", width=1500, height=1500),
            scale_factor=2, output_format=common_pb2.IMAGE_FORMAT_RAW_RGBA))
        assert len(reply.image.data) == 3000 * 3000 * 4
    finally:
        await channel.close()


async def test_one_registry_holds_the_service_metrics_and_the_rpc_metrics(tmp_path):
    """The registry is made before the server: the core's metrics and the interceptor's count on the same one."""
    from prometheus_client import CollectorRegistry

    from services.upscale.server import UpscaleDeps

    registry = CollectorRegistry()
    runtime, port = create_upscale(UpscaleSettings(**service_kwargs(tmp_path)), UpscaleDeps(metrics_registry=registry))
    await runtime.start()
    channel = create_channel(f"127.0.0.1:{port}")
    try:
        await up_grpc.UpscaleServiceStub(channel).Upscale(up_pb.UpscaleRequest(
            image=common_pb2.Image(data=png_bytes(disc_rgba(8))), scale_factor=2, method="lanczos"))
        assert runtime.metrics.registry is registry
        assert registry.get_sample_value("imagemesh_upscale_upscales_total", {"method": "lanczos"}) == 1
        assert registry.get_sample_value("imagemesh_grpc_requests_total",
                                         {"method": "/imagemesh.v1.UpscaleService/Upscale", "code": "OK"}) == 1
    finally:
        await channel.close()
        await runtime.stop(0)


def _ref_calls(ref: str) -> dict:
    image = common_pb2.Image(ref=ref)
    return {
        "generate_init_image": ("generate", gen_grpc.GenerateServiceStub, "Generate", gen_pb.GenerateRequest(
            parameters=gen_pb.GenerateParameters(prompt="x", operation=gen_pb.GENERATE_OPERATION_IMAGE_TO_IMAGE,
                                                 init_image=image))),
        "upscale": ("upscale", up_grpc.UpscaleServiceStub, "Upscale", up_pb.UpscaleRequest(image=image,
                                                                                         scale_factor=2)),
        "relight": ("upscale", up_grpc.UpscaleServiceStub, "Relight", up_pb.RelightRequest(
            image=image, lighting_style="professional")),
        "optimize_social": ("upscale", up_grpc.UpscaleServiceStub, "OptimizeSocial", up_pb.OptimizeSocialRequest(
            image=image, platforms=["instagram"])),
        "remove_background": ("background_removal", br_grpc.BackgroundRemovalServiceStub, "RemoveBackground",
                              br_pb.RemoveBackgroundRequest(image=image)),
    }


@pytest.mark.parametrize("call", list(_ref_calls("")))
async def test_backends_refuse_image_references(mesh, call):
    """Only the orchestrator reads the image store (under the caller's owner): a backend given a reference,
    even to an image that exists, answers INVALID_ARGUMENT instead of reading it for whoever asks."""
    orchestrator = create_channel(mesh.address("orchestrator"))
    try:
        job = (await clients.call(orch_grpc.OrchestratorServiceStub(orchestrator).SubmitJob, orch_pb.SubmitJobRequest(
            spec=orch_pb.JobSpec(upscale=up_pb.UpscaleRequest(
                image=common_pb2.Image(data=png_bytes(disc_rgba(16))), scale_factor=2)), owner="alice"))).job
    finally:
        await orchestrator.close()
    ref = job.spec.upscale.image.ref  # the upload, in the store the backends' folder would be
    assert ref.startswith("img_")
    service, stub_class, method, request = _ref_calls(ref)[call]
    channel = create_channel(mesh.address(service))
    try:
        with pytest.raises(InvalidArgument) as err:
            await clients.call(getattr(stub_class(channel), method), request)
        assert err.value.reason == "IMAGE_REF_NOT_ACCEPTED" and err.value.metadata["field"] == "image"
    finally:
        await channel.close()
