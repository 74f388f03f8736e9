"""The Dockerfiles keep the rules the images depend on (checked on the text, no engine needed):
multi-stage, dependencies before source, one service's extra only, offline installs, non-root, a gRPC
HEALTHCHECK, `python -m services.<name>`; compose.yaml runs the whole mesh with PostgreSQL."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.deploy.conftest import REPO

SERVICES = {
    # Dockerfile stem: (extra, module, gRPC port or None for HTTP)
    "generate": ("generate", "services.generate", 50052),
    "background-removal": ("background-removal", "services.background_removal", 50053),
    "upscale": ("upscale", "services.upscale", 50054),
    "orchestrator": ("orchestrator", "services.orchestrator", 50051),
    "gateway": ("gateway", "gateway", None),
}


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(
        r"\\\n", " ", "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
    )
    out = []
    for line in text.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_dockerfile_rules(name: str) -> None:
    extra, module, port = SERVICES[name]
    ins = instructions(REPO / "docker" / f"{name}.Dockerfile")
    froms = [args for word, args in ins if word == "FROM"]
    assert len(froms) >= 2, "multi-stage"
    assert any(args.startswith("${BASE_IMAGE}") for args in froms), "BASE_IMAGE build argument"
    runs = [(i, args) for i, (word, args) in enumerate(ins) if word == "RUN"]
    ((install_at, install),) = [(i, a) for i, a in runs if "pip install" in a]
    assert "--no-index" in install and "--find-links=/wheels" in install and "-c constraints.txt" in install
    assert f"requirements.py {extra} " in install, "only this service's extra"
    first_source_copy = min(
        i for i, (word, args) in enumerate(ins) if word == "COPY" and re.match(r"(shared|services|gateway)\b", args)
    )
    assert install_at < first_source_copy, "dependencies are installed before the source is copied"
    assert not any(word == "COPY" and args.split()[0] == "." for word, args in ins), "no COPY . ."
    assert ("USER", "1000:1000") in ins
    assert ins[-1] == ("ENTRYPOINT", f'["python", "-m", "{module}"]')
    (health,) = [args for word, args in ins if word == "HEALTHCHECK"]
    if port:
        assert "shared.healthcheck" in health and "IMAGEMESH_GRPC_PORT" in health
        assert any(f"IMAGEMESH_GRPC_PORT={port}" in args for word, args in ins if word == "ENV")
    else:
        assert "/health" in health
    volumes = [args for word, args in ins if word == "VOLUME"]
    assert volumes and "/var/lib/imagemesh" in volumes[0] and "/tmp" in volumes[0]


def test_generate_defaults_to_a_cuda_runtime_base() -> None:
    args = dict(
        a.split("=", 1) for w, a in instructions(REPO / "docker" / "generate.Dockerfile") if w == "ARG" and "=" in a
    )
    assert "nvidia/cuda" in args["BASE_IMAGE"] and "runtime" in args["BASE_IMAGE"]
    assert "devel" not in args["BASE_IMAGE"]
    for name in ("background-removal", "upscale", "orchestrator", "gateway"):
        args = dict(
            a.split("=", 1) for w, a in instructions(REPO / "docker" / f"{name}.Dockerfile") if w == "ARG" and "=" in a
        )
        assert "slim" in args["BASE_IMAGE"], name


@pytest.mark.parametrize("name", ["generate", "background-removal", "upscale"])
def test_model_services_take_models_baked_or_mounted(name: str) -> None:
    ins = instructions(REPO / "docker" / f"{name}.Dockerfile")
    assert ("ARG", "MODELS_SRC=docker/no-models") in ins
    assert ("COPY", "${MODELS_SRC} /models") in ins
    assert any("IMAGEMESH_MODELS_DIR=/models" in a for w, a in ins if w == "ENV")


def test_compose_runs_the_mesh_with_postgresql() -> None:
    compose = yaml.safe_load((REPO / "docker" / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", *SERVICES}
    for name in SERVICES:
        svc = services[name]
        assert (REPO / "docker" / Path(svc["build"]["dockerfile"]).name).exists()
        assert svc["read_only"] is True and svc["user"] == "1000:1000" and svc["cap_drop"] == ["ALL"]
    for name in ("orchestrator", "gateway"):
        assert services[name]["environment"]["IMAGEMESH_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    # Only the gateway is published, and only on loopback.
    published = {name: svc.get("ports") for name, svc in services.items() if svc.get("ports")}
    assert list(published) == ["gateway"] and published["gateway"][0].startswith("127.0.0.1:")
    gpu = yaml.safe_load((REPO / "docker" / "compose.gpu.yaml").read_text())["services"]["generate"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]


def test_build_context_excludes_everything_but_what_images_copy() -> None:
    lines = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert lines[0] == "*"
    assert "!var/cache/wheelhouse" in lines and "!shared" in lines
