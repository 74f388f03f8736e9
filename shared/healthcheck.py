"""`python -m shared.healthcheck HOST:PORT [SERVICE]`: exit 0 when the gRPC health check says SERVING.

Used by container HEALTHCHECKs, where no grpc_health_probe binary is available.
"""

from __future__ import annotations

import asyncio
import sys

from shared.clients import check_health, create_channel
from shared.config import ClientSettings


async def _probe(address: str, service: str) -> str:
    # Health is open to probes even when the mesh requires its service token; the token is sent anyway.
    channel = create_channel(address, token=ClientSettings().internal_token.get_secret_value())
    try:
        return await check_health(channel, service)
    finally:
        await channel.close()


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m shared.healthcheck HOST:PORT [SERVICE]", file=sys.stderr)
        return 2
    status = asyncio.run(_probe(argv[0], argv[1] if len(argv) > 1 else ""))
    print(status)
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
