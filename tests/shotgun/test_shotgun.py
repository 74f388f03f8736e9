"""The shotgun over real models: parallel per-model results, partial failure, streaming, replicas, ranking."""

from __future__ import annotations

import asyncio
import io
import socket

import numpy as np
import pytest
from PIL import Image

from services.orchestrator.settings import OrchestratorSettings
from services.orchestrator.shotgun import InMemoryRanking, Shotgun, overall_status
from shared import clients
from shared.errors import ImageTooLarge, InvalidArgument, InvalidFormat, InvalidModel, MissingImage, ModelUnavailable
from shared.gen.imagemesh.v1 import background_removal_service_pb2_grpc as br_grpc
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as pb
from tests.background_removal.conftest import ASTRONAUT, png, red_disc
from tests.images import decompression_bomb_png
from tests.shotgun.conftest import in_flight, removal_calls, shotgun_mesh, start_replica

SUCCESS, ERROR = pb.SHOTGUN_RESULT_STATUS_SUCCESS, pb.SHOTGUN_RESULT_STATUS_ERROR


def disc_image() -> common_pb2.Image:
    return common_pb2.Image(data=png(red_disc()[0]), media_type="image/png")


def decoded(message: common_pb2.Image) -> Image.Image:
    img = Image.open(io.BytesIO(message.data))
    img.load()
    return img


async def test_two_models_and_a_missing_one_is_partial(mesh2):
    summary = await mesh2.run(image=disc_image(), models=["u2netp", "modnet", "isnet-general-use"])
    assert summary.status == common_pb2.JOB_STATUS_PARTIAL
    assert [r.model_id for r in summary.results] == ["u2netp", "modnet", "isnet-general-use"]  # request order
    u2netp, modnet, missing = summary.results
    for ok in (u2netp, modnet):
        assert ok.status == SUCCESS and not ok.error
        out = decoded(ok.image)
        assert ok.image.media_type == "image/png" and out.mode == "RGBA" and out.size == (256, 256)
        assert (ok.input_dimensions.width, ok.output_dimensions.height) == (256, 256)
        assert ok.processing_time_ms > 0
    alpha = np.asarray(decoded(u2netp.image))[..., 3] / 255.0
    assert alpha[128, 128] > 0.95 and alpha[0, 0] < 0.02  # the real model's cut-out, not a placeholder
    assert u2netp.model_name == "U2-Net (small)" and modnet.model_name == "MODNet portrait matting"
    assert missing.status == ERROR and not missing.HasField("image")
    assert missing.error_detail.reason == "MODEL_UNAVAILABLE"
    assert "isnet-general-use.onnx is not in" in missing.error
    assert missing.cost_usd == 0.0
    price = OrchestratorSettings().price_per_second_usd["cpu"]  # the shotgun mesh keeps the default table
    for ok in (u2netp, modnet):  # priced by the Orchestrator's table from the replica's measured seconds
        assert ok.cost.device_class == "cpu" and ok.cost.device_seconds > 0
        assert ok.cost.usd == ok.cost_usd == pytest.approx(ok.cost.device_seconds * price)
    assert summary.total_cost.usd == summary.total_cost_usd == pytest.approx(u2netp.cost_usd + modnet.cost_usd)
    assert summary.job_id.startswith("job_") and summary.processing_time_ms > 0


async def test_unknown_model_is_refused_before_any_work(mesh2):
    """An id BackgroundRemoval does not list is the caller's mistake, checked once, by the orchestrator."""
    calls_before = [removal_calls(r) for r in mesh2.replicas]
    with pytest.raises(InvalidModel) as refused:
        await mesh2.run(image=disc_image(), models=["u2netp", "no-such-model"])
    assert "no-such-model" in refused.value.message
    assert refused.value.metadata["supported_models"].split(",")[:2] == ["all", "auto"]
    assert "u2netp" in refused.value.metadata["supported_models"].split(",")
    assert [removal_calls(r) for r in mesh2.replicas] == calls_before


async def test_listed_but_unavailable_model_is_its_own_error_entry(mesh2):
    summary = await mesh2.run(image=disc_image(), models=["u2netp", "silueta"])
    assert summary.status == common_pb2.JOB_STATUS_PARTIAL
    bad = summary.results[1]
    assert bad.model_id == "silueta" and bad.status == ERROR and bad.error


async def test_all_models_failing_is_failed(mesh2):
    summary = await mesh2.run(image=disc_image(), models=["silueta", "u2net"])
    assert summary.status == common_pb2.JOB_STATUS_FAILED
    assert [r.status for r in summary.results] == [ERROR, ERROR]
    assert summary.total_cost_usd == 0.0


@pytest.mark.parametrize("models", [[], ["all"]])
async def test_all_runs_every_available_model(mesh2, models):
    summary = await mesh2.run(image=disc_image(), models=models, output_format=common_pb2.IMAGE_FORMAT_WEBP)
    assert summary.status == common_pb2.JOB_STATUS_COMPLETED
    assert [r.model_id for r in summary.results] == ["u2netp", "modnet"]
    assert all(r.image.media_type == "image/webp" and decoded(r.image).mode == "RGBA" for r in summary.results)


async def test_stream_yields_each_result_then_the_summary(mesh2):
    request = pb.StreamShotgunRequest(spec=pb.ShotgunSpec(image=disc_image(),
                                                          models=["modnet", "u2netp", "birefnet-general"]))
    events = [event async for event in clients.stream(mesh2.stub.StreamShotgun, request, timeout=120)]
    kinds = [event.WhichOneof("event") for event in events]
    assert kinds == ["result", "result", "result", "summary"]
    streamed = [event.result.model_id for event in events[:3]]
    assert set(streamed) == {"modnet", "u2netp", "birefnet-general"}
    # As they finish, not in request order: the missing model's error (milliseconds) beats both real models.
    assert streamed[0] == "birefnet-general" and events[0].result.status == ERROR
    summary = events[-1].summary
    assert [r.model_id for r in summary.results] == ["modnet", "u2netp", "birefnet-general"]
    assert summary.status == common_pb2.JOB_STATUS_PARTIAL


async def test_calls_spread_over_both_replicas(mesh2):
    await mesh2.run(image=disc_image(), models=["u2netp"])  # both subchannels are connected after a first call
    before = [removal_calls(r) for r in mesh2.replicas]
    for _ in range(2):
        await mesh2.run(image=disc_image(), models=["u2netp", "modnet"])
    spread = [removal_calls(r) - b for r, b in zip(mesh2.replicas, before)]
    assert sum(spread) == 4
    assert all(calls > 0 for calls in spread), spread


async def test_the_image_is_decoded_once_and_sent_raw(mesh2):
    seen = []
    real = mesh2.replicas[0]

    class Recording:
        """The real stub, with each RemoveBackground request noted on its way."""

        def __init__(self, stub):
            self.ListRemovalModels = stub.ListRemovalModels
            self._remove = stub.RemoveBackground

        def RemoveBackground(self, request, **kwargs):
            seen.append(request.image)
            return self._remove(request, **kwargs)

    channel = clients.create_channel(f"127.0.0.1:{real.port}")
    try:
        shotgun = Shotgun(Recording(br_grpc.BackgroundRemovalServiceStub(channel)), None, InMemoryRanking())
        summary = await shotgun.run(pb.ShotgunSpec(image=disc_image(), models=["u2netp", "modnet"]))
    finally:
        await channel.close()
    assert summary.status == common_pb2.JOB_STATUS_COMPLETED
    assert [m.media_type for m in seen] == ["image/x-raw-rgba"] * 2
    assert seen[0].data == seen[1].data and (seen[0].width, seen[0].height) == (256, 256)
    assert seen[0].data == red_disc()[0].convert("RGBA").tobytes()


async def test_selections_change_the_ranking(mesh2):
    async def picked(**spec):
        summary = await mesh2.run(image=disc_image(), **spec)
        return [r.model_id for r in summary.results]

    # No selections yet: "auto" is the default model, top-k follows the catalogue from the default.
    assert await picked(models=["auto"], image_category="portrait") == ["u2netp"]
    assert await picked(top_k=1, image_category="portrait") == ["u2netp"]
    mesh2.ranking.record("modnet", "portrait")
    mesh2.ranking.record("modnet", "portrait")
    mesh2.ranking.record("u2netp", "product")
    assert await picked(models=["auto"], image_category="portrait") == ["modnet"]
    assert await picked(top_k=1, image_category="portrait") == ["modnet"]
    assert await picked(top_k=2, image_category="portrait") == ["modnet", "u2netp"]
    assert await picked(models=["auto"], image_category="product") == ["u2netp"]
    # A ranked model that is not available is skipped, never run.
    mesh2.ranking.record("silueta", "logo")
    mesh2.ranking.record("silueta", "logo")
    assert await picked(models=["auto"], image_category="logo") == ["u2netp"]
    # top_k limits an explicit list to its best-ranked members.
    assert await picked(models=["u2netp", "modnet"], top_k=1, image_category="portrait") == ["modnet"]


async def test_in_memory_ranking_orders_by_count_per_category():
    ranking = InMemoryRanking()
    assert await ranking("portrait") == []
    for model, category in [("a", "x"), ("b", "x"), ("b", "x"), ("c", "y")]:
        ranking.record(model, category)
    assert await ranking("x") == ["b", "a"]
    assert await ranking("y") == ["c"]
    assert await ranking("") == ["b", "a", "c"]  # every category


async def test_upscale_factor_upscales_every_successful_result(mesh2):
    summary = await mesh2.run(image=disc_image(), models=["u2netp", "u2net"], upscale_factor=2)
    ok, missing = summary.results
    assert ok.status == SUCCESS and ok.upscale_status == "success"
    assert (ok.output_dimensions.width, ok.output_dimensions.height) == (512, 512)
    out = decoded(ok.image)
    assert out.size == (512, 512) and out.mode == "RGBA" and ok.image.media_type == "image/png"
    assert out.getpixel((0, 0))[3] == 0 and out.getpixel((256, 256))[3] > 240
    assert missing.status == ERROR and missing.upscale_status == ""
    assert summary.status == common_pb2.JOB_STATUS_PARTIAL


async def test_a_failed_upscale_keeps_the_cut_out_and_says_why(mesh2):
    summary = await mesh2.run(image=disc_image(), models=["u2netp"], upscale_factor=99)
    result = summary.results[0]
    assert result.status == SUCCESS and result.upscale_status == "error"
    assert "scale_factor" in result.error and result.error_detail.reason == "INVALID_ARGUMENT"
    assert decoded(result.image).size == (256, 256) and result.image.media_type == "image/png"


async def test_run_job_with_a_shotgun_spec(mesh2):
    reply = await clients.call(mesh2.stub.RunJob, pb.RunJobRequest(spec=pb.JobSpec(shotgun=pb.ShotgunSpec(
        image=disc_image(), models=["u2netp"]))), timeout=120)
    assert reply.job.status == common_pb2.JOB_STATUS_COMPLETED
    assert reply.job.result.shotgun.status == common_pb2.JOB_STATUS_COMPLETED


async def test_run_shotgun_is_a_job_and_its_summary_carries_the_job_id(mesh2):
    summary = await mesh2.run(image=disc_image(), models=["u2netp"])
    assert summary.job_id.startswith("job_") and len(summary.job_id) == len("job_") + 32


async def test_run_job_with_a_single_removal(mesh2):
    from shared.gen.imagemesh.v1 import background_removal_service_pb2 as br_pb

    reply = await clients.call(mesh2.stub.RunJob, pb.RunJobRequest(spec=pb.JobSpec(
        remove_background=br_pb.RemoveBackgroundRequest(image=disc_image(), model="modnet"))), timeout=120)
    result = reply.job.result.remove_background
    assert reply.job.status == common_pb2.JOB_STATUS_COMPLETED and result.model_id == "modnet"
    assert decoded(result.image).mode == "RGBA"
    with pytest.raises(ModelUnavailable):
        await clients.call(mesh2.stub.RunJob, pb.RunJobRequest(spec=pb.JobSpec(
            remove_background=br_pb.RemoveBackgroundRequest(image=disc_image(), model="u2net"))), timeout=120)


@pytest.mark.parametrize("spec,error", [
    ({"image": common_pb2.Image(data=b"not an image")}, InvalidFormat),
    ({"image": common_pb2.Image(data=decompression_bomb_png())}, ImageTooLarge),
    ({"models": [f"m{i}" for i in range(17)]}, InvalidArgument),
    ({"top_k": -1}, InvalidArgument),
    ({"output_format": common_pb2.IMAGE_FORMAT_JPEG}, InvalidArgument),
    ({"upscale_factor": -2}, InvalidArgument),
    ({"per_model_timeout_ms": -1}, InvalidArgument),
    ({"image": common_pb2.Image()}, MissingImage),
])
async def test_whole_request_errors(mesh2, spec, error):
    spec = {"image": disc_image(), "models": ["u2netp"], **spec}
    with pytest.raises(error):
        await mesh2.run(**spec)


def test_overall_status_follows_seed_002():
    ok = pb.ShotgunResult(status=SUCCESS)
    bad = pb.ShotgunResult(status=ERROR)
    assert overall_status([ok, ok]) == common_pb2.JOB_STATUS_COMPLETED
    assert overall_status([ok, bad]) == common_pb2.JOB_STATUS_PARTIAL
    assert overall_status([bad, bad]) == common_pb2.JOB_STATUS_FAILED


async def test_no_available_model_is_model_unavailable(tmp_path):
    config = tmp_path / "models.yaml"
    config.write_text("models: [{id: u2net, kind: rembg, file: u2net.onnx}]\n")
    async with shotgun_mesh(tmp_path, replicas=1, replica_settings={"models_config": config}) as running:
        with pytest.raises(ModelUnavailable):
            await running.run(image=disc_image(), models=["all"])


async def test_a_backend_that_never_answers_times_out_per_model(tmp_path):
    # A socket that listens but never speaks HTTP/2: calls hang until their own deadline.
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(16)
        address = f"127.0.0.1:{hole.getsockname()[1]}"
        async with shotgun_mesh(tmp_path, replicas=0, br_addresses=address) as running:
            summary = await asyncio.wait_for(
                running.run(image=disc_image(), models=["u2netp", "modnet"], per_model_timeout_ms=300), 30)
    assert summary.status == common_pb2.JOB_STATUS_FAILED
    for result in summary.results:
        assert result.error_detail.reason == "DEADLINE_EXCEEDED"
        assert result.error == f"model {result.model_id} timed out after 0.3s"


async def test_a_backend_killed_mid_shotgun_gives_per_model_errors(tmp_path):
    doomed = await start_replica(tmp_path, "doomed", max_concurrency=1)
    try:
        async with shotgun_mesh(tmp_path, replicas=0, br_addresses=f"127.0.0.1:{doomed.port}") as running:
            # Alpha matting on the 512x512 photo keeps the single worker busy for a while, the other call queued.
            task = asyncio.create_task(running.run(
                image=common_pb2.Image(data=ASTRONAUT.read_bytes()), models=["u2netp", "modnet"],
                options={"alpha_matting": True}))
            while in_flight(doomed) < 2:
                assert not task.done(), task.result()
                await asyncio.sleep(0.01)
            await doomed.stop(0)
            summary = await asyncio.wait_for(task, 30)
    finally:
        await doomed.stop(0)
    assert summary.status == common_pb2.JOB_STATUS_FAILED
    for result in summary.results:
        assert result.status == ERROR
        assert result.error_detail.reason in ("SERVICE_UNAVAILABLE", "CANCELLED"), result
        assert "unavailable" in result.error
