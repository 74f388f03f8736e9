"""The catalogues the gateway serves: real data files shipped in the repo, loaded once when the app is built."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class Catalogues:
    templates: list[dict[str, Any]]
    providers: dict[str, Any]
    operations: dict[str, dict[str, Any]]
    styles: dict[str, Any]
    platforms: dict[str, dict[str, Any]]


def _read(folder: Path, name: str) -> dict[str, Any]:
    return yaml.safe_load((folder / name).read_text()) or {}


def load_catalogues(folder: Path) -> Catalogues:
    return Catalogues(
        templates=_read(folder, "templates.yaml")["templates"],
        providers=_read(folder, "providers.yaml"),
        operations=_read(folder, "operations.yaml"),
        styles=_read(folder, "styles.yaml"),
        platforms=_read(folder, "platforms.yaml")["platforms"],
    )
