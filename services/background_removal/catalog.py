"""The model catalogue: which background-removal models exist, read from YAML once when the server is built."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

KINDS = ("rembg", "modnet", "remote")


class CatalogError(ValueError):
    """The catalogue file is malformed; the service refuses to start rather than guess."""


@dataclass(frozen=True)
class ModelSpec:
    id: str
    display_name: str
    kind: str
    file: str
    sha256: str = ""
    # rembg session name (kind rembg); rembg finds `<session>.onnx` under U2NET_HOME.
    session: str = ""
    description: str = ""
    preprocess: dict[str, Any] = field(default_factory=dict)
    postprocess: dict[str, Any] = field(default_factory=dict)
    # Other names clients use for it (seed 002's `local_birefnet`, `local_isnet`).
    aliases: tuple[str, ...] = ()
    # kind remote: the hosted provider that would run it (seed 002's Runware, Kie.ai); never called from here.
    provider: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        return (self.id, *self.aliases)


@dataclass(frozen=True)
class Catalog:
    models: tuple[ModelSpec, ...]
    default_model: str

    def get(self, model_id: str) -> ModelSpec | None:
        """The model an id or alias names."""
        return next((m for m in self.models if model_id in m.names), None)

    @property
    def ids(self) -> list[str]:
        return [m.id for m in self.models]


def _spec(raw: dict[str, Any], where: str) -> ModelSpec:
    for key in ("id", "kind") + (("provider",) if raw.get("kind") == "remote" else ("file",)):
        if not raw.get(key):
            raise CatalogError(f"{where}: '{key}' is required")
    if raw["kind"] not in KINDS:
        raise CatalogError(f"{where}: kind must be one of {', '.join(KINDS)}, got {raw['kind']!r}")
    session = raw.get("session") or ""
    if raw["kind"] == "rembg":
        session = session or raw["id"]
        # rembg resolves `<session>.onnx` itself; a different file name would make it try to download.
        if raw["file"] != f"{session}.onnx":
            raise CatalogError(f"{where}: a rembg model's file must be '{session}.onnx' (rembg's own name)")
    known = {"id", "display_name", "kind", "file", "sha256", "session", "description",
             "preprocess", "postprocess", "aliases", "provider"}
    unknown = set(raw) - known
    if unknown:
        raise CatalogError(f"{where}: unknown keys {sorted(unknown)}")
    return ModelSpec(
        id=str(raw["id"]), display_name=str(raw.get("display_name") or raw["id"]), kind=raw["kind"],
        file=str(raw.get("file") or ""), aliases=tuple(str(a) for a in raw.get("aliases") or ()),
        provider=str(raw.get("provider") or ""), sha256=str(raw.get("sha256") or "").lower(), session=session,
        description=str(raw.get("description") or ""),
        preprocess=dict(raw.get("preprocess") or {}), postprocess=dict(raw.get("postprocess") or {}),
    )


def load_catalog(path: Path, default_override: str = "") -> Catalog:
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogError(f"cannot read model catalogue {path}: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("models"), list) or not raw["models"]:
        raise CatalogError(f"{path}: expected a mapping with a non-empty 'models' list")
    models = tuple(_spec(item, f"{path} models[{i}]") for i, item in enumerate(raw["models"]))
    ids = [m.id for m in models]
    names = [name for m in models for name in m.names]
    if len(set(names)) != len(names):
        raise CatalogError(f"{path}: duplicate model ids or aliases")
    default = default_override or raw.get("default_model") or ids[0]
    if default not in ids:
        raise CatalogError(f"{path}: default model {default!r} is not in the catalogue ({', '.join(ids)})")
    return Catalog(models=models, default_model=default)
