"""Seed 000's SDK snippets ("SDKs"), verbatim: the Python one through freepik_orchestrator, the JavaScript one
through clients/js (run by `node --test` with the rest of the JS SDK's tests). Both run against a real uvicorn
gateway whose configured key is the snippets' literal "your-api-key"; only the base URL comes from the
environment (IMAGEMESH_URL)."""

from __future__ import annotations

import asyncio
import shutil
import textwrap

from tests.mesh import REPO
from tests.people.conftest import clean_env

# ---- seed 000 "SDKs / Python SDK", verbatim -----------------------------------------------------------------
PYTHON_SDK = '''
from freepik_orchestrator import FreepikClient

client = FreepikClient(api_key="your-api-key")

# Generate image
result = await client.generate(
    prompt="Professional headshot",
    model="auto"
)

# Execute workflow
workflow_result = await client.execute_workflow(
    "professional_headshot",
    prompt="Business portrait"
)
'''


async def run_async_snippet(code: str) -> dict:
    """Run top-level-await code as the body of a coroutine; its local names come back."""
    source = "async def __snippet__():\n" + textwrap.indent(code, "    ") + "\n    return locals()\n"
    namespace: dict = {}
    exec(compile(source, "<seed snippet>", "exec"), namespace)  # noqa: S102
    return await namespace["__snippet__"]()


async def test_python_sdk_snippet_verbatim(seed_gateway, monkeypatch):
    monkeypatch.setenv("IMAGEMESH_URL", seed_gateway)
    names = await run_async_snippet(PYTHON_SDK)
    result, workflow_result, client = names["result"], names["workflow_result"], names["client"]
    assert client.base_url == seed_gateway
    # The seed's generate response ...
    assert result.task_id and result.status == "pending" and result.webhook_callback is False
    assert result.model_used and result.estimated_completion
    # ... and its workflow execution.
    assert workflow_result.workflow_name == "professional_headshot" and workflow_result.workflow_execution_id
    assert [s.action for s in workflow_result.steps] == ["generate", "relight", "remove_background", "upscale"]
    task = await client.wait(result.task_id)
    assert task.status == "completed" and (await client.download(task.image_url)).startswith(b"\x89PNG")
    workflow_task = await client.wait(workflow_result.workflow_execution_id)
    assert workflow_task.status == "completed" and workflow_task.images
    await client.aclose()


async def test_javascript_sdk_with_node(seed_gateway, throttled_gateway):
    node = shutil.which("node")
    assert node, "node (v20+) is needed for the JavaScript SDK's tests"
    env = clean_env(IMAGEMESH_URL=seed_gateway, IMAGEMESH_THROTTLED_URL=throttled_gateway)
    process = await asyncio.create_subprocess_exec(
        node, "--test", "test/", cwd=REPO / "clients" / "js", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(process.communicate(), 600)
    text = out.decode()
    assert process.returncode == 0, text
    # Every test file ran and nothing was skipped (node's TAP summary).
    assert "# pass 7" in text and "# fail 0" in text and "# skipped 0" in text, text
