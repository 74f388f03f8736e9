"""Fixtures for the CLI and SDK tests: real uvicorn gateways over the shared in-process mesh, and the CLI run as
a subprocess (asynchronously, so the gateway in this event loop keeps serving)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from dataclasses import dataclass

import pytest_asyncio

from tests.gateway.conftest import live
from tests.images import disc_rgba, png_bytes
from tests.mesh import REPO

# The seed's snippets carry this key verbatim; the seed gateway is configured with it.
SEED_KEY = "your-api-key"
OTHER_KEY = "other-key"


@pytest_asyncio.fixture(scope="session")
async def open_gateway(mesh, tmp_path_factory):
    """Like `make run`: auth off, the documented rate limits on."""
    async with live(mesh, tmp_path_factory.mktemp("people_open")) as url:
        yield url


@pytest_asyncio.fixture(scope="session")
async def seed_gateway(mesh, tmp_path_factory):
    """Auth on with the seed's literal key (and another owner's key)."""
    async with live(mesh, tmp_path_factory.mktemp("people_seed"),
                    api_keys=f"{SEED_KEY}:seed-user,{OTHER_KEY}:other-user") as url:
        yield url


@pytest_asyncio.fixture(scope="session")
async def throttled_gateway(mesh, tmp_path_factory):
    """Two Freepik requests per second, so a third one in the same second is a 429 with Retry-After."""
    async with live(mesh, tmp_path_factory.mktemp("people_throttled"),
                    rate_limits={"freepik": "2/second"}) as url:
        yield url


@dataclass
class Result:
    rc: int
    out: str
    err: str


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEMESH_")}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


async def run_cli(*args: str, url: str | None = None, key: str | None = None, timeout: float = 180) -> Result:
    """`python -m imagemesh ARGS` in a subprocess; its output goes to files, so a hung run still shows it."""
    import tempfile

    extra = {"PYTHONFAULTHANDLER": "1"}
    if url:
        extra["IMAGEMESH_URL"] = url
    if key:
        extra["IMAGEMESH_API_KEY"] = key
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "imagemesh", *args, cwd=REPO, env=clean_env(**extra), stdout=out, stderr=err)
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            # SIGABRT makes faulthandler print every thread's stack into stderr before the process dies.
            process.send_signal(signal.SIGABRT)
            await process.wait()
            err.seek(0)
            raise AssertionError(f"imagemesh {' '.join(args)} ran past {timeout} s; stderr:\n"
                                 + err.read().decode(errors="replace")) from None
        out.seek(0)
        err.seek(0)
        return Result(process.returncode, out.read().decode(), err.read().decode())


def disc_file(tmp_path, size: int = 48):
    path = tmp_path / "disc.png"
    path.write_bytes(png_bytes(disc_rgba(size)))
    return path
