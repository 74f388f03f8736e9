"""Make sure var/models is prepared before any model test runs (the same step `make test` runs)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Everything must load from disk: a test that silently reaches a hub would pass here and fail in CI.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[2]
MODELS_DIR = Path(os.environ.get("IMAGEMESH_TEST_MODELS_DIR", REPO / "var" / "models"))


@pytest.fixture(scope="session")
def prepared_models() -> Path:
    """Run the idempotent preparation once per session; fast when everything is already in place."""
    from scripts.prepare_models import prepare

    prepare(MODELS_DIR, log=lambda line: None)
    return MODELS_DIR


@pytest.fixture(scope="session", autouse=True)
def _few_threads():
    # Other jobs share this machine's two cores; one thread keeps the suite from starving them.
    import torch

    torch.set_num_threads(1)
