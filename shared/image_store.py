"""The image store: one interface (`ImageStore`), two backends, chosen by `open_image_store(settings)`.

- `LocalImageStore` (default): a folder (a PVC in clusters), one JSON record beside each image.
- `S3ImageStore`: an S3-compatible bucket (AWS S3, MinIO, Google Cloud Storage through its S3 interoperability
  API), the same JSON record as a sidecar object beside each image.

References are opaque ids (`img_<hex>`); records keep the owner so one API key never reads another's images:
a read that names an owner answers NOT_FOUND for anyone else's image (never a 403 that leaks that it exists).
A WebP thumbnail (longest side 256) is made the first time it is asked for and kept beside the image: a write
never pays for one (most stored images are never shown small). Bytes that do not decode within the pixel limit
have no thumbnail (THUMBNAIL_NOT_FOUND); they are still stored, and the service that decodes them says why.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import time
import uuid
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit

from PIL import Image as PILImage

from shared.errors import InvalidArgument, NotFound, ServiceUnavailable
from shared.images import RAW_RGBA

_REF = re.compile(r"^img_[0-9a-f]{32}$")
_EXTENSIONS = {"image/png": ".png", "image/webp": ".webp", "image/jpeg": ".jpg", RAW_RGBA: ".rgba"}
_PIL_FORMATS = ("PNG", "WEBP", "JPEG")
THUMBNAIL_SIDE = 256
THUMBNAIL_MEDIA_TYPE = "image/webp"
DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_URL_EXPIRES_S = 900


@dataclass
class StoredImage:
    ref: str
    owner: str
    media_type: str
    width: int
    height: int
    size_bytes: int
    created_at: float
    job_id: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    # "generated", "derived" or "input" (services/orchestrator/media.py); "" for records older than kinds.
    kind: str = ""


@runtime_checkable
class ImageStore(Protocol):
    """What every backend offers. `owner=None` is the mesh itself (no owner check); any string is a caller."""

    def put(self, data: bytes, media_type: str, width: int, height: int, *, owner: str = "",
            job_id: str = "", metadata: dict[str, str] | None = None, kind: str = "") -> StoredImage: ...

    def record(self, ref: str, owner: str | None = None) -> StoredImage: ...

    def get(self, ref: str, owner: str | None = None) -> tuple[bytes, StoredImage]: ...

    def get_thumbnail(self, ref: str, owner: str | None = None) -> bytes:
        """The WebP thumbnail; NOT_FOUND when the image is missing, someone else's, or had none."""
        ...

    def delete(self, ref: str, owner: str | None = None) -> None: ...

    def list(self, owner: str | None = None, *, search: str = "", model_id: str = "") -> list[StoredImage]:
        """Records newest first, filtered by owner, prompt text and model."""
        ...

    def url_for(self, ref: str, owner: str | None, expires_s: int = DEFAULT_URL_EXPIRES_S, *,
                thumbnail: bool = False) -> str | None:
        """A URL a client can fetch the image (or its thumbnail) from directly, valid for `expires_s`; None when
        the backend has none (the local folder: the gateway serves those bytes itself)."""
        ...


def _not_found(ref: str) -> NotFound:
    return NotFound("image not found", reason="IMAGE_NOT_FOUND")  # the ref is client input: not echoed


def _check_ref(ref: str) -> None:
    if not _REF.match(ref):
        raise _not_found(ref)


def _check_owner(record: StoredImage, owner: str | None) -> StoredImage:
    if owner is not None and record.owner != owner:
        raise _not_found(record.ref)
    return record


def _matches(record: StoredImage, owner: str | None, search: str, model_id: str) -> bool:
    if owner is not None and record.owner != owner:
        return False
    if model_id and record.metadata.get("model_id") != model_id:
        return False
    return not search or search.lower() in record.metadata.get("prompt", "").lower()


def _new_record(data: bytes, media_type: str, width: int, height: int, owner: str, job_id: str,
                metadata: dict[str, str] | None, kind: str = "") -> StoredImage:
    if media_type not in _EXTENSIONS:
        raise InvalidArgument(f"cannot store media type {media_type}")
    return StoredImage(f"img_{uuid.uuid4().hex}", owner, media_type, width, height, len(data), time.time(), job_id,
                       dict(metadata or {}), kind)


def _thumbnail_of(data: bytes, record: StoredImage, max_pixels: int) -> bytes:
    thumbnail = make_thumbnail(data, record.media_type, record.width, record.height, max_pixels)
    if thumbnail is None:
        raise NotFound(f"image {record.ref!r} has no thumbnail (its bytes do not decode within the limits)",
                       reason="THUMBNAIL_NOT_FOUND")
    return thumbnail


def make_thumbnail(data: bytes, media_type: str, width: int, height: int,
                   max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes | None:
    """A WebP whose longest side is at most THUMBNAIL_SIDE; None when the bytes do not decode or are too large.

    The pixel count comes from the header (or the raw size) and is checked before any pixel is decoded, so a
    stored image can never make this allocate more than `max_pixels`; JPEG decodes straight at a reduced scale.
    """
    try:
        with warnings.catch_warnings():
            # Our own bound below replaces PIL's bomb warning (whose threshold is not ours).
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            if media_type == RAW_RGBA:
                if width <= 0 or height <= 0 or width * height > max_pixels or len(data) != width * height * 4:
                    return None
                img = PILImage.frombuffer("RGBA", (width, height), data, "raw", "RGBA", 0, 1)
            else:
                img = PILImage.open(io.BytesIO(data), formats=_PIL_FORMATS)
                if img.width * img.height > max_pixels:
                    return None
                img.draft("RGB", (THUMBNAIL_SIDE, THUMBNAIL_SIDE))
            if img.mode not in ("RGB", "RGBA"):
                img = img.convert("RGBA")
            img.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
            out = io.BytesIO()
            img.save(out, "WEBP", quality=80)
            return out.getvalue()
    except Exception:  # noqa: BLE001 - a thumbnail is best effort; the image itself is stored regardless
        return None


# --- local folder ------------------------------------------------------------------------------------------------


class LocalImageStore:
    """`<root>/<ref[4:6]>/<ref>` (bytes), `<ref>.json` (record), `<ref>.thumb.webp` (thumbnail).

    Writes go to a temporary file and are renamed into place, record last, so a crash never leaves a half-written
    image and a listed image always has its bytes."""

    def __init__(self, root: Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_pixels = max_pixels

    def _paths(self, ref: str) -> tuple[Path, Path, Path]:
        _check_ref(ref)
        folder = self.root / ref[4:6]
        return folder / ref, folder / f"{ref}.json", folder / f"{ref}.thumb.webp"

    def put(self, data: bytes, media_type: str, width: int, height: int, *, owner: str = "",
            job_id: str = "", metadata: dict[str, str] | None = None, kind: str = "") -> StoredImage:
        record = _new_record(data, media_type, width, height, owner, job_id, metadata, kind)
        blob, meta_path, _thumb = self._paths(record.ref)
        blob.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(blob, data)
        _atomic_write(meta_path, json.dumps(asdict(record)).encode())
        return record

    def record(self, ref: str, owner: str | None = None) -> StoredImage:
        _blob, meta_path, _thumb = self._paths(ref)
        try:
            record = StoredImage(**json.loads(meta_path.read_text()))
        except FileNotFoundError:
            raise _not_found(ref) from None
        return _check_owner(record, owner)

    def get(self, ref: str, owner: str | None = None) -> tuple[bytes, StoredImage]:
        record = self.record(ref, owner)
        blob, _, _ = self._paths(ref)
        try:
            return blob.read_bytes(), record
        except FileNotFoundError:
            raise _not_found(ref) from None

    def get_thumbnail(self, ref: str, owner: str | None = None) -> bytes:
        record = self.record(ref, owner)
        _, _, thumb_path = self._paths(ref)
        try:
            return thumb_path.read_bytes()
        except FileNotFoundError:
            pass
        data, _ = self.get(ref)
        thumbnail = _thumbnail_of(data, record, self.max_pixels)
        _atomic_write(thumb_path, thumbnail)
        return thumbnail

    def delete(self, ref: str, owner: str | None = None) -> None:
        self.record(ref, owner)
        blob, meta_path, thumb_path = self._paths(ref)
        meta_path.unlink(missing_ok=True)
        thumb_path.unlink(missing_ok=True)
        blob.unlink(missing_ok=True)

    def list(self, owner: str | None = None, *, search: str = "", model_id: str = "") -> list[StoredImage]:
        records = []
        for meta_path in self.root.glob("*/img_*.json"):
            try:
                record = StoredImage(**json.loads(meta_path.read_text()))
            except (OSError, ValueError, TypeError):
                continue
            if _matches(record, owner, search, model_id):
                records.append(record)
        records.sort(key=lambda r: r.created_at, reverse=True)
        return records

    def url_for(self, ref: str, owner: str | None, expires_s: int = DEFAULT_URL_EXPIRES_S, *,
                thumbnail: bool = False) -> str | None:
        self.record(ref, owner)
        return None


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# --- S3-compatible object storage ----------------------------------------------------------------------------------


class S3ImageStore:
    """Objects under `<prefix>/`:

        images/<ref>               the bytes (Content-Type: the media type)
        images/<ref>.json          the record (owner, media type, size, job id, metadata)
        images/<ref>.thumb.webp    the thumbnail
        owners/<owner key>/<ref>   an empty marker: the owner's index

    A reference alone finds its record (the workers read references with no owner), and listing one owner is a
    prefix listing of `owners/<owner key>/` instead of a scan of the whole bucket. The cost: S3 listings carry no
    user data, so `list` GETs every listed record (in parallel, `list_workers` at a time) to sort and filter by
    prompt/model: one LIST per 1000 images plus one GET per image of that owner. Fine for galleries of thousands;
    beyond that the records belong in a database index. The owner key is a hash, so API key ids never appear in
    object names and any owner string is a valid key.

    Writes: bytes and thumbnail first, then the record, then the marker, so a listed image always has its bytes.
    Deletes go the other way (marker and record first), so a half-done delete leaves at worst unlisted bytes.
    """

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str = "", region: str = "",
                 access_key_id: str = "", secret_access_key: str = "", addressing_style: str = "auto",
                 public_endpoint_url: str = "", max_pixels: int = DEFAULT_MAX_PIXELS, list_workers: int = 16,
                 client: Any = None) -> None:
        self.bucket = bucket
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self.max_pixels = max_pixels
        self.list_workers = list_workers
        options = {"endpoint_url": endpoint_url, "region": region, "access_key_id": access_key_id,
                   "secret_access_key": secret_access_key, "addressing_style": addressing_style}
        self.client = client or _s3_client(**options)
        # Presigned URLs are for clients outside the cluster, who may reach the store by another address.
        self.presign_client = (_s3_client(**{**options, "endpoint_url": public_endpoint_url})
                               if public_endpoint_url else self.client)

    # keys
    def _blob_key(self, ref: str) -> str:
        _check_ref(ref)
        return f"{self.prefix}images/{ref}"

    def _record_key(self, ref: str) -> str:
        return self._blob_key(ref) + ".json"

    def _thumb_key(self, ref: str) -> str:
        return self._blob_key(ref) + ".thumb.webp"

    def _owner_prefix(self, owner: str) -> str:
        return f"{self.prefix}owners/{hashlib.sha256(owner.encode()).hexdigest()[:32]}/"

    # object calls, with S3's errors mapped onto the mesh's
    def _put_object(self, key: str, body: bytes, content_type: str) -> None:
        with _s3_errors(key):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)

    def _get_object(self, key: str, missing: NotFound) -> bytes:
        with _s3_errors(key, missing):
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def _keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        with _s3_errors(prefix):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                keys += [item["Key"] for item in page.get("Contents", [])]
        return keys

    # the interface
    def put(self, data: bytes, media_type: str, width: int, height: int, *, owner: str = "",
            job_id: str = "", metadata: dict[str, str] | None = None, kind: str = "") -> StoredImage:
        record = _new_record(data, media_type, width, height, owner, job_id, metadata, kind)
        self._put_object(self._blob_key(record.ref), data, media_type)
        self._put_object(self._record_key(record.ref), json.dumps(asdict(record)).encode(), "application/json")
        self._put_object(self._owner_prefix(owner) + record.ref, b"", "application/octet-stream")
        return record

    def record(self, ref: str, owner: str | None = None) -> StoredImage:
        record = StoredImage(**json.loads(self._get_object(self._record_key(ref), _not_found(ref))))
        return _check_owner(record, owner)

    def get(self, ref: str, owner: str | None = None) -> tuple[bytes, StoredImage]:
        record = self.record(ref, owner)
        return self._get_object(self._blob_key(ref), _not_found(ref)), record

    def get_thumbnail(self, ref: str, owner: str | None = None) -> bytes:
        record = self.record(ref, owner)
        try:
            return self._get_object(self._thumb_key(ref), _not_found(ref))
        except NotFound:
            return self._make_thumbnail(record)

    def _make_thumbnail(self, record: StoredImage) -> bytes:
        thumbnail = _thumbnail_of(self._get_object(self._blob_key(record.ref), _not_found(record.ref)), record,
                                  self.max_pixels)
        self._put_object(self._thumb_key(record.ref), thumbnail, THUMBNAIL_MEDIA_TYPE)
        return thumbnail

    def delete(self, ref: str, owner: str | None = None) -> None:
        record = self.record(ref, owner)
        keys = [self._owner_prefix(record.owner) + ref, self._record_key(ref), self._thumb_key(ref),
                self._blob_key(ref)]
        with _s3_errors(ref):
            # One call per key, in order: DeleteObjects gives no order, and a half-done delete must never leave a
            # listed image without bytes. Deleting a missing key is not an error in S3.
            for key in keys:
                self.client.delete_object(Bucket=self.bucket, Key=key)

    def list(self, owner: str | None = None, *, search: str = "", model_id: str = "") -> list[StoredImage]:
        if owner is None:
            refs = [key.rsplit("/", 1)[1][:-5] for key in self._keys(f"{self.prefix}images/")
                    if key.endswith(".json")]
        else:
            refs = [key.rsplit("/", 1)[1] for key in self._keys(self._owner_prefix(owner))]

        def load(ref: str) -> StoredImage | None:
            try:
                return self.record(ref)
            except (NotFound, ValueError, TypeError):
                return None  # deleted meanwhile, or a stray object under the prefix

        with ThreadPoolExecutor(max_workers=max(1, min(self.list_workers, len(refs)))) as pool:
            loaded = list(pool.map(load, refs))
        records = [r for r in loaded if r is not None and _matches(r, owner, search, model_id)]
        records.sort(key=lambda r: r.created_at, reverse=True)
        return records

    def url_for(self, ref: str, owner: str | None, expires_s: int = DEFAULT_URL_EXPIRES_S, *,
                thumbnail: bool = False) -> str | None:
        record = self.record(ref, owner)
        key = self._blob_key(ref)
        if thumbnail:
            key = self._thumb_key(ref)
            try:
                with _s3_errors(key, _not_found(ref)):
                    self.client.head_object(Bucket=self.bucket, Key=key)
            except NotFound:
                self._make_thumbnail(record)  # first asked for: made now, kept
        return self.presign_client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=int(expires_s))


def _s3_client(*, endpoint_url: str, region: str, access_key_id: str, secret_access_key: str,
               addressing_style: str) -> Any:
    import boto3
    from botocore.config import Config

    # SigV4 everywhere: presigned URLs then carry X-Amz-Expires, and GCS interoperability (HMAC keys) accepts it.
    config = Config(signature_version="s3v4", s3={"addressing_style": addressing_style},
                    retries={"mode": "standard", "max_attempts": 3})
    # Empty keys: boto3's own chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, IRSA, instance roles).
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint_url or None, region_name=region or None,
        aws_access_key_id=access_key_id or None, aws_secret_access_key=secret_access_key or None, config=config)


@contextmanager
def _s3_errors(key: str, missing: NotFound | None = None) -> Iterator[None]:
    """Maps botocore's errors: a missing key is `missing` (NOT_FOUND) where given; anything else is UNAVAILABLE."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if missing is not None and code in ("NoSuchKey", "404", "NotFound"):
            raise missing from None
        raise ServiceUnavailable(f"image store: {code or exc} on {key!r}", reason="IMAGE_STORE_UNAVAILABLE") from exc
    except BotoCoreError as exc:
        raise ServiceUnavailable(f"image store unreachable: {exc}", reason="IMAGE_STORE_UNAVAILABLE") from exc


# --- choosing a backend ---------------------------------------------------------------------------------------------


def open_image_store(settings: Any) -> ImageStore:
    """The store that `settings.image_store_url` names (a `shared.config.ServiceSettings`):

    empty                  the folder `image_store_dir` (default `<var_dir>/images`)
    /path or file:///path  that folder
    s3://bucket[/prefix]   an S3-compatible bucket; endpoint, region, addressing style and keys from the
                           `s3_*` settings (IMAGEMESH_S3_*), keys otherwise from boto3's chain (AWS_* variables)
    """
    url = settings.image_store_url.strip()
    max_pixels = settings.max_image_pixels
    if not url:
        return LocalImageStore(settings.resolved_image_store_dir, max_pixels=max_pixels)
    parts = urlsplit(url)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ValueError(f"image_store_url {url!r} names no bucket (s3://bucket/prefix)")
        return S3ImageStore(
            parts.netloc, parts.path, endpoint_url=settings.s3_endpoint_url, region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=settings.s3_secret_access_key.get_secret_value(),
            addressing_style=settings.s3_addressing_style, public_endpoint_url=settings.s3_public_endpoint_url,
            max_pixels=max_pixels)
    if parts.scheme == "file":
        return LocalImageStore(Path(unquote(parts.path)), max_pixels=max_pixels)
    if not parts.scheme:
        return LocalImageStore(Path(url), max_pixels=max_pixels)
    raise ValueError(f"image_store_url {url!r}: the scheme must be s3:// or file:// (GCS: s3:// with "
                     "s3_endpoint_url=https://storage.googleapis.com)")


# --- retention ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetentionPolicy:
    """How long stored images are kept and how much the store may hold (0 = no bound).

    `max_age_s`: an image older than this is deleted. `max_total_bytes`: past this total, the oldest images go
    first until the store fits. `min_age_s`: the size bound never deletes an image younger than this, so the
    uploads of a job still in the queue (and the outputs a client is about to fetch) survive a burst."""

    max_age_s: float = 0.0
    max_total_bytes: int = 0
    min_age_s: float = 3600.0

    @property
    def enabled(self) -> bool:
        return self.max_age_s > 0 or self.max_total_bytes > 0


@dataclass
class SweepResult:
    deleted: int = 0
    freed_bytes: int = 0
    kept: int = 0
    kept_bytes: int = 0


def sweep(store: ImageStore, policy: RetentionPolicy, now: float | None = None) -> SweepResult:
    """Apply `policy` to `store` through the ImageStore interface (list, delete), so a local folder and an S3
    bucket keep the same rules. Safe to run from several replicas at once: an image another sweep deleted first
    is skipped."""
    now = time.time() if now is None else now
    result = SweepResult()
    if not policy.enabled:
        return result
    total = 0
    for record in store.list(None):  # newest first
        age = now - record.created_at
        too_old = policy.max_age_s > 0 and age > policy.max_age_s
        over_size = (policy.max_total_bytes > 0 and total + record.size_bytes > policy.max_total_bytes
                     and age > policy.min_age_s)
        if too_old or over_size:
            try:
                store.delete(record.ref)
            except NotFound:
                continue
            result.deleted += 1
            result.freed_bytes += record.size_bytes
            continue
        total += record.size_bytes
        result.kept += 1
    result.kept_bytes = total
    return result
