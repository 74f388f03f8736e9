"""Declarative workflows: YAML definitions of steps, each a call to a service, run as a DAG.

A step's `with:` parameters may reference the request (`${request.prompt}`, `${request.image}`), custom
parameters (`${params.upscale_factor}`, defaulted by the workflow's `params:` block) and earlier steps' outputs
(`${steps.generate.image}` = the first image, `${steps.generate.images}` = all). A reference that is the whole
value keeps its type (an int, an Image); one embedded in text is formatted into it. Dependencies are the
explicit `depends_on` plus every step referenced. `for_each: ${steps.x.images}` runs the step once per item
(`${item}`), in parallel.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import json_format

from shared.errors import InvalidArgument, NotFound
from shared.gen.imagemesh.v1 import (
    background_removal_service_pb2 as br_pb,
)
from shared.gen.imagemesh.v1 import (
    common_pb2,
)
from shared.gen.imagemesh.v1 import (
    generate_service_pb2 as gen_pb,
)
from shared.gen.imagemesh.v1 import (
    orchestrator_service_pb2 as pb,
)
from shared.gen.imagemesh.v1 import (
    upscale_service_pb2 as up_pb,
)

SHIPPED_DIR = Path(__file__).parent / "workflows"
_REF = re.compile(r"\$\{([^}]+)\}")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

# action -> (JobSpec field, request message class). "noop" is the orchestrator's own pass-through step.
ACTIONS: dict[str, tuple[str, type] | None] = {
    "generate": ("generate", gen_pb.GenerateParameters),
    "upscale": ("upscale", up_pb.UpscaleRequest),
    "remove_background": ("remove_background", br_pb.RemoveBackgroundRequest),
    "relight": ("relight", up_pb.RelightRequest),
    "social": ("optimize_social", up_pb.OptimizeSocialRequest),
    "shotgun": ("shotgun", pb.ShotgunSpec),
    "noop": None,
}


@dataclass
class StepDef:
    name: str
    action: str
    params: dict[str, Any] = field(default_factory=dict)
    depends_on: list[str] = field(default_factory=list)
    timeout_s: float = 300.0
    attempts: int = 1
    backoff_s: float = 1.0
    optional: bool = False
    for_each: str = ""
    index: int = 0


@dataclass
class Workflow:
    id: str
    name: str
    description: str
    steps: list[StepDef]
    params: dict[str, Any] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    estimated_seconds: float = 0.0

    def step(self, name: str) -> StepDef:
        return next(s for s in self.steps if s.name == name)

    @property
    def output_steps(self) -> list[str]:
        if self.outputs:
            return self.outputs
        used = {dep for s in self.steps for dep in s.depends_on}
        return [s.name for s in self.steps if s.name not in used]


def _references(value: Any) -> list[str]:
    if isinstance(value, str):
        return [m.group(1).strip() for m in _REF.finditer(value)]
    if isinstance(value, dict):
        return [r for v in value.values() for r in _references(v)]
    if isinstance(value, list):
        return [r for v in value for r in _references(v)]
    return []


def parse_workflow(data: dict, source: str = "") -> Workflow:
    """Validate one definition: known actions, unique names, dependencies that exist, no cycles."""
    where = f" in {source}" if source else ""
    workflow_id = str(data.get("id", ""))
    if not _NAME.match(workflow_id):
        raise ValueError(f"workflow id {workflow_id!r}{where} must be lower_snake_case")
    steps = []
    for index, raw in enumerate(data.get("steps") or [], start=1):
        name = str(raw.get("name", ""))
        action = str(raw.get("action", ""))
        if not _NAME.match(name):
            raise ValueError(f"step name {name!r}{where} must be lower_snake_case")
        if action not in ACTIONS:
            raise ValueError(f"step {name!r}{where} has unknown action {action!r}; known: {sorted(ACTIONS)}")
        retry = raw.get("retry") or {}
        params = raw.get("with") or {}
        for_each = str(raw.get("for_each", ""))
        inferred = [ref.split(".")[1] for ref in _references([params, for_each]) if ref.startswith("steps.")]
        depends = list(dict.fromkeys([*(raw.get("depends_on") or []), *inferred]))
        steps.append(StepDef(
            name=name, action=action, params=params, depends_on=depends,
            timeout_s=float(raw.get("timeout_s", 300)), attempts=max(1, int(retry.get("attempts", 1))),
            backoff_s=float(retry.get("backoff_s", 1.0)), optional=bool(raw.get("optional", False)),
            for_each=for_each, index=index,
        ))
    if not steps:
        raise ValueError(f"workflow {workflow_id!r}{where} has no steps")
    names = [s.name for s in steps]
    if len(set(names)) != len(names):
        raise ValueError(f"workflow {workflow_id!r}{where} has duplicate step names")
    for step in steps:
        for dep in step.depends_on:
            if dep not in names:
                raise ValueError(f"step {step.name!r}{where} depends on unknown step {dep!r}")
    _check_acyclic(steps, workflow_id)
    estimate = data.get("estimate") or {}
    if "cost_usd" in estimate:
        raise ValueError(f"workflow {workflow_id!r}{where}: estimate.cost_usd is not read any more; the "
                         "Orchestrator's price table prices estimate.seconds (docs/orchestrator.md, \"Cost\")")
    outputs = list(data.get("outputs") or [])
    for name in outputs:
        if name not in names:
            raise ValueError(f"workflow {workflow_id!r}{where} outputs unknown step {name!r}")
    return Workflow(
        id=workflow_id, name=str(data.get("name", workflow_id)), description=str(data.get("description", "")),
        steps=steps, params=dict(data.get("params") or {}), outputs=outputs,
        estimated_seconds=float(estimate.get("seconds", 0)),
    )


def _check_acyclic(steps: list[StepDef], workflow_id: str) -> None:
    deps = {s.name: set(s.depends_on) for s in steps}
    done: set[str] = set()
    while deps:
        ready = [name for name, needs in deps.items() if needs <= done]
        if not ready:
            raise ValueError(f"workflow {workflow_id!r} has a dependency cycle among {sorted(deps)}")
        for name in ready:
            done.add(name)
            del deps[name]


def load_workflows(extra_dir: Path | None = None) -> dict[str, Workflow]:
    """The shipped definitions, then `extra_dir`'s (same id overrides)."""
    found: dict[str, Workflow] = {}
    for folder in (SHIPPED_DIR, extra_dir):
        if folder is None or not Path(folder).is_dir():
            continue
        for path in sorted(Path(folder).glob("*.y*ml")):
            workflow = parse_workflow(yaml.safe_load(path.read_text()), str(path))
            found[workflow.id] = workflow
    return found


class WorkflowCatalog:
    def __init__(self, workflows: dict[str, Workflow]) -> None:
        self.workflows = workflows

    def get(self, workflow_id: str) -> Workflow:
        try:
            return self.workflows[workflow_id]
        except KeyError:
            # The id is the client's input: not echoed (the available ids are ours).
            raise NotFound("workflow does not exist", reason="WORKFLOW_NOT_FOUND",
                           available=sorted(self.workflows)) from None


# --- references -------------------------------------------------------------------------------------------


@dataclass
class Scope:
    """What references resolve against while a workflow runs."""

    request: pb.WorkflowSpec
    params: dict[str, Any]
    outputs: dict[str, list[common_pb2.Image]]
    item: Any = None


def _lookup(path: str, scope: Scope) -> Any:
    head, _, rest = path.partition(".")
    if head == "item":
        return scope.item
    if head == "params":
        if rest not in scope.params:
            raise InvalidArgument(f"workflow parameter {rest!r} is not set", field=f"params.{rest}")
        return scope.params[rest]
    if head == "request":
        if rest == "image":
            if not scope.request.HasField("image"):
                raise InvalidArgument("this workflow needs an input image", field="image")
            return scope.request.image
        if rest == "prompt":
            return scope.request.prompt
        raise InvalidArgument(f"unknown request field {rest!r}", field=rest)
    if head == "steps":
        step, _, attribute = rest.partition(".")
        images = scope.outputs.get(step, [])
        if attribute == "images":
            return list(images)
        if attribute == "image":
            if not images:
                raise InvalidArgument(f"step {step!r} produced no image", field=f"steps.{step}")
            return images[0]
        raise InvalidArgument(f"unknown step output {attribute!r}; use image or images", field=f"steps.{step}")
    raise InvalidArgument(f"unknown reference ${{{path}}}", field=path)


def resolve(value: Any, scope: Scope) -> Any:
    if isinstance(value, dict):
        return {k: resolve(v, scope) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, scope) for v in value]
    if not isinstance(value, str):
        return value
    whole = _REF.fullmatch(value.strip())
    if whole:
        return _lookup(whole.group(1).strip(), scope)
    return _REF.sub(lambda m: str(_lookup(m.group(1).strip(), scope)), value)


def build_spec(action: str, params: dict[str, Any]) -> pb.JobSpec:
    """The JobSpec a step runs: JSON-ish params into the action's request, Image values copied in."""
    field_name, message_class = ACTIONS[action]  # type: ignore[misc]
    plain, images = {}, {}
    for key, value in params.items():
        if isinstance(value, common_pb2.Image):
            images[key] = value
        else:
            plain[key] = value
    try:
        request = json_format.ParseDict(plain, message_class())
    except json_format.ParseError as exc:
        raise InvalidArgument(f"bad parameters for {action}: {exc}", field=action) from None
    for key, image in images.items():
        if key not in message_class.DESCRIPTOR.fields_by_name:
            raise InvalidArgument(f"{action} has no image field {key!r}", field=key)
        getattr(request, key).CopyFrom(image)
    spec = pb.JobSpec()
    getattr(spec, field_name).CopyFrom(request)
    return spec
