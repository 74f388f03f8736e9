"""The `imagemesh` command line: generate, remove backgrounds, upscale, run workflows, follow and cancel jobs.

Over HTTP (IMAGEMESH_URL, default http://127.0.0.1:8080; key IMAGEMESH_API_KEY) it uses the Python SDK; with
`--grpc HOST:PORT` it talks to the orchestrator directly through shared.mesh_client.MeshClient. Both backends
answer the same typed results (imagemesh.models), so every command prints the same output either way.
Progress bars go to stderr, results (or `--json`) to stdout; a user error is one line on stderr and exit 2,
a failed job or an error from the mesh exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from imagemesh.client import AsyncClient
from imagemesh.errors import ImageMeshError
from imagemesh.models import (
    Cutout,
    Cutouts,
    Health,
    JobPage,
    ProgressEvent,
    Task,
    WorkflowExecution,
    WorkflowInfo,
)

EXIT_FAILED = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A mistake in the command line or its files: exit 2 with one line."""


# ---- output helpers -------------------------------------------------------------------------------------------


class ProgressBar:
    """A one-line bar on stderr. On a terminal it redraws in place; otherwise (a pipe, a log) it prints a line
    when the stage changes or every 25%, so logs stay short."""

    WIDTH = 30

    def __init__(self, label: str, enabled: bool = True) -> None:
        self.label = label
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self._last: tuple[str, int] | None = None
        self._drawn = False

    def update(self, percentage: float, text: str = "") -> None:
        if not self.enabled:
            return
        percentage = max(0.0, min(100.0, percentage))
        filled = int(self.WIDTH * percentage / 100)
        line = f"{self.label} [{'#' * filled}{'.' * (self.WIDTH - filled)}] {percentage:5.1f}% {text}".rstrip()
        if self.tty:
            sys.stderr.write("\r\x1b[2K" + line)
            self._drawn = True
        else:
            key = (text.split(" ")[0] if text else "", int(percentage // 25))
            if key == self._last:
                return
            self._last = key
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def event(self, event: ProgressEvent) -> None:
        text = event.status if event.status != "running" else (event.step_name or event.stage or event.status)
        if event.total_steps:
            text += f" {event.step}/{event.total_steps}"
        self.update(100.0 if event.status == "completed" else event.percentage, text)

    def close(self) -> None:
        if self.enabled and self.tty and self._drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _plain(value: Any) -> Any:
    if is_dataclass(value):
        data = asdict(value)
        data.pop("raw", None)
        return {k: _plain(v) for k, v in data.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return None
    return value


def emit_json(value: Any) -> None:
    print(json.dumps(_plain(value), indent=2))


def _extension(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "png"
    if data.startswith(b"\xff\xd8"):
        return "jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return "bin"


def write_image(directory: Path, stem: str, data: bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{stem}.{_extension(data)}"
    path.write_bytes(data)
    return path


def parse_size(text: str) -> tuple[int, int]:
    """WxH (e.g. 512x512). Whether the model can make that size is Generate's rule; this only reads the syntax."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"size must look like WIDTHxHEIGHT (e.g. 512x512), not {text!r}")
    return int(match.group(1)), int(match.group(2))


def parse_param(text: str) -> tuple[str, Any]:
    """k=v; v is read as JSON where it parses (numbers, booleans, lists), else kept as text."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"a parameter is KEY=VALUE, not {text!r}")
    try:
        return key.strip(), json.loads(value)
    except ValueError:
        return key.strip(), value


def read_image(path: str) -> bytes:
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"no such image file: {path}")
    try:
        return file.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


# ---- backends ---------------------------------------------------------------------------------------------------


class HttpBackend:
    """The gateway's REST API through the SDK."""

    def __init__(self, url: str | None, api_key: str | None) -> None:
        self.sdk = AsyncClient(api_key=api_key, base_url=url)
        self.where = self.sdk.base_url

    async def close(self) -> None:
        await self.sdk.aclose()

    async def generate(self, prompt: str, model: str, size: tuple[int, int] | None, steps: int | None,
                       seed: int | None, count: int) -> str:
        width, height = size or (None, None)
        submission = await self.sdk.generate(prompt, model, width=width, height=height, steps=steps, seed=seed,
                                             num_images=count)
        return submission.task_id

    def watch(self, task_id: str) -> AsyncIterator[ProgressEvent]:
        return self.sdk.watch(task_id)

    async def task(self, task_id: str) -> Task:
        return await self.sdk.get_task(task_id)

    async def images(self, task: Task) -> list[bytes]:
        return [await self.sdk.download(url) for url in task.images]

    async def remove_background(self, image: bytes, models: list[str], bar: ProgressBar) -> Cutouts:
        bar.update(0, f"{len(models) or 'all'} model(s)")
        return await self.sdk.remove_background(image, models=models)

    async def upscale(self, image: bytes, scale: int, method: str | None) -> str:
        return await self.sdk.upscale(image, scale_factor=scale, method=method)

    async def workflows(self) -> list[WorkflowInfo]:
        return await self.sdk.list_workflows()

    async def execute_workflow(self, name: str, prompt: str | None, image: bytes | None,
                               params: dict[str, Any]) -> WorkflowExecution:
        return await self.sdk.execute_workflow(name, prompt, image=image, custom_params=params)

    async def jobs(self, statuses: list[str], kind: str, limit: int) -> JobPage:
        return await self.sdk.list_jobs(status=statuses, kind=kind, page_size=limit)

    async def cancel(self, task_id: str) -> Task:
        return await self.sdk.cancel(task_id)

    async def health(self) -> Health:
        return await self.sdk.health()


class GrpcBackend:
    """The orchestrator directly, through the one mesh client; jobs belong to IMAGEMESH_OWNER (default
    `anonymous`, the gateway's owner when auth is off, so both paths see the same jobs)."""

    def __init__(self, address: str) -> None:
        from shared.mesh_client import MeshClient

        # IMAGEMESH_INTERNAL_TOKEN: the mesh's service token, when the orchestrator requires one.
        self.mesh = MeshClient.connect(address, owner=os.environ.get("IMAGEMESH_OWNER") or "anonymous",
                                       token=os.environ.get("IMAGEMESH_INTERNAL_TOKEN", ""))
        self.where = address

    async def close(self) -> None:
        await self.mesh.close()

    @staticmethod
    def _task(job: Any) -> Task:
        from shared.mesh_client import job_images, status_name

        images = tuple(f"ref:{image.ref}" if image.ref else "inline" for image in job_images(job))
        error = {"code": job.error.reason, "message": job.error.message} if job.error.reason else None
        finished = job.finished_at.ToDatetime().strftime("%Y-%m-%dT%H:%M:%SZ") if job.finished_at.seconds else None
        created = job.created_at.ToDatetime().strftime("%Y-%m-%dT%H:%M:%SZ") if job.created_at.seconds else None
        return Task(task_id=job.id, status=status_name(job.status), kind=job.kind or None,
                    model_used=job.model_id or None, images=images, progress=round(job.progress.fraction * 100, 1),
                    created_at=created, completed_at=finished, error=error)

    async def generate(self, prompt: str, model: str, size: tuple[int, int] | None, steps: int | None,
                       seed: int | None, count: int) -> str:
        from shared.gen.imagemesh.v1 import generate_service_pb2 as gen_pb
        from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as pb

        params = gen_pb.GenerateParameters(model=model, prompt=prompt, num_images=count, store_output=True,
                                           owner=self.mesh.owner)
        if size:
            params.width, params.height = size
        if steps:
            params.steps = steps
        if seed is not None and seed >= 0:
            params.seed = seed
        job = await self.mesh.submit_job(pb.JobSpec(generate=params), labels={"client": "imagemesh-cli"})
        return job.id

    async def watch(self, task_id: str) -> AsyncIterator[ProgressEvent]:
        from shared.gen.imagemesh.v1 import common_pb2
        from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as pb
        from shared.mesh_client import is_terminal, status_name

        def event(kind: str, job: Any, step_name: str = "") -> ProgressEvent:
            progress = job.progress
            return ProgressEvent(
                task_id=job.id, event=kind, status=status_name(job.status), percentage=round(progress.fraction * 100, 1),
                step=progress.step, total_steps=progress.total_steps,
                stage=common_pb2.Stage.Name(progress.stage).removeprefix("STAGE_").lower(), message=progress.message,
                step_name=step_name, error={"code": job.error.reason, "message": job.error.message}
                if job.error.reason else None)

        first = await self.mesh.get_job(task_id)
        yield event("status", first)
        if is_terminal(first.status):
            return
        # Closed here, not left to the loop's shutdown: an unclosed stream on a closed channel can hang the exit.
        async with aclosing(self.mesh.watch_job(task_id)) as stream:
            async for item in stream:
                yield event(pb.JobEventType.Name(item.type).removeprefix("JOB_EVENT_TYPE_").lower(), item.job,
                            item.step_name)
                if is_terminal(item.job.status):
                    return

    async def task(self, task_id: str) -> Task:
        return self._task(await self.mesh.get_job(task_id))

    async def images(self, task: Task) -> list[bytes]:
        from shared.mesh_client import job_images

        out = []
        for image in job_images(await self.mesh.get_job(task.task_id)):
            out.append((await self.mesh.get_image(image.ref)).image.data if image.ref else image.data)
        return out

    async def remove_background(self, image: bytes, models: list[str], bar: ProgressBar) -> Cutouts:
        from shared.gen.imagemesh.v1 import common_pb2
        from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as pb
        from shared.mesh_client import status_name

        spec = pb.ShotgunSpec(image=common_pb2.Image(data=image), models=models,
                              output_format=common_pb2.IMAGE_FORMAT_PNG)
        done = 0
        async with aclosing(self.mesh.stream_shotgun(spec)) as stream:
            async for item in stream:
                if item.WhichOneof("event") == "result":
                    done += 1
                    total = len(models) or done + 1
                    bar.update(100 * done / total, f"{item.result.model_id} done")
                    continue
                summary = item.summary
                results = []
                for result in summary.results:
                    data = None
                    if result.status == pb.SHOTGUN_RESULT_STATUS_SUCCESS and result.image.ByteSize():
                        data = (await self.mesh.get_image(result.image.ref)).image.data if result.image.ref \
                            else result.image.data
                    results.append(Cutout(model_id=result.model_id, model_name=result.model_name or None,
                                          status="success" if data else "error", image=data,
                                          error=result.error or None, processing_time_ms=result.processing_time_ms,
                                          cost_usd=result.cost.usd))
                return Cutouts(job_id=summary.job_id, status=status_name(summary.status), results=tuple(results),
                               total_cost_usd=summary.total_cost.usd)
        raise ImageMeshError("the orchestrator ended the stream without a summary")

    async def upscale(self, image: bytes, scale: int, method: str | None) -> str:
        from shared.gen.imagemesh.v1 import common_pb2
        from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as pb
        from shared.gen.imagemesh.v1 import upscale_service_pb2 as up_pb

        request = up_pb.UpscaleRequest(image=common_pb2.Image(data=image), scale_factor=scale, mode="auto",
                                       method=method or "", output_format=common_pb2.IMAGE_FORMAT_PNG)
        job = await self.mesh.submit_job(pb.JobSpec(upscale=request), labels={"client": "imagemesh-cli"})
        return job.id

    async def workflows(self) -> list[WorkflowInfo]:
        return [WorkflowInfo(id=w.id, name=w.name, description=w.description,
                             estimated_time=f"{w.estimated_seconds:.0f} s", estimated_cost=f"${w.estimated_cost_usd:.2f}",
                             steps_count=len(w.steps)) for w in await self.mesh.list_workflows()]

    async def execute_workflow(self, name: str, prompt: str | None, image: bytes | None,
                               params: dict[str, Any]) -> WorkflowExecution:
        from google.protobuf import struct_pb2

        from shared.gen.imagemesh.v1 import common_pb2
        from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as pb
        from shared.mesh_client import status_name

        values = struct_pb2.Struct()
        values.update(params)
        spec = pb.WorkflowSpec(workflow_id=name, prompt=prompt or "", params=values,
                               image=common_pb2.Image(data=image) if image else None)
        job = await self.mesh.execute_workflow(spec)
        return WorkflowExecution(workflow_execution_id=job.id, workflow_name=name, status=status_name(job.status),
                                 estimated_completion="")

    async def jobs(self, statuses: list[str], kind: str, limit: int) -> JobPage:
        from shared.gen.imagemesh.v1 import common_pb2

        numbers = []
        for name in statuses:
            value = common_pb2.JobStatus.DESCRIPTOR.values_by_name.get("JOB_STATUS_" + name.upper())
            if value is None or value.number == 0:
                raise UsageError(f"unknown status {name!r}")
            numbers.append(value.number)
        reply = await self.mesh.list_jobs(statuses=numbers, kind=kind, page_size=limit)
        return JobPage(jobs=tuple(self._task(job) for job in reply.jobs), total=reply.total_size,
                       next_page_token=reply.next_page_token or None)

    async def cancel(self, task_id: str) -> Task:
        return self._task(await self.mesh.cancel_job(task_id))

    async def health(self) -> Health:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        try:
            reply = await health_pb2_grpc.HealthStub(self.mesh.channel).Check(
                health_pb2.HealthCheckRequest(), timeout=self.mesh.deadlines.read)
        except grpc.aio.AioRpcError as exc:
            raise ImageMeshError(f"cannot reach the orchestrator at {self.where}: {exc.code().name}") from None
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        return Health(status=status, services={"orchestrator": status})


# ---- commands ---------------------------------------------------------------------------------------------------


async def follow(backend: Any, task_id: str, label: str, args: argparse.Namespace) -> Task:
    """Follow a job's stream with a progress bar; the job as stored at the end."""
    bar = ProgressBar(label, enabled=not args.quiet)
    try:
        async with aclosing(backend.watch(task_id)) as events:
            async for event in events:
                bar.event(event)
    finally:
        bar.close()
    return await backend.task(task_id)


def _check_done(task: Task) -> None:
    if task.status not in ("completed", "partial"):
        message = (task.error or {}).get("message") or f"job {task.task_id} ended {task.status}"
        code = (task.error or {}).get("code", "")
        raise ImageMeshError(f"job {task.task_id} {task.status}: {message}", code=code)


async def cmd_generate(backend: Any, args: argparse.Namespace) -> int:
    if args.n < 1:
        raise UsageError("-n must be at least 1")
    task_id = await backend.generate(args.prompt, args.model, args.size, args.steps, args.seed, args.n)
    task = await follow(backend, task_id, "generate", args)
    _check_done(task)
    files = [write_image(Path(args.output), f"{task.task_id}_{i}", data)
             for i, data in enumerate(await backend.images(task), start=1)]
    if args.json:
        emit_json({"task_id": task.task_id, "status": task.status, "model_used": task.model_used,
                   "files": [str(f) for f in files], "images": list(task.images)})
    else:
        for file in files:
            print(file)
    return 0


async def cmd_remove_bg(backend: Any, args: argparse.Namespace) -> int:
    image = read_image(args.image)
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else []
    if models == ["all"]:
        models = []
    bar = ProgressBar("remove-bg", enabled=not args.quiet)
    try:
        cutouts = await backend.remove_background(image, models, bar)
        bar.update(100, "done")
    finally:
        bar.close()
    stem = Path(args.image).stem
    rows = []
    for result in cutouts.results:
        file = write_image(Path(args.output), f"{stem}_{result.model_id}", result.image) if result.image else None
        rows.append({"model_id": result.model_id, "status": result.status, "file": str(file) if file else None,
                     "error": result.error, "processing_time_ms": result.processing_time_ms})
        if not args.json:
            print(file if file else f"{result.model_id}: {result.error or result.status}",
                  file=sys.stdout if file else sys.stderr)
    if args.json:
        emit_json({"job_id": cutouts.job_id, "status": cutouts.status, "results": rows,
                   "total_cost_usd": cutouts.total_cost_usd})
    return 0 if any(r["file"] for r in rows) else EXIT_FAILED


async def cmd_upscale(backend: Any, args: argparse.Namespace) -> int:
    image = read_image(args.image)
    task_id = await backend.upscale(image, args.scale, args.method)
    task = await follow(backend, task_id, f"upscale x{args.scale}", args)
    _check_done(task)
    images = await backend.images(task)
    if not images:
        raise ImageMeshError(f"job {task.task_id} completed without an image")
    file = write_image(Path(args.output), f"{Path(args.image).stem}_x{args.scale}", images[0])
    if args.json:
        emit_json({"task_id": task.task_id, "status": task.status, "file": str(file)})
    else:
        print(file)
    return 0


async def cmd_workflow_list(backend: Any, args: argparse.Namespace) -> int:
    workflows = await backend.workflows()
    if args.json:
        emit_json({"workflows": workflows})
    else:
        for w in workflows:
            print(f"{w.id:24} {w.steps_count} steps  {w.estimated_time:>14}  {w.estimated_cost:>7}  {w.description}")
    return 0


async def cmd_workflow_run(backend: Any, args: argparse.Namespace) -> int:
    params = dict(args.param or [])
    prompt = args.prompt if args.prompt is not None else params.pop("prompt", None)
    image = read_image(args.image) if args.image else None
    execution = await backend.execute_workflow(args.name, None if prompt is None else str(prompt), image, params)
    task = await follow(backend, execution.workflow_execution_id, args.name, args)
    _check_done(task)
    files = [write_image(Path(args.output), f"{task.task_id}_{i}", data)
             for i, data in enumerate(await backend.images(task), start=1)]
    if args.json:
        emit_json({"task_id": task.task_id, "workflow": args.name, "status": task.status,
                   "files": [str(f) for f in files]})
    else:
        for file in files:
            print(file)
    return 0


async def cmd_jobs_list(backend: Any, args: argparse.Namespace) -> int:
    page = await backend.jobs(args.status or [], args.kind or "", args.limit)
    if args.json:
        emit_json({"jobs": page.jobs, "total": page.total})
    else:
        for job in page.jobs:
            print(f"{job.task_id}  {job.status:10} {job.kind or '':18} {job.created_at or '':20} "
                  f"{job.model_used or ''}")
    return 0


async def cmd_jobs_watch(backend: Any, args: argparse.Namespace) -> int:
    task = await follow(backend, args.id, args.id, args)
    if args.json:
        emit_json(task)
    else:
        print(f"{task.task_id} {task.status}")
    return 0 if task.status in ("completed", "partial") else EXIT_FAILED


async def cmd_jobs_cancel(backend: Any, args: argparse.Namespace) -> int:
    task = await backend.cancel(args.id)
    if args.json:
        emit_json(task)
    else:
        print(f"{task.task_id} {task.status}")
    return 0


async def cmd_health(backend: Any, args: argparse.Namespace) -> int:
    health = await backend.health()
    if args.json:
        emit_json(health)
    else:
        print(f"{health.status}  {backend.where}")
        for name, state in sorted(health.services.items()):
            print(f"  {name:20} {state}")
        if health.model:
            print(f"  model {health.model} on {health.device}")
    return 0 if health.healthy else EXIT_FAILED


# ---- the parser -------------------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse's own prints the whole usage)
        self.exit(EXIT_USAGE, f"imagemesh: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    common.add_argument("--grpc", metavar="HOST:PORT", help="talk to the orchestrator directly (gRPC)")
    common.add_argument("--url", help="gateway URL (default: IMAGEMESH_URL or http://127.0.0.1:8080)")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    parser = _Parser(prog="imagemesh", description="Generate, cut out and upscale images on an imagemesh.",
                     parents=[common])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = commands.add_parser("generate", parents=[common], help="generate images from a prompt")
    p.add_argument("prompt")
    p.add_argument("--model", default="auto", help="model id or alias (default: the mesh's default)")
    p.add_argument("--size", type=parse_size, help="WIDTHxHEIGHT, e.g. 512x512")
    p.add_argument("--steps", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("-n", type=int, default=1, help="number of images")
    p.add_argument("--output", "-o", default=".", help="directory for the images (default: .)")
    p.set_defaults(run=cmd_generate)

    p = commands.add_parser("remove-bg", parents=[common], help="remove the background with several models")
    p.add_argument("image")
    p.add_argument("--models", default="", help="comma-separated model ids (default: all)")
    p.add_argument("--output", "-o", default=".")
    p.set_defaults(run=cmd_remove_bg)

    p = commands.add_parser("upscale", parents=[common], help="upscale an image")
    p.add_argument("image")
    p.add_argument("--scale", type=int, choices=(2, 4), default=2)
    p.add_argument("--method", help="an Upscale method id (e.g. lanczos); default: auto")
    p.add_argument("--output", "-o", default=".")
    p.set_defaults(run=cmd_upscale)

    workflow = commands.add_parser("workflow", help="list and run workflows").add_subparsers(
        dest="workflow_command", required=True, parser_class=_Parser)
    p = workflow.add_parser("list", parents=[common])
    p.set_defaults(run=cmd_workflow_list)
    p = workflow.add_parser("run", parents=[common])
    p.add_argument("name")
    p.add_argument("--param", "-p", type=parse_param, action="append", metavar="KEY=VALUE")
    p.add_argument("--prompt")
    p.add_argument("--image", help="input image file, for workflows that start from one")
    p.add_argument("--output", "-o", default=".")
    p.set_defaults(run=cmd_workflow_run)

    jobs = commands.add_parser("jobs", help="list, follow and cancel jobs").add_subparsers(
        dest="jobs_command", required=True, parser_class=_Parser)
    p = jobs.add_parser("list", parents=[common])
    p.add_argument("--status", action="append", help="pending, running, completed, failed, cancelled, partial")
    p.add_argument("--kind", help="generate, upscale, remove_background, shotgun, workflow, ...")
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(run=cmd_jobs_list)
    p = jobs.add_parser("watch", parents=[common])
    p.add_argument("id")
    p.set_defaults(run=cmd_jobs_watch)
    p = jobs.add_parser("cancel", parents=[common])
    p.add_argument("id")
    p.set_defaults(run=cmd_jobs_cancel)

    p = commands.add_parser("health", parents=[common], help="is the mesh up")
    p.set_defaults(run=cmd_health)
    return parser


async def _run(args: argparse.Namespace) -> int:
    backend: Any = GrpcBackend(args.grpc) if args.grpc else HttpBackend(args.url, os.environ.get("IMAGEMESH_API_KEY"))
    try:
        return await args.run(backend, args)
    finally:
        await backend.close()


def _merge_common(argv: Sequence[str] | None) -> argparse.Namespace:
    # Options given before the subcommand (imagemesh --json health) are overwritten by the subparser's defaults;
    # parse them first and keep whichever side set them.
    parser = build_parser()
    args = parser.parse_args(argv)
    top, _ = argparse.ArgumentParser(add_help=False, parents=[_common_only()]).parse_known_args(argv)
    for name in ("json", "quiet"):
        setattr(args, name, getattr(args, name) or getattr(top, name))
    for name in ("grpc", "url"):
        setattr(args, name, getattr(args, name) or getattr(top, name))
    return args


def _common_only() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true")
    common.add_argument("--grpc")
    common.add_argument("--url")
    common.add_argument("-q", "--quiet", action="store_true")
    return common


def _mesh_errors() -> tuple[type[BaseException], ...]:
    """The mesh client's error hierarchy (gRPC mode), when the repo's shared package is importable."""
    try:
        from shared.errors import ImageMeshError as MeshError
    except ImportError:
        return ()
    return (MeshError,)


def main(argv: Sequence[str] | None = None) -> int:
    import httpx

    args = _merge_common(argv)
    try:
        return asyncio.run(_run(args))
    except UsageError as exc:
        print(f"imagemesh: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        print(f"imagemesh: error: bad gateway URL: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"imagemesh: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return EXIT_FAILED
    except _mesh_errors() as exc:
        print(f"imagemesh: error: {exc.reason}: {exc.message}", file=sys.stderr)  # type: ignore[attr-defined]
        return EXIT_FAILED
    except ImageMeshError as exc:
        hint = ""
        supported = exc.details.get("supported_models") if isinstance(exc.details, dict) else None
        if supported and not any(str(name) in exc.message for name in supported):
            hint = f" (supported: {', '.join(map(str, supported))})"
        print(f"imagemesh: error: {exc}{hint}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("imagemesh: interrupted (a submitted job keeps running: imagemesh jobs cancel ID)", file=sys.stderr)
        return 130


__all__ = ["build_parser", "main"]
