"""`python -m gateway`: the REST gateway under uvicorn, with its metrics endpoint and graceful shutdown."""

from __future__ import annotations

import uvicorn

from gateway.app import create_app
from gateway.server import uvicorn_config
from gateway.settings import GatewaySettings
from shared import telemetry
from shared.metrics import serve_metrics


def main() -> None:
    settings = GatewaySettings()
    telemetry.configure_logging(settings.log_level, settings.log_json)
    app = create_app(settings)
    serve_metrics(app.state.metrics_registry, settings.host, settings.metrics_port)
    # Timeouts for slow and idle clients and the connection limit come from settings (gateway/server.py).
    uvicorn.Server(uvicorn_config(app, settings)).run()


if __name__ == "__main__":
    main()
