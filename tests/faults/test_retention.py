"""The image store's retention policy (issue 14, class 6): age and total size, on a local folder and on S3 through
the one ImageStore interface, and the orchestrator's periodic sweep."""

from __future__ import annotations

import asyncio
import io

import pytest
from PIL import Image

from services.orchestrator.server import create_server as create_orchestrator
from services.orchestrator.settings import OrchestratorSettings
from shared.image_store import ImageStore, LocalImageStore, RetentionPolicy, S3ImageStore, sweep
from tests.mesh import service_kwargs
from tests.s3 import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, s3_server  # noqa: F401 - the fixture

DAY = 86400.0


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path) -> ImageStore:
    if request.param == "local":
        return LocalImageStore(tmp_path / "images")
    server = request.getfixturevalue("s3_server")
    return S3ImageStore(server.new_bucket(), "retention", endpoint_url=server.endpoint_url, region=REGION,
                        access_key_id=ACCESS_KEY_ID, secret_access_key=SECRET_ACCESS_KEY, addressing_style="path")


def png(side: int, shade: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (side, side), (shade, 0, 0)).save(buf, "PNG")
    return buf.getvalue()


def fill(store: ImageStore, count: int) -> list:
    """`count` images, oldest first."""
    return [store.put(png(16, i), "image/png", 16, 16, owner=f"o{i % 2}", kind="generated") for i in range(count)]


def test_images_past_the_maximum_age_are_deleted(store):
    records = fill(store, 3)
    # Seen two days later with a one-day bound, everything is too old; seen now, nothing is.
    assert sweep(store, RetentionPolicy(max_age_s=DAY), now=records[-1].created_at + 1).deleted == 0
    result = sweep(store, RetentionPolicy(max_age_s=DAY), now=records[-1].created_at + 2 * DAY)
    assert (result.deleted, result.kept) == (3, 0)
    assert store.list() == []


def test_past_the_maximum_size_the_oldest_go_first(store):
    records = fill(store, 4)
    newest_two = sum(r.size_bytes for r in records[2:])
    later = records[-1].created_at + 2 * 3600
    result = sweep(store, RetentionPolicy(max_total_bytes=newest_two, min_age_s=3600), now=later)
    assert result.deleted == 2 and result.freed_bytes == sum(r.size_bytes for r in records[:2])
    assert {r.ref for r in store.list()} == {r.ref for r in records[2:]}


def test_the_size_bound_spares_young_images(store):
    records = fill(store, 3)
    result = sweep(store, RetentionPolicy(max_total_bytes=1, min_age_s=3600), now=records[-1].created_at + 1)
    assert result.deleted == 0 and len(store.list()) == 3


def test_no_bound_keeps_everything(store):
    records = fill(store, 2)
    assert sweep(store, RetentionPolicy(), now=records[-1].created_at + 365 * DAY).deleted == 0
    assert len(store.list()) == 2


async def test_the_orchestrator_sweeps_periodically(tmp_path):
    images = LocalImageStore(tmp_path / "images")
    settings = OrchestratorSettings(**service_kwargs(tmp_path), database_url=f"sqlite:///{tmp_path / 'jobs.db'}",
                                    image_retention_max_age_s=0.5, image_retention_sweep_interval_s=0.1)
    runtime, _port = create_orchestrator(settings)
    await runtime.start()
    try:
        images.put(png(16, 1), "image/png", 16, 16, owner="alice", kind="input")
        for _ in range(300):  # a bound for a failure, not a measured figure
            if not images.list():
                break
            await asyncio.sleep(0.1)
        assert images.list() == []
        assert runtime.retention.last is not None
    finally:
        await runtime.stop(0)
