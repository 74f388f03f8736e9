"""Every dialect's OpenAPI operations fed with schemathesis (valid and invalid cases) against a real gateway (uvicorn
on loopback, auth on) over a real mesh: no answer is a 5xx (`not_a_server_error`), every status is one the document
lists for the operation (`status_code_conformance`) and every body matches the schema listed for it
(`response_schema_conformance`). Issue 14, classes 2 and 9.

Bounded: a few examples per operation and mode, derandomized (the same cases on every run), no shrinking. The mesh is
this module's own, with a Generate registry cut to its SD 1.x entries and clamped to tiny sizes and steps (128 px,
2 steps), so a valid generation is cheap and an oversize one is Generate's documented 400.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable

from tests.gateway.conftest import KEYS, live
from tests.mesh import start_mesh

# Examples per operation and generation mode (positive, negative).
MAX_EXAMPLES = 3
HEADERS = {"X-API-Key": "key-alice"}
# OpenAPI tag -> dialect.
DIALECTS = {
    "Freepik AI Orchestrator (seed 000)": "freepik",
    "FLUX Krea (seed 001)": "flux",
    "shotgun (seed 002)": "shotgun",
    "Image Studio (seed 003)": "image_studio",
    "CyberImage (seed 004)": "cyberimage",
    "OpenAI Images API": "openai",
    "AUTOMATIC1111 web UI API": "a1111",
}
# Found by the runs: (dialect, status, label, check) -> count.
TALLY: dict[str, int] = {"cases": 0, "5xx": 0, "501": 0}
TIMES: dict[str, float] = {}


def clamped_registry(tmp: Path) -> Path:
    """Generate's registry cut to its SD 1.x entries (one model load each; the other families' rules are
    Generate's tests' business) and clamped to 128 px and 2 steps (the code paths stay the same)."""
    source = Path(__file__).resolve().parents[2] / "services" / "generate" / "models.yaml"
    data = yaml.safe_load(source.read_text())
    sd1 = [entry for entry in data["models"] if entry.get("family", "sd1") == "sd1"]
    if any(entry["id"] == data.get("default") for entry in sd1):
        data["models"] = sd1
    for entry in data["models"]:
        low = int(entry.get("min_size", 64))
        top = max(low, 128)
        entry["max_size"] = top
        entry.pop("max_pixels", None)
        for key in ("default_width", "default_height"):
            entry[key] = min(int(entry.get(key, top)), top)
        entry["min_steps"] = 1
        entry["default_steps"] = min(int(entry.get("default_steps", 2)), 2)
        entry["max_steps"] = 2
    target = tmp / "models.yaml"
    target.write_text(yaml.safe_dump(data))
    return target


@pytest_asyncio.fixture(scope="module")
async def fuzzed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("schemathesis")
    mesh = await start_mesh(tmp, {"generate": {"models_file": clamped_registry(tmp)}})
    try:
        async with live(mesh, tmp, api_keys=KEYS, rate_limit_enabled=False) as url:
            async with httpx.AsyncClient(base_url=url) as client:
                schema = (await client.get("/openapi.json")).json()
            yield url, schema
    finally:
        await mesh.close()


def _operations(schema: dict[str, Any], dialect: str) -> list[tuple[str, str]]:
    out = []
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if DIALECTS.get((operation.get("tags") or [""])[0]) == dialect:
                out.append((method.upper(), path))
    return out


def _check(case: Any, url: str, problems: list[str], label: str) -> None:
    """Send one case and hold the answer to the document; a failure is collected (never shrunk)."""
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

    response = case.call(base_url=url, headers=HEADERS, timeout=120)
    TALLY["cases"] += 1
    checks = [status_code_conformance, response_schema_conformance]
    if response.status_code == 501:
        # "Not available on this deployment" (an A1111 option or an Image Studio operation no model here serves):
        # documented per operation, and the only 5xx a healthy mesh may give.
        TALLY["501"] += 1
    else:
        checks.append(not_a_server_error)
        TALLY["5xx"] += response.status_code >= 500
    try:
        case.validate_response(response, headers=HEADERS, checks=checks)
    except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collected, never shrunk
        failures = getattr(exc, "exceptions", [exc])
        names = ", ".join(sorted({type(f).__name__ for f in failures}))
        problems.append(f"{label} -> {response.status_code} ({names}): {str(failures[0]).strip()[:300]} | "
                        f"{response.text[:300]}")


def _runner(strategy: Any, url: str, problems: list[str], label: str) -> Any:
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case: Any) -> None:
        _check(case, url, problems, label)

    return run


def _fuzz(url: str, raw: dict[str, Any], dialect: str) -> list[str]:
    """Runs in a worker thread (the mesh and the server keep serving on the test's event loop)."""
    import schemathesis

    schema = schemathesis.openapi.from_dict(raw)
    wanted = set(_operations(raw, dialect))
    problems: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) not in wanted:
            continue
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            label = f"{operation.label} [{mode.value}]"
            run = _runner(operation.as_strategy(generation_mode=mode), url, problems, label)
            started = time.perf_counter()
            try:
                run()
            except Unsatisfiable:
                # An operation without parameters has no invalid case to make (negative mode): nothing to send.
                continue
            TIMES[label] = time.perf_counter() - started
    return problems


@pytest.mark.parametrize("dialect", sorted(set(DIALECTS.values())))
async def test_no_5xx_and_every_answer_is_documented(fuzzed, dialect):
    url, schema = fuzzed
    assert _operations(schema, dialect), f"no operations tagged for {dialect}"
    problems = await asyncio.to_thread(_fuzz, url, schema, dialect)
    assert problems == []


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    print(f"\nschemathesis: {TALLY['cases']} cases, {TALLY['5xx']} answered 5xx (501 not available: {TALLY['501']})")
    for label, seconds in sorted(TIMES.items(), key=lambda kv: -kv[1])[:15]:
        print(f"  {seconds:6.2f}s {label}")
