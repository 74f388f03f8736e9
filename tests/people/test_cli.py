"""The `imagemesh` CLI, run as a subprocess (`python -m imagemesh`) against a real uvicorn gateway over the mesh,
and with `--grpc` against the orchestrator itself: files written, `--json`, exit codes, progress, user errors."""

from __future__ import annotations

import hashlib
import json
import socket

import pytest
from PIL import Image

from tests.people.conftest import disc_file, run_cli


def _json(result) -> dict:
    assert result.rc == 0, result.err
    assert "Traceback" not in result.err, result.err
    return json.loads(result.out)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_generate_writes_images_of_the_asked_size_with_progress(open_gateway, tmp_path):
    result = await run_cli("generate", "a red apple on a table", "--size", "96x64", "--steps", "3", "--seed", "11",
                           "-n", "2", "--output", str(tmp_path), "--json", url=open_gateway)
    body = _json(result)
    assert body["status"] == "completed" and len(body["files"]) == 2
    for file in body["files"]:
        with Image.open(file) as image:
            assert image.format == "PNG" and image.size == (96, 64)
    # The bar is fed by the job's event stream: it reaches the end.
    assert "generate [" in result.err and "100.0%" in result.err


async def test_same_seed_gives_the_same_image_over_http_and_grpc(open_gateway, mesh, tmp_path):
    args = ("generate", "a lighthouse", "--size", "64x64", "--steps", "2", "--seed", "1234", "--json")
    over_http = _json(await run_cli(*args, "--output", str(tmp_path / "http"), url=open_gateway))
    over_grpc = _json(await run_cli(*args, "--output", str(tmp_path / "grpc"), "--grpc", mesh.address("orchestrator")))
    digest = [hashlib.sha256(open(body["files"][0], "rb").read()).hexdigest() for body in (over_http, over_grpc)]
    assert digest[0] == digest[1]


@pytest.mark.parametrize("transport", ["http", "grpc"])
async def test_remove_bg_writes_one_cutout_per_model(open_gateway, mesh, tmp_path, transport):
    image = disc_file(tmp_path, 48)
    where = ["--grpc", mesh.address("orchestrator")] if transport == "grpc" else []
    result = await run_cli("remove-bg", str(image), "--models", "u2netp,modnet", "--output", str(tmp_path / "out"),
                           "--json", *where, url=open_gateway)
    body = _json(result)
    assert [r["model_id"] for r in body["results"]] == ["u2netp", "modnet"]
    for row in body["results"]:
        assert row["status"] == "success" and row["file"].endswith(f"disc_{row['model_id']}.png")
        with Image.open(row["file"]) as cutout:
            assert cutout.size == (48, 48) and cutout.mode == "RGBA"
            # The corner is background: transparent in every model's cut-out.
            assert cutout.getpixel((0, 0))[3] < 32


async def test_remove_bg_defaults_to_every_model(open_gateway, tmp_path):
    image = disc_file(tmp_path, 32)
    body = _json(await run_cli("remove-bg", str(image), "--output", str(tmp_path / "out"), "--json",
                               url=open_gateway))
    written = [r for r in body["results"] if r["file"]]
    assert len(written) >= 2 and len(list((tmp_path / "out").glob("*.png"))) == len(written)


@pytest.mark.parametrize("transport", ["http", "grpc"])
async def test_upscale_doubles_the_size(open_gateway, mesh, tmp_path, transport):
    image = disc_file(tmp_path, 40)
    where = ["--grpc", mesh.address("orchestrator")] if transport == "grpc" else []
    result = await run_cli("upscale", str(image), "--scale", "2", "--method", "lanczos", "--output", str(tmp_path),
                           "--json", *where, url=open_gateway)
    body = _json(result)
    assert body["status"] == "completed" and body["file"].endswith("disc_x2.png")
    with Image.open(body["file"]) as out:
        assert out.size == (80, 80)
    assert "upscale x2 [" in result.err


async def test_workflow_list_and_run(open_gateway, tmp_path):
    listing = _json(await run_cli("workflow", "list", "--json", url=open_gateway))
    ids = [w["id"] for w in listing["workflows"]]
    assert "professional_headshot" in ids and "process" in ids
    text = await run_cli("workflow", "list", url=open_gateway)
    assert text.rc == 0 and "professional_headshot" in text.out
    image = disc_file(tmp_path, 32)
    result = await run_cli("workflow", "run", "process", "--image", str(image), "--param", "upscale_factor=2",
                           "--param", 'models=["u2netp"]', "--output", str(tmp_path / "out"), "--json",
                           url=open_gateway)
    body = _json(result)
    assert body["status"] == "completed" and len(body["files"]) == 1
    with Image.open(body["files"][0]) as out:
        assert out.size == (64, 64)


async def test_jobs_list_watch_and_cancel(open_gateway, tmp_path):
    generated = _json(await run_cli("generate", "a kite", "--size", "64x64", "--steps", "1", "--output",
                                    str(tmp_path), "--json", url=open_gateway))
    task_id = generated["task_id"]
    listing = _json(await run_cli("jobs", "list", "--kind", "generate", "--limit", "50", "--json", url=open_gateway))
    assert task_id in [job["task_id"] for job in listing["jobs"]]
    completed = _json(await run_cli("jobs", "list", "--status", "completed", "--json", url=open_gateway))
    assert {job["status"] for job in completed["jobs"]} == {"completed"}
    watched = _json(await run_cli("jobs", "watch", task_id, "--json", url=open_gateway))
    assert watched["task_id"] == task_id and watched["status"] == "completed" and watched["images"]
    # Cancelling a finished job leaves it as it was.
    cancelled = _json(await run_cli("jobs", "cancel", task_id, "--json", url=open_gateway))
    assert cancelled["status"] == "completed"


async def test_cancel_a_running_job(open_gateway, tmp_path):
    from imagemesh import AsyncClient

    async with AsyncClient(base_url=open_gateway) as sdk:
        submission = await sdk.generate("a slow one", width=256, height=256, steps=50)
        result = await run_cli("jobs", "cancel", submission.task_id, "--json", url=open_gateway)
        assert _json(result)["status"] == "cancelled"
        watched = await run_cli("jobs", "watch", submission.task_id, url=open_gateway)
        assert watched.rc == 1 and "cancelled" in watched.out


async def test_jobs_list_over_grpc_sees_the_same_owner(open_gateway, mesh, tmp_path):
    generated = _json(await run_cli("generate", "a boat", "--size", "64x64", "--steps", "1", "--output",
                                    str(tmp_path), "--json", url=open_gateway))
    listing = _json(await run_cli("jobs", "list", "--json", "--grpc", mesh.address("orchestrator")))
    assert generated["task_id"] in [job["task_id"] for job in listing["jobs"]]


async def test_health(open_gateway, mesh):
    body = _json(await run_cli("health", "--json", url=open_gateway))
    assert body["status"] == "healthy" and set(body["services"]) >= {"generate", "orchestrator"}
    assert _json(await run_cli("--json", "health", "--grpc", mesh.address("orchestrator")))["status"] == "SERVING"


async def test_api_key_comes_from_the_environment(seed_gateway):
    from tests.people.conftest import SEED_KEY

    assert (await run_cli("workflow", "list", url=seed_gateway, key=SEED_KEY)).rc == 0
    refused = await run_cli("workflow", "list", url=seed_gateway, key="wrong-key")
    assert refused.rc == 1 and "INVALID_API_KEY" in refused.err and "Traceback" not in refused.err


@pytest.mark.parametrize("args,needle", [
    (["generate", "x", "--size", "big"], "WIDTHxHEIGHT"),
    (["generate", "x", "--size", "3x3"], "width must be between"),
    (["generate", "x", "--model", "no-such-model"], "not supported"),
    (["generate", "x", "-n", "0"], "-n"),
    (["remove-bg", "/no/such/file.png"], "no such image file"),
    (["remove-bg", "@IMAGE", "--models", "no-such-model"], "no-such-model"),
    (["upscale", "@IMAGE", "--scale", "3"], "invalid choice"),
    (["upscale", "@IMAGE", "--method", "no-such-method"], "no-such-method"),
    (["workflow", "run", "no_such_workflow"], "WORKFLOW_NOT_FOUND"),
    (["workflow", "run", "process", "--param", "novalue"], "KEY=VALUE"),
    (["jobs", "watch", "no-such-job"], "TASK_NOT_FOUND"),
    (["jobs", "list", "--status", "sleeping"], "status"),
    (["frobnicate"], "invalid choice"),
], ids=["size-syntax", "size-too-small", "unknown-model", "zero-images", "missing-file", "unknown-bg-model",
        "bad-scale", "unknown-method", "unknown-workflow", "bad-param", "unknown-job", "bad-status",
        "unknown-command"])
async def test_user_errors_are_one_line_and_non_zero(open_gateway, tmp_path, args, needle):
    image = str(disc_file(tmp_path, 32))
    result = await run_cli(*[image if a == "@IMAGE" else a for a in args], "--output", str(tmp_path),
                           url=open_gateway) if args[0] in ("generate", "remove-bg", "upscale") else \
        await run_cli(*args, url=open_gateway)
    assert result.rc != 0
    assert "Traceback" not in result.err
    # Progress lines may come first; the error is one line, the last.
    errors = [line for line in result.err.strip().splitlines() if line.startswith("imagemesh: error:")]
    assert len(errors) == 1 and result.err.strip().splitlines()[-1] == errors[0], result.err
    assert needle in errors[0], errors[0]


@pytest.mark.parametrize("transport", ["http", "grpc"])
async def test_mesh_down_is_one_line(tmp_path, transport):
    port = _free_port()
    if transport == "grpc":
        result = await run_cli("jobs", "list", "--grpc", f"127.0.0.1:{port}")
    else:
        result = await run_cli("health", url=f"http://127.0.0.1:{port}")
    assert result.rc == 1 and "Traceback" not in result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    # Each transport says it in its own words: the HTTP client cannot connect; gRPC answers UNAVAILABLE.
    assert {"http": "cannot reach", "grpc": "UNAVAILABLE"}[transport] in lines[0], result.err
