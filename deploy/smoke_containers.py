"""Start the five imagemesh images with podman and check that the mesh answers.

What is checked, in order:
  1. every gRPC service container becomes healthy through its image's own HEALTHCHECK
     (`podman healthcheck run`, which runs `python -m shared.healthcheck` inside the container);
  2. the same grpc.health.v1 check from the host, over the published port;
  3. the gateway answers GET /health and POST /upscale (a 24x16 PNG, scale_factor 2 -> 48x32);
  4. Generate (tiny-sd, 64x64) and RemoveBackground answer direct gRPC calls from the host, and the
     orchestrator runs an upscale job through the upscale container (RunJob);
  5. every container stops on SIGTERM within its grace period (exit code is not 137).

Containers run rootful with --network=host, bound to 127.0.0.1 on free ports picked here (ports are
env-overridable), read-only root filesystem, all capabilities dropped, UID 1000, no --init: the
services themselves must handle SIGTERM as PID 1. Uses only the standard library plus, when importable,
grpcio-health-checking for step 2.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import struct
import subprocess
import sys
import time
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path

RUN_ID = f"{os.getpid()}"


@dataclass
class Service:
    name: str  # image suffix and container name part
    grpc: bool = True
    models: bool = False
    ready_timeout: float = 180.0
    env: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def container(self) -> str:
        return f"imagemesh-smoke-{self.name}-{RUN_ID}"


def log(msg: str) -> None:
    print(f"smoke-containers: {msg}", flush=True)


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def podman(*args: str, check: bool = True, capture: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [os.environ.get("PODMAN", "podman"), *args],
        check=check,
        text=True,
        timeout=timeout,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.PIPE if capture else None,
    )


def png(width: int, height: int) -> bytes:
    """A small RGB gradient PNG, written with zlib only."""
    rows = b"".join(
        b"\x00" + bytes(v for x in range(width) for v in ((x * 255) // width, (y * 255) // height, 128))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def png_size(data: bytes) -> tuple[int, int]:
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    return struct.unpack(">II", data[16:24])


def running(svc: Service) -> bool:
    out = podman("inspect", "--format", "{{.State.Running}}", svc.container, check=False)
    return out.stdout.strip() == "true"


def logs(svc: Service, lines: int = 40) -> str:
    out = podman("logs", "--tail", str(lines), svc.container, check=False)
    return (out.stdout or "") + (out.stderr or "")


def wait_healthy(svc: Service, deadline: float) -> float:
    """Run the image's HEALTHCHECK until it passes; returns seconds waited."""
    start = time.monotonic()
    while True:
        if not running(svc):
            raise RuntimeError(f"{svc.name} exited before becoming healthy:\n{logs(svc)}")
        res = podman("healthcheck", "run", svc.container, check=False)
        if res.returncode == 0:
            return time.monotonic() - start
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{svc.name} not healthy after {time.monotonic() - start:.0f}s "
                f"(healthcheck: {res.stdout.strip()} {res.stderr.strip()}):\n{logs(svc)}"
            )
        time.sleep(2)


def grpc_health_from_host(port: int) -> str:
    try:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc
    except ImportError:
        return "skipped (grpcio-health-checking not importable on the host)"
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        resp = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
    if status != "SERVING":
        raise RuntimeError(f"grpc health on 127.0.0.1:{port} is {status}")
    return status


def orchestrated_job(orchestrator_port: int, src: bytes) -> str:
    """RunJob(upscale) on the orchestrator: the orchestrator container calls the upscale container and keeps
    the job in its store (SQLite on its volume, or IMAGEMESH_SMOKE_DATABASE_URL)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    try:
        import grpc

        from shared.gen.imagemesh.v1 import common_pb2
        from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as orch
        from shared.gen.imagemesh.v1 import orchestrator_service_pb2_grpc as orch_grpc
        from shared.gen.imagemesh.v1 import upscale_service_pb2 as up
    except ImportError as exc:
        return f"orchestrated job skipped (stubs not importable on the host: {exc})"
    spec = orch.JobSpec(
        upscale=up.UpscaleRequest(image=common_pb2.Image(data=src, media_type="image/png"), scale_factor=2)
    )
    t = time.monotonic()
    with grpc.insecure_channel(f"127.0.0.1:{orchestrator_port}") as channel:
        job = orch_grpc.OrchestratorServiceStub(channel).RunJob(orch.RunJobRequest(spec=spec), timeout=120).job
    status = common_pb2.JobStatus.Name(job.status)
    if status != "JOB_STATUS_COMPLETED":
        raise RuntimeError(f"RunJob(upscale) ended {status}: {job.error}")
    return f"orchestrator: RunJob(upscale x2) -> {status} (job {job.id}) in {time.monotonic() - t:.1f}s"


def direct_calls(generate_port: int, removal_port: int, src: bytes) -> list[str]:
    """Call Generate and BackgroundRemoval over gRPC from the host, so the model images are seen doing real
    work (torch/diffusers and onnxruntime on a read-only root), not only reporting SERVING."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    try:
        import grpc

        from shared.gen.imagemesh.v1 import background_removal_service_pb2 as br
        from shared.gen.imagemesh.v1 import background_removal_service_pb2_grpc as br_grpc
        from shared.gen.imagemesh.v1 import common_pb2
        from shared.gen.imagemesh.v1 import generate_service_pb2 as gen
        from shared.gen.imagemesh.v1 import generate_service_pb2_grpc as gen_grpc
    except ImportError as exc:
        return [f"direct gRPC calls skipped (stubs not importable on the host: {exc})"]
    lines = []
    with grpc.insecure_channel(f"127.0.0.1:{generate_port}") as channel:
        params = gen.GenerateParameters(model="tiny-sd", prompt="a red square", width=64, height=64, steps=2, seed=7)
        t = time.monotonic()
        resp = gen_grpc.GenerateServiceStub(channel).Generate(gen.GenerateRequest(parameters=params), timeout=180)
        size = png_size(resp.images[0].image.data)
        if size != (64, 64):
            raise RuntimeError(f"Generate returned a {size[0]}x{size[1]} image, wanted 64x64")
        lines.append(
            f"generate: Generate(tiny-sd, 64x64, 2 steps) -> {size[0]}x{size[1]} PNG in {time.monotonic() - t:.1f}s"
        )
    with grpc.insecure_channel(f"127.0.0.1:{removal_port}") as channel:
        request = br.RemoveBackgroundRequest(image=common_pb2.Image(data=src, media_type="image/png"))
        t = time.monotonic()
        resp = br_grpc.BackgroundRemovalServiceStub(channel).RemoveBackground(request, timeout=120)
        size = png_size(resp.image.data)
        if size != png_size(src):
            raise RuntimeError(f"RemoveBackground returned a {size[0]}x{size[1]} image for a 24x16 one")
        lines.append(
            f"background-removal: RemoveBackground -> {size[0]}x{size[1]} PNG with {resp.model_id} on "
            f"{resp.provider} in {time.monotonic() - t:.1f}s"
        )
    return lines


def http(method: str, url: str, body: dict | None = None, timeout: float = 60) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, {"error": err.read().decode(errors="replace")}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--image-prefix", default="localhost/imagemesh")
    ap.add_argument("--tag", default="dev")
    ap.add_argument("--workdir", default="var/smoke")
    ap.add_argument("--models", default=os.environ.get("IMAGEMESH_SMOKE_MODELS", "var/models"))
    ap.add_argument("--keep", action="store_true", help="leave the containers running")
    args = ap.parse_args()

    workdir = Path(args.workdir).resolve()
    models = Path(args.models).resolve()
    if not models.is_dir():
        log(f"no models at {models}: run `python scripts/prepare_models.py --dest {args.models}` first")
        return 2
    unreadable = [str(p) for p in models.rglob("*") if not p.stat().st_mode & (0o004 if p.is_file() else 0o005)]
    if unreadable:
        log(
            f"model files not readable by the containers' UID 1000 (e.g. {unreadable[0]}); "
            f"`chmod -R a+rX {args.models}` or prepare them again"
        )
        return 2
    ports = iter(free_ports(10))
    services = [
        Service("upscale", models=True),
        Service("background-removal", models=True),
        Service("generate", models=True, ready_timeout=300),
        Service("orchestrator"),
        Service("gateway", grpc=False),
    ]
    by_name = {s.name: s for s in services}
    for svc in services:
        svc.ports = {"main": next(ports), "metrics": next(ports)}
    addr = lambda name: f"127.0.0.1:{by_name[name].ports['main']}"
    workers = {
        "IMAGEMESH_GENERATE_ADDRESS": addr("generate"),
        "IMAGEMESH_BACKGROUND_REMOVAL_ADDRESS": addr("background-removal"),
        "IMAGEMESH_UPSCALE_ADDRESS": addr("upscale"),
    }
    by_name["orchestrator"].env.update(workers)
    by_name["gateway"].env.update(workers)
    by_name["gateway"].env["IMAGEMESH_ORCHESTRATOR_ADDRESS"] = addr("orchestrator")
    if os.environ.get("IMAGEMESH_SMOKE_DATABASE_URL"):
        for name in ("orchestrator", "gateway"):
            by_name[name].env["IMAGEMESH_DATABASE_URL"] = os.environ["IMAGEMESH_SMOKE_DATABASE_URL"]

    images_dir = workdir / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    os.chown(images_dir, 1000, 1000)
    started: list[Service] = []
    t0 = time.monotonic()
    try:
        for svc in services:
            var = workdir / svc.name
            var.mkdir(parents=True, exist_ok=True)
            os.chown(var, 1000, 1000)
            env = {
                "IMAGEMESH_HOST": "127.0.0.1",
                "IMAGEMESH_METRICS_PORT": str(svc.ports["metrics"]),
                "IMAGEMESH_IMAGE_STORE_DIR": "/var/lib/imagemesh/images",
                "IMAGEMESH_LOG_LEVEL": "INFO",
                ("IMAGEMESH_GRPC_PORT" if svc.grpc else "IMAGEMESH_HTTP_PORT"): str(svc.ports["main"]),
                **svc.env,
            }
            cmd = [
                "run",
                "--detach",
                "--pull=never",
                "--name",
                svc.container,
                "--label",
                "imagemesh.smoke=1",
                "--network=host",
                "--read-only",
                "--read-only-tmpfs",
                "--cap-drop=ALL",
                "--security-opt=no-new-privileges",
                "--user",
                "1000:1000",
                "--health-interval=disable",
                "--stop-timeout",
                "20",
                "-v",
                f"{var}:/var/lib/imagemesh:rw",
                "-v",
                f"{images_dir}:/var/lib/imagemesh/images:rw",
            ]
            if svc.models:
                cmd += ["-v", f"{models}:/models:ro"]
            for key, value in env.items():
                cmd += ["-e", f"{key}={value}"]
            cmd.append(f"{args.image_prefix}-{svc.name}:{args.tag}")
            podman(*cmd)
            started.append(svc)
            log(
                f"started {svc.name} ({'gRPC' if svc.grpc else 'HTTP'} 127.0.0.1:{svc.ports['main']}, "
                f"metrics {svc.ports['metrics']})"
            )

        for svc in services:
            waited = wait_healthy(svc, time.monotonic() + svc.ready_timeout)
            extra = ""
            if svc.grpc:
                extra = f"; grpc.health.v1 from host: {grpc_health_from_host(svc.ports['main'])}"
            log(f"{svc.name}: image HEALTHCHECK passed after {waited:.1f}s{extra}")

        gw = f"http://127.0.0.1:{by_name['gateway'].ports['main']}"
        status, body = http("GET", f"{gw}/health")
        if status != 200:
            raise RuntimeError(f"GET /health answered {status}: {body}")
        log(f"gateway GET /health: {status} {json.dumps(body)[:200]}")

        src = png(24, 16)
        status, body = http(
            "POST", f"{gw}/upscale", {"image": base64.b64encode(src).decode(), "scale_factor": 2}, timeout=120
        )
        if status != 200 or "image_base64" not in body:
            raise RuntimeError(f"POST /upscale answered {status}: {str(body)[:500]}")
        size = png_size(base64.b64decode(body["image_base64"]))
        if size != (48, 32):
            raise RuntimeError(f"POST /upscale returned a {size[0]}x{size[1]} image, wanted 48x32")
        log(f"gateway POST /upscale: {status}, 24x16 -> {size[0]}x{size[1]} PNG")

        for line in direct_calls(by_name["generate"].ports["main"], by_name["background-removal"].ports["main"], src):
            log(line)
        log(orchestrated_job(by_name["orchestrator"].ports["main"], src))

        metrics = urllib.request.urlopen(
            f"http://127.0.0.1:{by_name['upscale'].ports['metrics']}/metrics", timeout=10
        ).read()
        log(f"upscale metrics port answers ({len(metrics)} bytes)")

        if args.keep:
            log("--keep: containers left running")
            started = []
            return 0

        for svc in reversed(services):
            t = time.monotonic()
            podman("stop", "--time", "20", svc.container, timeout=60)
            code = podman("inspect", "--format", "{{.State.ExitCode}}", svc.container).stdout.strip()
            took = time.monotonic() - t
            if code == "137":
                raise RuntimeError(f"{svc.name} ignored SIGTERM (killed after {took:.0f}s):\n{logs(svc)}")
            log(f"{svc.name}: stopped on SIGTERM in {took:.1f}s (exit {code})")
        log(
            f"PASSED: 5 containers healthy; gateway /health + /upscale, Generate, RemoveBackground, RunJob answered; "
            f"clean SIGTERM stops ({time.monotonic() - t0:.0f}s)"
        )
        return 0
    except Exception as exc:  # noqa: BLE001 - report, clean up, fail
        log(f"FAILED: {exc}")
        return 1
    finally:
        for svc in started:
            podman("rm", "--force", "--time", "5", svc.container, check=False)


if __name__ == "__main__":
    sys.exit(main())
