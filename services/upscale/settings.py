from __future__ import annotations

from shared.config import ServiceSettings, default_ports


class UpscaleSettings(ServiceSettings):
    service_name: str = "upscale"
    grpc_port: int = default_ports("upscale")[0]
    metrics_port: int = default_ports("upscale")[1]
    # Past this many output pixels an upscale is refused with IMAGE_TOO_LARGE (8192x8192 by default).
    max_output_pixels: int = 8192 * 8192
    max_scale_factor: int = 8
    # onnxruntime execution provider for the super-resolution models: "auto" (CUDA when onnxruntime-gpu has it,
    # else CPU, chosen once and reported), "cpu" or "cuda". An explicit "cuda" that cannot load makes the SR
    # methods unavailable (with the reason) instead of running them on the CPU behind the caller's back.
    sr_provider: str = "auto"
    # onnxruntime / ncnn threads per inference; 0 = the engine's default (all cores).
    sr_threads: int = 0
    # Tiles are sr_tile_size x sr_tile_size input pixels; larger inputs are split so that the model's activations
    # stay bounded. 0 = never tile. sr_tile_overlap input pixels of context are added on each side of a tile
    # (half of it discarded, half cross-faded with the neighbour).
    sr_tile_size: int = 256
    sr_tile_overlap: int = 16
    # The catalogue of social platform formats; empty = the built-in services/upscale/platforms.yaml.
    platforms_file: str = ""
