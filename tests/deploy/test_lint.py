"""`make lint` must pass on the repository and must fail on a broken template or an unknown field.

Each negative case copies the chart, breaks one thing, and runs the same script `make lint-helm` runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.conftest import CHART, REPO, VALUES, hadolint_path, run_lint_helm


def copy_chart(tmp_path: Path) -> tuple[Path, Path]:
    chart = tmp_path / "imagemesh"
    shutil.copytree(CHART, chart)
    values = tmp_path / "values"
    shutil.copytree(VALUES, values)
    return chart, values


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not found in {path}"
    path.write_text(text.replace(old, new, 1))


def test_lint_helm_passes_on_every_value_set(tmp_path: Path) -> None:
    res = run_lint_helm(CHART, VALUES, tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    for value_set in ("default", "cpu-trial", "gpu-production", "minimal"):
        assert f"lint-helm: {value_set}: lint ok" in res.stdout
        assert (tmp_path / f"{value_set}.yaml").stat().st_size > 0


BROKEN_TEMPLATES = {
    # An unknown template function: a parse error.
    "unknown-function": (
        "upscale.yaml",
        "{{- if .Values.upscale.enabled }}",
        "{{- if .Values.upscale.enabled | nosuchfunction }}",
        "nosuchfunction",
    ),
    # An action that is never closed.
    "unclosed-action": ("gateway.yaml", "{{- end }}\n", "{{- end \n", "gateway.yaml"),
    # Valid template syntax rendering invalid YAML (a mapping key indented into a scalar).
    "invalid-yaml": ("secret.yaml", "type: Opaque", "type: Opaque\n  oops: : :", "secret.yaml"),
    # A value the template requires but no value set provides.
    "missing-required": (
        "ingress.yaml",
        "{{- $svc := ",
        '{{- $_ := required "ingress.nothing is required" .Values.ingress.nothing }}\n{{- $svc := ',
        "ingress.nothing is required",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN_TEMPLATES))
def test_lint_helm_fails_on_broken_template(tmp_path: Path, case: str) -> None:
    file, old, new, expect = BROKEN_TEMPLATES[case]
    chart, values = copy_chart(tmp_path)
    edit(chart / "templates" / file, old, new)
    res = run_lint_helm(chart, values, tmp_path / "out")
    assert res.returncode != 0, f"lint passed a broken template ({case}):\n{res.stdout}"
    assert expect in res.stderr, res.stderr


UNKNOWN_FIELDS = {
    # A misspelt Deployment spec field (every service's Deployment comes from this template).
    "deployment-spec": (
        "_workload.tpl",
        "  revisionHistoryLimit: 5\n",
        "  revisionHistoryLimit: 5\n  minReadySecondz: 3\n",
        "minReadySecondz",
    ),
    # A container field that does not exist.
    "container": (
        "_workload.tpl",
        "          imagePullPolicy:",
        "          pullPolicy: Always\n          imagePullPolicy:",
        "pullPolicy",
    ),
    # A misspelt ServiceMonitor endpoint field (a custom resource: validated by deploy/validate_crds.py).
    "servicemonitor": (
        "servicemonitor.yaml",
        "      interval: {{ $.Values.metrics.serviceMonitor.interval }}",
        "      intervall: {{ $.Values.metrics.serviceMonitor.interval }}",
        "intervall",
    ),
    # A misplaced NetworkPolicy field.
    "networkpolicy": (
        "networkpolicy.yaml",
        '  policyTypes: ["Ingress"]\n  ingress:\n    {{- if eq $key "gateway" }}',
        '  policyTypes: ["Ingress"]\n  egressRules: []\n  ingress:\n    {{- if eq $key "gateway" }}',
        "egressRules",
    ),
}


@pytest.mark.parametrize("case", sorted(UNKNOWN_FIELDS))
def test_lint_helm_fails_on_unknown_field(tmp_path: Path, case: str) -> None:
    file, old, new, field = UNKNOWN_FIELDS[case]
    chart, values = copy_chart(tmp_path)
    edit(chart / "templates" / file, old, new)
    res = run_lint_helm(chart, values, tmp_path / "out")
    assert res.returncode != 0, f"lint passed a manifest with the unknown field {field!r}:\n{res.stdout}"
    assert "kubernetes-validate --strict" in res.stderr or "custom resource validation" in res.stderr, res.stderr
    assert field in res.stderr, res.stderr


def test_lint_helm_fails_on_unknown_field_from_values(tmp_path: Path) -> None:
    """A value set that smuggles an unknown field into a manifest (a typo in extraEnv) is caught too."""
    chart, values = copy_chart(tmp_path)
    (values / "typo.yaml").write_text("upscale:\n  extraEnv:\n    - name: IMAGEMESH_LOG_LEVEL\n      valeu: DEBUG\n")
    res = run_lint_helm(chart, values, tmp_path / "out")
    assert res.returncode != 0
    assert "value set 'typo'" in res.stderr and "valeu" in res.stderr, res.stderr


def test_hadolint_passes_on_the_dockerfiles() -> None:
    dockerfiles = sorted(str(p) for p in (REPO / "docker").glob("*.Dockerfile"))
    assert len(dockerfiles) == 5
    res = subprocess.run([hadolint_path(), *dockerfiles], cwd=REPO, check=False, text=True, capture_output=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_hadolint_fails_on_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text(
        "FROM python:latest\nRUN apt-get update && apt-get install -y curl\nCOPY . .\n"
        "RUN cd /app && pip install .\nCMD python -m services.upscale\n"
    )
    res = subprocess.run(
        [hadolint_path(), "--config", str(REPO / ".hadolint.yaml"), str(bad)],
        cwd=REPO,
        check=False,
        text=True,
        capture_output=True,
    )
    assert res.returncode != 0
    for rule in ("DL3007", "DL3008", "DL3003", "DL3025"):
        assert rule in res.stdout, res.stdout


def _test_containers_without_podman(ci: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", "test-containers", "PODMAN=podman-not-installed", "PODMAN_INSTALL=no"],
        cwd=REPO,
        check=False,
        text=True,
        capture_output=True,
        timeout=120,
        env={**os.environ, "CI": ci},
    )


def test_test_containers_reports_skipped_where_podman_cannot_be_had() -> None:
    """Outside CI, `make test` must say clearly when the container smoke test cannot run, and still pass."""
    res = _test_containers_without_podman("")
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip().splitlines()[-1] == (
        "SKIPPED: smoke-containers (podman, runc or debootstrap is not installed and PODMAN_INSTALL=no)"
    )


def test_test_containers_fails_in_ci_where_podman_cannot_be_had() -> None:
    """In CI the container smoke never skips: podman that cannot be had fails the build."""
    res = _test_containers_without_podman("true")
    assert res.returncode != 0, res.stdout + res.stderr
    assert "SKIPPED" not in res.stdout
    assert ("FAILED: smoke-containers in CI: podman cannot be had (podman, runc or debootstrap is not installed and "
            "PODMAN_INSTALL=no)") in res.stderr


def test_values_schema_is_current() -> None:
    res = subprocess.run(
        [sys.executable, str(REPO / "deploy" / "gen_values_schema.py"), "--check"],
        check=False,
        text=True,
        capture_output=True,
    )
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ("generate:\n  gpus: 1\n", "additional properties 'gpus' not allowed"),
        ("upscale:\n  replicas: two\n", "got string, want integer"),
        ("models:\n  source: s3\n", "value must be one of"),
        ("networkPolicy:\n  enable: false\n", "additional properties 'enable' not allowed"),
    ],
)
def test_lint_helm_fails_on_a_misspelt_or_mistyped_value(tmp_path: Path, values: str, complaint: str) -> None:
    """values.schema.json closes every values block: a typo is an error, not a silently ignored key."""
    chart, values_dir = copy_chart(tmp_path)
    (values_dir / "typo.yaml").write_text(values)
    res = run_lint_helm(chart, values_dir, tmp_path / "out")
    assert res.returncode != 0
    assert "value set 'typo'" in res.stderr and complaint in res.stderr, res.stderr
