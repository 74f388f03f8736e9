"""Loading: LRU under a memory budget, FAILED models answering MODEL_UNAVAILABLE at once, pinned devices."""

from __future__ import annotations

import time

import pytest

from services.generate.loaded import MIB, pipeline_bytes
from shared import clients
from shared.clients import call
from shared.errors import ImageMeshError
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import generate_service_pb2 as pb
from tests.generate.conftest import params, start_generate, tiny_entry


async def states(server) -> dict[str, tuple[int, str]]:
    reply = await call(server.stub.ListModels, pb.ListModelsRequest())
    return {m.id: (m.state, m.state_reason) for m in reply.models}


async def test_lru_unloads_the_least_recently_used_model_to_fit_the_budget(tmp_path):
    entries = [tiny_entry("tiny-sd", "tiny-sd"), tiny_entry("tiny-sd-b", "tiny-sd-b")]
    # One tiny pipeline is about 11 MiB of parameters: 16 MiB holds one, never two.
    server = await start_generate(tmp_path, entries, memory_budget_mb=16)
    try:
        assert {s for s, _ in (await states(server)).values()} == {pb.MODEL_STATE_NOT_LOADED}
        await call(server.stub.Generate, pb.GenerateRequest(parameters=params(model="tiny-sd")))
        first = await states(server)
        assert first["tiny-sd"][0] == pb.MODEL_STATE_READY and first["tiny-sd-b"][0] == pb.MODEL_STATE_NOT_LOADED
        size = server.core.manager.slots["tiny-sd"].bytes
        assert size == pipeline_bytes(server.core.manager.slots["tiny-sd"].pipe)
        assert 8 * MIB < size < 16 * MIB
        await call(server.stub.Generate, pb.GenerateRequest(parameters=params(model="tiny-sd-b")))
        second = await states(server)
        assert second["tiny-sd"][0] == pb.MODEL_STATE_NOT_LOADED and second["tiny-sd-b"][0] == pb.MODEL_STATE_READY
        assert server.core.manager.unloads == ["tiny-sd"]
        assert server.core.manager.loaded_bytes() <= 16 * MIB
        # And back: the first model loads again, evicting the second.
        reply = await call(server.stub.Generate, pb.GenerateRequest(parameters=params(model="tiny-sd")))
        assert reply.metadata.timings.load_ms > 0
        assert server.core.manager.unloads == ["tiny-sd", "tiny-sd-b"]
    finally:
        await server.close()


async def test_both_models_stay_loaded_when_the_budget_allows(tmp_path):
    entries = [tiny_entry("tiny-sd", "tiny-sd", preload=True), tiny_entry("tiny-sd-b", "tiny-sd-b")]
    server = await start_generate(tmp_path, entries, memory_budget_mb=64)
    try:
        first = await call(server.stub.Generate, pb.GenerateRequest(parameters=params(model="tiny-sd")))
        # Preloaded at start: the request found it ready.
        assert first.metadata.timings.load_ms == 0
        await call(server.stub.Generate, pb.GenerateRequest(parameters=params(model="tiny-sd-b")))
        assert {s for s, _ in (await states(server)).values()} == {pb.MODEL_STATE_READY}
        assert server.core.manager.unloads == []
    finally:
        await server.close()


async def test_missing_folder_is_failed_with_its_reason_and_answers_model_unavailable(tmp_path):
    entries = [tiny_entry("gone", "no-such-folder", aliases=["flux-1"]), tiny_entry("tiny-sd", "tiny-sd")]
    server = await start_generate(tmp_path, entries)
    try:
        state, reason = (await states(server))["gone"]
        assert state == pb.MODEL_STATE_FAILED and "model folder not found" in reason and "no-such-folder" in reason
        started = time.monotonic()
        with pytest.raises(ImageMeshError) as info:
            await call(server.stub.Generate, pb.GenerateRequest(parameters=params(model="flux-1")), timeout=30)
        assert info.value.reason == "MODEL_UNAVAILABLE" and "model folder not found" in info.value.message
        assert info.value.metadata["model"] == "gone"
        assert time.monotonic() - started < 10  # an answer, not a hang (generous: this is not a benchmark)
        # The default model failed, so the service is not ready; the other model still works.
        assert not await server.runtime.refresh_health()
        assert await clients.check_health(server.channel) == "NOT_SERVING"
        reply = await call(server.stub.Generate, pb.GenerateRequest(parameters=params(model="tiny-sd")))
        assert reply.metadata.model_id == "tiny-sd"
    finally:
        await server.close()


async def test_a_model_that_fails_to_load_becomes_failed(tmp_path):
    broken = tmp_path / "models" / "broken"
    broken.mkdir(parents=True)
    (broken / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    entries = [tiny_entry("tiny-sd", "tiny-sd"), tiny_entry("broken", str(broken))]
    server = await start_generate(tmp_path, entries)
    try:
        assert (await states(server))["broken"][0] == pb.MODEL_STATE_NOT_LOADED
        for _ in range(2):  # the second request is answered from the FAILED state, without another load
            with pytest.raises(ImageMeshError) as info:
                await call(server.stub.Generate, pb.GenerateRequest(parameters=params(model="broken")))
            assert info.value.reason == "MODEL_UNAVAILABLE"
        state, reason = (await states(server))["broken"]
        assert state == pb.MODEL_STATE_FAILED and reason.startswith("load failed:")
        assert server.core.manager.slots["broken"].loads == 0
        assert await server.runtime.refresh_health()  # the default model is fine
    finally:
        await server.close()


async def test_a_model_larger_than_the_budget_is_failed_not_loaded(tmp_path):
    server = await start_generate(tmp_path, [tiny_entry("tiny-sd", "tiny-sd")], memory_budget_mb=4)
    try:
        with pytest.raises(ImageMeshError) as info:
            await call(server.stub.Generate, pb.GenerateRequest(parameters=params()))
        assert info.value.reason == "MODEL_UNAVAILABLE" and "memory budget" in info.value.message
        assert (await states(server))["tiny-sd"][0] == pb.MODEL_STATE_FAILED
    finally:
        await server.close()


async def test_a_pinned_device_that_does_not_exist_is_reported_not_replaced(tmp_path):
    server = await start_generate(tmp_path, [tiny_entry("tiny-sd", "tiny-sd")], device="cuda:63")
    try:
        reply = await call(server.stub.ListModels, pb.ListModelsRequest())
        assert reply.device == "cuda:63"
        assert reply.models[0].state == pb.MODEL_STATE_FAILED and "not available" in reply.models[0].state_reason
        assert await clients.check_health(server.channel) == "NOT_SERVING"
        with pytest.raises(ImageMeshError) as info:
            await call(server.stub.Generate, pb.GenerateRequest(parameters=params()))
        assert info.value.reason == "MODEL_UNAVAILABLE"
    finally:
        await server.close()


async def test_the_first_request_streams_a_loading_stage(tmp_path):
    server = await start_generate(tmp_path, [tiny_entry("tiny-sd", "tiny-sd")])
    try:
        request = pb.GenerateStreamRequest(parameters=params())
        stages = [e.progress.stage async for e in clients.stream(server.stub.GenerateStream, request)
                  if e.HasField("progress")]
        assert stages[:2] == [common_pb2.STAGE_QUEUED, common_pb2.STAGE_LOADING]
        assert stages.count(common_pb2.STAGE_GENERATING) == 3
        again = [e.progress.stage async for e in clients.stream(server.stub.GenerateStream, request)
                 if e.HasField("progress")]
        assert common_pb2.STAGE_LOADING not in again
    finally:
        await server.close()


async def test_a_hub_model_missing_from_the_offline_cache_is_failed(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache: nothing can be found
    hub = {k: v for k, v in tiny_entry("turbo", "x").items() if k != "path"}
    server = await start_generate(tmp_path, [tiny_entry("tiny-sd", "tiny-sd"), dict(hub, hub="stabilityai/sd-turbo")])
    try:
        with pytest.raises(ImageMeshError) as info:
            await call(server.stub.Generate, pb.GenerateRequest(parameters=params(model="turbo")))
        assert info.value.reason == "MODEL_UNAVAILABLE"
        state, reason = (await states(server))["turbo"]
        assert state == pb.MODEL_STATE_FAILED and reason.startswith("load failed:")
    finally:
        await server.close()
