from __future__ import annotations

from shared.config import ServiceSettings, default_ports


class UpscaleSettings(ServiceSettings):
    service_name: str = "upscale"
    grpc_port: int = default_ports("upscale")[0]
    metrics_port: int = default_ports("upscale")[1]
    # Past this many output pixels an upscale is refused with IMAGE_TOO_LARGE (8192x8192 by default).
    max_output_pixels: int = 8192 * 8192
    max_scale_factor: int = 8
    # Price of a CPU second, for the cost reported with each result.
    cost_per_cpu_second_usd: float = 0.0
