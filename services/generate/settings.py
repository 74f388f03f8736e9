from __future__ import annotations

from pathlib import Path

from shared.config import ServiceSettings, default_ports

# The registry that ships with the repo: the tiny offline pipelines under the models dir, with the seeds' names.
DEFAULT_MODELS_FILE = Path(__file__).with_name("models.yaml")
DEFAULT_TEMPLATES_FILE = Path(__file__).with_name("templates.yaml")


class GenerateSettings(ServiceSettings):
    service_name: str = "generate"
    grpc_port: int = default_ports("generate")[0]
    metrics_port: int = default_ports("generate")[1]
    # Model registry (YAML); relative `path:` sources in it resolve against resolved_models_dir.
    models_file: Path = DEFAULT_MODELS_FILE
    # Size templates (GenerateParameters.template): named exact output sizes.
    templates_file: Path = DEFAULT_TEMPLATES_FILE
    # "auto" picks cuda, then mps, then cpu; anything else ("cuda:1", "cpu") is pinned, never silently replaced.
    device: str = "auto"
    # Loaded pipelines are kept under this many MiB (GPU memory on CUDA, RAM on CPU); 0 = 80% of the device's
    # memory on CUDA, 50% of physical RAM on CPU. The least recently used pipeline is unloaded first.
    memory_budget_mb: float = 0
    # False skips the entries' `preload: true` (tests, quick starts); models then load on first use.
    preload: bool = True
    max_prompt_length: int = 1000
    # Most images one request may ask for (ModelInfo.max_images_per_request); the orchestrator batches beyond it.
    max_images_per_request: int = 8
    # Dynamic batching: compatible requests arriving within the window run as one pipeline call of at most
    # max_batch_images images. max_batch_images <= 1 switches batching off.
    batch_window_ms: float = 20.0
    max_batch_images: int = 4
    # Live previews on the progress stream: one every this many denoising steps (0 = off), longest side at most
    # preview_max_side pixels, decoded from the latents by a per-family linear projection, or by TAESD
    # (AutoencoderTiny folders, relative to the models dir) for the families listed, e.g. '{"sd1": "taesd"}'.
    preview_every_steps: int = 4
    preview_max_side: int = 128
    preview_taesd: dict[str, str] = {}
    # Torch intra-op threads on CPU; 0 leaves torch's default.
    torch_threads: int = 0
