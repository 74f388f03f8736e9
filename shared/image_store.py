"""The image store: bytes in a local folder (a PVC in clusters), one JSON record beside each image.

References are opaque ids (`img_<hex>`); records keep the owner so one API key never reads another's images.
Writes go to a temporary file and are renamed into place, so a crash never leaves a half-written image.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from shared.errors import InvalidArgument, NotFound

_REF = re.compile(r"^img_[0-9a-f]{32}$")
_EXTENSIONS = {"image/png": ".png", "image/webp": ".webp", "image/jpeg": ".jpg", "image/x-raw-rgba": ".rgba"}


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


class LocalImageStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _paths(self, ref: str) -> tuple[Path, Path]:
        if not _REF.match(ref):
            raise NotFound(f"image {ref!r} not found", reason="IMAGE_NOT_FOUND")
        folder = self.root / ref[4:6]
        return folder / ref, folder / f"{ref}.json"

    def put(self, data: bytes, media_type: str, width: int, height: int, *, owner: str = "",
            job_id: str = "", metadata: dict[str, str] | None = None, kind: str = "") -> StoredImage:
        if media_type not in _EXTENSIONS:
            raise InvalidArgument(f"cannot store media type {media_type}")
        ref = f"img_{uuid.uuid4().hex}"
        blob, meta_path = self._paths(ref)
        blob.parent.mkdir(parents=True, exist_ok=True)
        record = StoredImage(ref, owner, media_type, width, height, len(data), time.time(), job_id,
                             dict(metadata or {}), kind)
        _atomic_write(blob, data)
        _atomic_write(meta_path, json.dumps(asdict(record)).encode())
        return record

    def record(self, ref: str, owner: str | None = None) -> StoredImage:
        """The record of `ref`; NOT_FOUND when missing or owned by someone else (never a 403 that leaks it)."""
        _blob, meta_path = self._paths(ref)
        try:
            record = StoredImage(**json.loads(meta_path.read_text()))
        except FileNotFoundError:
            raise NotFound(f"image {ref!r} not found", reason="IMAGE_NOT_FOUND") from None
        if owner is not None and record.owner != owner:
            raise NotFound(f"image {ref!r} not found", reason="IMAGE_NOT_FOUND")
        return record

    def get(self, ref: str, owner: str | None = None) -> tuple[bytes, StoredImage]:
        record = self.record(ref, owner)
        blob, _ = self._paths(ref)
        try:
            return blob.read_bytes(), record
        except FileNotFoundError:
            raise NotFound(f"image {ref!r} not found", reason="IMAGE_NOT_FOUND") from None

    def delete(self, ref: str, owner: str | None = None) -> None:
        self.record(ref, owner)
        blob, meta_path = self._paths(ref)
        meta_path.unlink(missing_ok=True)
        blob.unlink(missing_ok=True)

    def list(self, owner: str | None = None, *, search: str = "", model_id: str = "") -> list[StoredImage]:
        """Records newest first, filtered by owner, prompt text and model."""
        records = []
        for meta_path in self.root.glob("*/img_*.json"):
            try:
                record = StoredImage(**json.loads(meta_path.read_text()))
            except (OSError, ValueError, TypeError):
                continue
            if owner is not None and record.owner != owner:
                continue
            if model_id and record.metadata.get("model_id") != model_id:
                continue
            if search and search.lower() not in record.metadata.get("prompt", "").lower():
                continue
            records.append(record)
        records.sort(key=lambda r: r.created_at, reverse=True)
        return records


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
