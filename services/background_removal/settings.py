from __future__ import annotations

from pathlib import Path
from typing import Literal

from shared.config import ServiceSettings, default_ports

DEFAULT_CATALOG = Path(__file__).with_name("models.yaml")


class BackgroundRemovalSettings(ServiceSettings):
    service_name: str = "background_removal"
    grpc_port: int = default_ports("background_removal")[0]
    metrics_port: int = default_ports("background_removal")[1]
    # The model catalogue (YAML); None = the one shipped next to this file.
    models_config: Path | None = None
    # Overrides the catalogue's default_model when set.
    default_model: str = ""
    # ONNX execution provider: "cpu"; "cuda" is strict (a model that cannot run on CUDA is unavailable, with the
    # reason, and health stays NOT_SERVING); "auto" takes CUDA when it really runs, else CPU, reported as CPU.
    provider: Literal["cpu", "cuda", "auto"] = "cpu"
    # onnxruntime intra-op threads (inside one operator). 0 = adapt to load: every CPU when an inference runs
    # alone, an equal share when max_concurrency run at once (a session per level; docs/background-removal.md).
    # A positive number fixes it for every inference.
    intra_op_threads: int = 0
    # onnxruntime inter-op threads (between operators; the models here run their operators one after another).
    inter_op_threads: int = 1
    # Load every available model at start-up, not only the default (a shotgun then never waits for a load).
    preload_all: bool = True
    # pymatting's closed-form alpha matting grows fast with the pixel count; past this it is refused.
    alpha_matting_max_pixels: int = 2_000_000

    @property
    def resolved_models_config(self) -> Path:
        return self.models_config or DEFAULT_CATALOG
