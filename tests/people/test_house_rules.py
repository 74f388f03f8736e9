"""The CLI and SDKs are surfaces: they parse, call (the gateway over HTTP, or the orchestrator through the one
mesh client) and render. They hold no rule and touch no pixels, and the HTTP SDK stands alone (httpx only)."""

from __future__ import annotations

import ast
import sys

import pytest

from tests.mesh import REPO

SDK = ["imagemesh/__init__.py", "imagemesh/client.py", "imagemesh/models.py", "imagemesh/errors.py",
       "freepik_orchestrator/__init__.py"]
CLI = ["imagemesh/cli.py", "imagemesh/__main__.py"]


def _imports(path: str) -> set[str]:
    tree = ast.parse((REPO / path).read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_every_client_module_is_listed():
    found = {str(p.relative_to(REPO)) for folder in ("imagemesh", "freepik_orchestrator")
             for p in (REPO / folder).glob("*.py")}
    assert found == set(SDK + CLI)


@pytest.mark.parametrize("path", SDK)
def test_the_http_sdk_needs_only_httpx(path):
    tops = {name.split(".")[0] for name in _imports(path)}
    others = tops - {"imagemesh", "freepik_orchestrator", "httpx", "__future__"} - set(sys.stdlib_module_names)
    assert not others, others


@pytest.mark.parametrize("path", SDK + CLI)
def test_no_service_gateway_or_pixels(path):
    for name in _imports(path):
        top = name.split(".")[0]
        assert top not in ("services", "gateway", "PIL", "numpy", "cv2"), f"{path} imports {name}"
        # The orchestrator is reached through shared.mesh_client only: no service stubs of its own.
        assert not name.endswith("_pb2_grpc") or name.startswith("grpc_health"), f"{path} imports {name}"
        if top == "shared":
            assert name in ("shared.mesh_client", "shared.errors") or name.startswith("shared.gen."), name


def test_the_cli_reaches_the_mesh_through_the_mesh_client():
    source = (REPO / "imagemesh/cli.py").read_text()
    assert "MeshClient.connect" in source
    assert "insecure_channel" not in source and "create_channel" not in source
