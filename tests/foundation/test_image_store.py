"""The image store, over both backends: the local folder and an S3-compatible bucket (moto's server on loopback).

Same behaviour from each: put/get/record/list/delete, owner isolation (NOT_FOUND, never a leak), thumbnails that
never decode an oversized image, and fetchable URLs (presigned for S3, none for the folder)."""

from __future__ import annotations

import io
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from PIL import Image

from shared.config import ServiceSettings
from shared.errors import InvalidArgument, NotFound
from shared.image_store import (
    THUMBNAIL_SIDE,
    ImageStore,
    LocalImageStore,
    S3ImageStore,
    make_thumbnail,
    open_image_store,
)
from tests.images import decompression_bomb_png, disc_rgba, gradient_rgb, png_bytes
from tests.s3 import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, s3_server  # noqa: F401 - the fixture


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path) -> ImageStore:
    if request.param == "local":
        return LocalImageStore(tmp_path / "images")
    server = request.getfixturevalue("s3_server")
    return S3ImageStore(server.new_bucket(), "tenant-a", endpoint_url=server.endpoint_url, region=REGION,
                        access_key_id=ACCESS_KEY_ID, secret_access_key=SECRET_ACCESS_KEY, addressing_style="path")


def _size(data: bytes) -> tuple[str, tuple[int, int]]:
    with Image.open(io.BytesIO(data)) as img:
        return img.format, img.size


def test_both_backends_are_image_stores(store) -> None:
    assert isinstance(store, ImageStore)


def test_put_get_record_list_delete(store) -> None:
    data = png_bytes(disc_rgba(32))
    meta = {"model_id": "lanczos", "prompt": "A red disc"}
    record = store.put(data, "image/png", 32, 32, owner="alice", job_id="job_1", metadata=meta)
    assert record.ref.startswith("img_") and record.size_bytes == len(data)

    got, got_record = store.get(record.ref, "alice")
    assert got == data and got_record == record == store.record(record.ref, "alice")
    assert (got_record.owner, got_record.media_type, got_record.job_id, got_record.metadata) == (
        "alice", "image/png", "job_1", meta)
    # The mesh itself (no owner) reads any image: workers resolve references that way.
    assert store.get(record.ref)[0] == data

    second = store.put(png_bytes(disc_rgba(8)), "image/png", 8, 8, owner="alice", metadata={"prompt": "blue"})
    store.put(png_bytes(disc_rgba(8)), "image/png", 8, 8, owner="bob")
    assert [r.ref for r in store.list("alice")] == [second.ref, record.ref]  # newest first
    assert [r.ref for r in store.list("alice", search="red")] == [record.ref]
    assert [r.ref for r in store.list("alice", model_id="lanczos")] == [record.ref]
    assert len(store.list()) == 3

    store.delete(record.ref, "alice")
    with pytest.raises(NotFound):
        store.get(record.ref, "alice")
    with pytest.raises(NotFound):
        store.get_thumbnail(record.ref)
    assert [r.ref for r in store.list("alice")] == [second.ref]


def test_another_owner_gets_not_found_everywhere(store) -> None:
    record = store.put(png_bytes(disc_rgba(16)), "image/png", 16, 16, owner="alice")
    for read in (store.record, store.get, store.get_thumbnail, store.delete, store.url_for):
        with pytest.raises(NotFound) as err:
            read(record.ref, "mallory")
        assert err.value.reason == "IMAGE_NOT_FOUND"
    assert store.list("mallory") == []
    assert store.get(record.ref, "alice")[1].owner == "alice"  # the refused delete deleted nothing


def test_unknown_and_malformed_refs_are_not_found_and_unknown_media_types_refused(store) -> None:
    for ref in ("img_" + "0" * 32, "../../etc/passwd", "img_x"):
        with pytest.raises(NotFound):
            store.get(ref, "alice")
    with pytest.raises(InvalidArgument):
        store.put(b"GIF89a", "image/gif", 1, 1, owner="alice")


def test_a_bounded_webp_thumbnail_is_made_when_first_asked_for(store) -> None:
    wide = store.put(png_bytes(gradient_rgb(600, 300)), "image/png", 600, 300, owner="alice")
    assert _size(store.get_thumbnail(wide.ref, "alice")) == ("WEBP", (THUMBNAIL_SIDE, THUMBNAIL_SIDE // 2))

    buf = io.BytesIO()
    gradient_rgb(1000, 2000).save(buf, "JPEG")
    tall = store.put(buf.getvalue(), "image/jpeg", 1000, 2000, owner="alice")
    assert _size(store.get_thumbnail(tall.ref, "alice")) == ("WEBP", (THUMBNAIL_SIDE // 2, THUMBNAIL_SIDE))

    raw = disc_rgba(300).tobytes()
    rgba = store.put(raw, "image/x-raw-rgba", 300, 300, owner="alice")
    with Image.open(io.BytesIO(store.get_thumbnail(rgba.ref, "alice"))) as img:
        assert img.size == (THUMBNAIL_SIDE, THUMBNAIL_SIDE) and img.mode == "RGBA"

    # A small image keeps its size.
    small = store.put(png_bytes(disc_rgba(20)), "image/png", 20, 20, owner="alice")
    assert _size(store.get_thumbnail(small.ref, "alice"))[1] == (20, 20)


def test_bytes_that_do_not_decode_are_stored_without_a_thumbnail(store) -> None:
    record = store.put(b"not an image", "image/png", 0, 0, owner="alice")
    assert store.get(record.ref, "alice")[0] == b"not an image"
    with pytest.raises(NotFound) as err:
        store.get_thumbnail(record.ref, "alice")
    assert err.value.reason == "THUMBNAIL_NOT_FOUND"


def test_thumbnails_never_decode_past_the_pixel_limit() -> None:
    # The header claims 30000x30000: refused from the header, before a single row is decoded.
    assert make_thumbnail(decompression_bomb_png(), "image/png", 0, 0, max_pixels=40_000_000) is None
    assert make_thumbnail(png_bytes(disc_rgba(64)), "image/png", 64, 64, max_pixels=64 * 64 - 1) is None
    assert make_thumbnail(png_bytes(disc_rgba(64)), "image/png", 64, 64, max_pixels=64 * 64) is not None
    # Raw pixels whose size disagrees with the claimed dimensions are not trusted.
    assert make_thumbnail(b"\0" * 15, "image/x-raw-rgba", 2, 2) is None


def test_local_urls_are_served_by_the_gateway(tmp_path) -> None:
    store = LocalImageStore(tmp_path)
    record = store.put(png_bytes(disc_rgba(8)), "image/png", 8, 8, owner="alice")
    assert store.url_for(record.ref, "alice") is None
    assert store.url_for(record.ref, "alice", thumbnail=True) is None


def test_s3_presigned_urls_fetch_the_image_and_expire(s3_server) -> None:  # noqa: F811
    store = S3ImageStore(s3_server.new_bucket(), endpoint_url=s3_server.endpoint_url, region=REGION,
                         access_key_id=ACCESS_KEY_ID, secret_access_key=SECRET_ACCESS_KEY, addressing_style="path")
    data = png_bytes(disc_rgba(40))
    record = store.put(data, "image/png", 40, 40, owner="alice")

    url = store.url_for(record.ref, "alice", expires_s=60)
    assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == ["60"]
    reply = httpx.get(url)
    assert reply.status_code == 200 and reply.content == data
    assert reply.headers["content-type"] == "image/png"

    thumb = httpx.get(store.url_for(record.ref, "alice", thumbnail=True))
    assert thumb.status_code == 200 and _size(thumb.content) == ("WEBP", (40, 40))

    stored = store.put(b"junk", "image/png", 0, 0, owner="alice")
    with pytest.raises(NotFound):
        store.url_for(stored.ref, "alice", thumbnail=True)


def test_s3_layout_indexes_owners_by_prefix_and_delete_leaves_nothing(s3_server) -> None:  # noqa: F811
    bucket = s3_server.new_bucket()
    store = S3ImageStore(bucket, "/tenant-a/", endpoint_url=s3_server.endpoint_url, region=REGION,
                         access_key_id=ACCESS_KEY_ID, secret_access_key=SECRET_ACCESS_KEY, addressing_style="path")
    record = store.put(png_bytes(disc_rgba(8)), "image/png", 8, 8, owner="key_alice")
    keys = s3_server.keys(bucket)
    assert all(k.startswith("tenant-a/") for k in keys), keys
    # A write pays for no thumbnail; the first request makes it and keeps it beside the image.
    assert {f"tenant-a/images/{record.ref}", f"tenant-a/images/{record.ref}.json"} < set(keys)
    assert f"tenant-a/images/{record.ref}.thumb.webp" not in keys
    store.get_thumbnail(record.ref, "key_alice")
    keys = s3_server.keys(bucket)
    assert f"tenant-a/images/{record.ref}.thumb.webp" in keys
    (marker,) = s3_server.keys(bucket, "tenant-a/owners/")
    assert marker.endswith("/" + record.ref) and "key_alice" not in marker
    store.delete(record.ref, "key_alice")
    assert s3_server.keys(bucket) == []


def test_the_factory_picks_the_backend_from_the_settings(tmp_path, s3_server, monkeypatch) -> None:  # noqa: F811
    local = open_image_store(ServiceSettings(var_dir=tmp_path))
    assert isinstance(local, LocalImageStore) and local.root == tmp_path / "images"
    other = open_image_store(ServiceSettings(image_store_url=f"file://{tmp_path}/other"))
    assert isinstance(other, LocalImageStore) and other.root == tmp_path / "other"
    assert open_image_store(ServiceSettings(image_store_url=str(tmp_path / "plain"))).root == tmp_path / "plain"
    with pytest.raises(ValueError, match="scheme"):
        open_image_store(ServiceSettings(image_store_url="gs://bucket"))
    with pytest.raises(ValueError, match="bucket"):
        open_image_store(ServiceSettings(image_store_url="s3:///prefix"))

    # As a pod gets it: IMAGEMESH_* for the store, the standard AWS_* variables for the keys.
    bucket = s3_server.new_bucket()
    for name, value in {"IMAGEMESH_IMAGE_STORE_URL": f"s3://{bucket}/images", "IMAGEMESH_S3_REGION": REGION,
                        "IMAGEMESH_S3_ENDPOINT_URL": s3_server.endpoint_url, "IMAGEMESH_S3_ADDRESSING_STYLE": "path",
                        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY}.items():
        monkeypatch.setenv(name, value)
    s3 = open_image_store(ServiceSettings())
    assert isinstance(s3, S3ImageStore) and (s3.bucket, s3.prefix) == (bucket, "images/")
    record = s3.put(png_bytes(disc_rgba(8)), "image/png", 8, 8, owner="alice")
    assert f"images/images/{record.ref}" in s3_server.keys(bucket)
