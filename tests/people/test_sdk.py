"""The Python SDK (imagemesh.Client / AsyncClient) against real uvicorn gateways: typed results, the job event
stream, downloads, owner scoping of the new /v1/jobs endpoints, and retries that honour Retry-After."""

from __future__ import annotations

import asyncio
import io

import pytest
from PIL import Image

from imagemesh import AsyncClient, Client, ImageMeshError, ProgressEvent, Task
from tests.images import disc_rgba, png_bytes
from tests.people.conftest import OTHER_KEY, SEED_KEY


async def test_generate_watch_and_download(open_gateway):
    async with AsyncClient(base_url=open_gateway) as sdk:
        submission = await sdk.generate("a green field", width=64, height=96, steps=4, seed=5, num_images=2)
        assert submission.status == "pending" and submission.task_id
        events = [event async for event in sdk.watch(submission.task_id)]
        assert all(isinstance(e, ProgressEvent) for e in events)
        assert events[0].event == "status" and events[-1].status == "completed"
        assert any(e.event == "progress" and e.total_steps for e in events)
        percentages = [e.percentage for e in events if e.event == "progress"]
        assert percentages == sorted(percentages)
        task = await sdk.get_task(submission.task_id)
        assert isinstance(task, Task) and task.done and task.kind == "generate" and len(task.images) == 2
        for url in task.images:
            with Image.open(io.BytesIO(await sdk.download(url))) as image:
                assert image.size == (64, 96)


def _blocking_round_trip(url: str) -> tuple[list[str], Task, bytes]:
    with Client(base_url=url) as sdk:
        names = [w.id for w in sdk.list_workflows()]
        task_id = sdk.upscale(png_bytes(disc_rgba(24)), scale_factor=2, method="lanczos")
        statuses = [event.status for event in sdk.watch(task_id)]
        task = sdk.wait(task_id)
        assert statuses[-1] == "completed"
        return names, task, sdk.download(task.image_url)


async def test_the_blocking_client(open_gateway):
    names, task, data = await asyncio.to_thread(_blocking_round_trip, open_gateway)
    assert "professional_headshot" in names and task.status == "completed"
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (48, 48)


async def test_remove_background_per_model(open_gateway):
    async with AsyncClient(base_url=open_gateway) as sdk:
        cutouts = await sdk.remove_background(png_bytes(disc_rgba(32)), models=["u2netp", "modnet"])
    assert [c.model_id for c in cutouts.results] == ["u2netp", "modnet"]
    assert all(c.status == "success" and c.image.startswith(b"\x89PNG") for c in cutouts.results)


async def test_errors_are_typed(open_gateway):
    async with AsyncClient(base_url=open_gateway) as sdk:
        with pytest.raises(ImageMeshError) as caught:
            await sdk.generate("x", model="no-such-model")
        assert caught.value.status == 400 and caught.value.code == "INVALID_MODEL"
        assert caught.value.details["supported_models"]
        with pytest.raises(ImageMeshError) as caught:
            await sdk.get_task("no-such-task")
        assert caught.value.status == 404 and caught.value.code == "TASK_NOT_FOUND"


async def test_jobs_are_listed_and_cancelled_per_key(seed_gateway):
    async with AsyncClient(api_key=SEED_KEY, base_url=seed_gateway) as mine, \
            AsyncClient(api_key=OTHER_KEY, base_url=seed_gateway) as theirs:
        submission = await mine.generate("mine", width=64, height=64, steps=1)
        await mine.wait(submission.task_id)
        assert submission.task_id in [job.task_id for job in (await mine.list_jobs()).jobs]
        assert submission.task_id not in [job.task_id for job in (await theirs.list_jobs()).jobs]
        with pytest.raises(ImageMeshError) as caught:
            await theirs.cancel(submission.task_id)
        assert caught.value.status == 404
        with pytest.raises(ImageMeshError) as caught:
            await mine.list_jobs(status=["sleeping"])
        assert caught.value.status == 400


async def test_retries_honour_retry_after(throttled_gateway):
    async with AsyncClient(base_url=throttled_gateway, max_retries=0) as impatient:
        with pytest.raises(ImageMeshError) as caught:
            for _ in range(5):
                await impatient.list_workflows()
        assert caught.value.status == 429 and caught.value.retry_after is not None
    async with AsyncClient(base_url=throttled_gateway, max_retries=5, backoff_s=0.01) as patient:
        # Five calls in a window of two per second: the client waits out each 429 and every call succeeds.
        results = [await patient.list_workflows() for _ in range(5)]
    assert all(results)
