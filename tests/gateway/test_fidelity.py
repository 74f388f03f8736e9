"""Fidelity to the seed documents, field by field.

For each seed document, one test walks every documented endpoint with the document's own example request (its
placeholders replaced by real inputs: SUBSTITUTIONS below) and compares each response with the document's example
response (tests/gateway/seed_examples.json): keys (missing and extra), JSON types, nesting, enum values the
document lists and values the request fixes. Ids, timestamps, durations, prompts and image data are compared by
type only. Every difference found must be listed in docs/gateway.md, "Differences from the seed documents":
in the table of deliberate differences (with why) or in the list of differences being fixed on branch fid. A
difference not listed fails the test, and so does a listed one that no longer happens (delete its row).
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import websockets

from tests.gateway.conftest import SEEDS
from tests.images import b64, disc_rgba, gradient_rgb, png_bytes
from tests.mesh import start_mesh

DOC = Path(__file__).resolve().parents[2] / "docs" / "gateway.md"
TABLES = {"deliberate": "fidelity-deliberate", "fid": "fidelity-fid"}

FIXED = ("fixed",)  # the value must equal the document's example


def enum(*values: Any) -> tuple:
    return ("enum", values)


def equals(value: Any) -> tuple:
    return ("equals", value)


def prefix(text: str) -> tuple:
    return ("prefix", text)


URL = ("url",)  # a URL a client can fetch (http or https), not inline data


@dataclass
class Check:
    """One response to compare with one example of the document."""

    example: str  # key in seed_examples.json
    status: int  # the HTTP status the reply had
    body: Any
    expected_status: int = 200
    rules: dict[str, tuple] = field(default_factory=dict)  # path -> rule (paths use [] for list items)
    maps: frozenset[str] = frozenset()  # objects keyed by data: values compared with the example's first value
    match_by: dict[str, str] = field(default_factory=dict)  # list path -> key: example items matched by it
    label: str = ""  # how the difference table names this response (default: the example's key)

    def __post_init__(self) -> None:
        self.label = self.label or self.example


@dataclass(frozen=True)
class Difference:
    example: str
    path: str
    kind: str  # status, missing, extra, type, null, value
    detail: str = field(default="", compare=False)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def compare(check: Check) -> list[Difference]:
    if check.status != check.expected_status:
        return [Difference(check.label, "$", "status", f"HTTP {check.status} (document: {check.expected_status})"
                                                          f": {_short(check.body)}")]
    found: list[Difference] = []
    _walk(check, check.body, SEEDS_BY_EXAMPLE[check.example], "$", found, apply_rules=True)
    unique: dict[tuple[str, str], Difference] = {}
    for difference in found:
        unique.setdefault((difference.path, difference.kind), difference)
    return list(unique.values())


def _walk(check: Check, actual: Any, example: Any, path: str, out: list[Difference], apply_rules: bool) -> None:
    rule = check.rules.get(path) if apply_rules and actual is not None else None  # null is reported below
    if rule is not None and not _rule_holds(rule, actual, example):
        out.append(Difference(check.label, path, "value", f"{_short(actual)} (document: "
                                                            f"{_rule_text(rule, example)})"))
    if example is None:
        return  # the document shows null: any value is a value it allows
    if actual is None:
        out.append(Difference(check.label, path, "null", f"null (document: {_short(example)})"))
        return
    want, got = _kind(example), _kind(actual)
    if want != got and not (want == "number" and got == "integer"):
        out.append(Difference(check.label, path, "type", f"{got} {_short(actual)} (document: {want})"))
        return
    if isinstance(example, dict):
        if path in check.maps:
            first = next(iter(example.values()), None)
            for key, value in actual.items():
                _walk(check, value, first, f"{path}.*", out, apply_rules)
            return
        for key in example:
            if key not in actual:
                out.append(Difference(check.label, f"{path}.{key}", "missing"))
        for key in actual:
            if key not in example:
                out.append(Difference(check.label, f"{path}.{key}", "extra", _short(actual[key])))
            else:
                _walk(check, actual[key], example[key], f"{path}.{key}", out, apply_rules)
    elif isinstance(example, list) and example:
        key = check.match_by.get(path)
        if key is None:
            for index, item in enumerate(actual):
                _walk(check, item, example[min(index, len(example) - 1)], f"{path}[]", out, apply_rules)
            return
        matched = set()
        for wanted in example:
            hits = [i for i, item in enumerate(actual) if isinstance(item, dict) and item.get(key) == wanted[key]]
            if not hits:
                out.append(Difference(check.label, f"{path}[{key}={wanted[key]}]", "missing"))
                continue
            matched.add(hits[0])
            _walk(check, actual[hits[0]], wanted, f"{path}[]", out, apply_rules)
        for index, item in enumerate(actual):
            if index not in matched:  # other items: shape only, the example's values are not theirs
                _walk(check, item, example[0], f"{path}[]", out, False)


def _rule_holds(rule: tuple, actual: Any, example: Any) -> bool:
    name = rule[0]
    if name == "fixed":
        return actual == example
    if name == "equals":
        return actual == rule[1]
    if name == "enum":
        return actual in rule[1]
    if name == "prefix":
        return isinstance(actual, str) and actual.startswith(rule[1])
    if name == "url":
        return isinstance(actual, str) and re.match(r"https?://", actual) is not None
    raise AssertionError(rule)


def _rule_text(rule: tuple, example: Any) -> str:
    name = rule[0]
    if name == "fixed":
        return _short(example)
    if name == "equals":
        return _short(rule[1])
    if name == "enum":
        return " | ".join(_short(v) for v in rule[1])
    if name == "prefix":
        return f"starts with {rule[1]!r}"
    return "an http(s) URL"


def documented(table: str) -> dict[tuple[str, str, str, str], str]:
    """(seed, example, path, kind) -> why, from a table in docs/gateway.md between its two markers."""
    text = DOC.read_text()
    start, end = f"<!-- {TABLES[table]}:start -->", f"<!-- {TABLES[table]}:end -->"
    assert start in text and end in text, f"docs/gateway.md lacks the {table} table markers"
    rows = {}
    for line in text.split(start, 1)[1].split(end, 1)[0].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 5 or cells[0] in ("seed", "") or set(cells[0]) <= {"-", ":"}:
            continue
        seed, example, path, kind = (c.strip("`") for c in cells[:4])
        key = (seed, example, path, kind.split(":")[0].strip())
        assert key not in rows, f"docs/gateway.md lists {key} twice"
        rows[key] = cells[4]
    return rows


SEEDS_BY_EXAMPLE: dict[str, Any] = {}  # example key -> example, for the seed being walked


# ---- the walks: the documents' example requests, placeholders replaced --------------------------------------

# What a placeholder becomes (the Freepik webhook_url becomes a loopback sink). Sizes: the examples' 1024x1024 at 30 steps takes minutes on a CPU with the tiny
# models; sizes (and FLUX Krea's steps) are the only values changed, within each document's allowed range.
PNG = png_bytes(disc_rgba(64))
SUBSTITUTIONS = {
    "base64_encoded_image_data": b64(PNG),
    "https://example.com/image.png": "data:image/png;base64," + b64(PNG),
    "https://cdn.freepik.com/original.jpg": "data:image/png;base64," + b64(gradient_rgb(96, 64)),
    "data:image/png;base64,iVBORw0KGgo...": "data:image/png;base64," + b64(PNG),
}
SMALL_FLUX = {"width": 512, "height": 512, "steps": 20}  # the FLUX Krea document's minimums
SMALL_CYBERIMAGE = {"width": 256, "height": 256}


def request(seed: str, example: str, **changes: Any) -> dict:
    body = json.loads(json.dumps(SEEDS[seed][example]))
    for key, value in list(body.items()):
        if isinstance(value, str) and value in SUBSTITUTIONS:
            body[key] = SUBSTITUTIONS[value]
    body.update(changes)
    return body


async def _poll(http, url: str, done) -> tuple[int, Any]:
    for _ in range(1200):
        reply = await http.get(url)
        if reply.status_code != 200 or done(reply.json()):
            return reply.status_code, reply.json()
        await asyncio.sleep(0.1)
    raise AssertionError(f"{url} did not finish")


async def walk_000(http, live_url, webhook_sink) -> list[Check]:
    checks = []
    hook = {"webhook_url": webhook_sink.url}
    reply = await http.post("/v1/generate", json=request("000", "generate_request", **hook))
    checks.append(Check("generate_response", reply.status_code, reply.json(), rules={
        "$.status": enum("pending", "running"), "$.webhook_callback": FIXED}))
    task_id = reply.json().get("task_id", "")
    status, task = await _poll(http, f"/v1/generate/{task_id}", lambda b: b["status"] in ("completed", "failed"))
    checks.append(Check("task_status", status, task, rules={
        "$.status": FIXED, "$.image_url": URL, "$.thumbnail_url": URL}))
    for _ in range(300):
        deliveries = [json.loads(body) for _, body in webhook_sink.received]
        if any(d.get("task_id") == task_id for d in deliveries):
            break
        await asyncio.sleep(0.1)
    payload = next((d for d in deliveries if d.get("task_id") == task_id), None)
    checks.append(Check("webhook_payload", 200 if payload else 0, payload, rules={
        "$.event": FIXED, "$.data.status": FIXED, "$.data.image_url": URL, "$.data.thumbnail_url": URL}))
    reply = await http.get("/v1/workflows")
    checks.append(Check("workflows", reply.status_code, reply.json(), match_by={"$.workflows": "id"}, rules={
        "$.workflows[].name": FIXED}))
    reply = await http.post("/v1/workflows/professional_headshot/execute", json=request("000", "workflow_request"))
    execution_rules = {"$.workflow_name": FIXED, "$.status": enum("running", "completed"),
                       "$.steps[].status": enum("completed", "running", "pending"), "$.steps[].result_url": URL}
    checks.append(Check("workflow_execution", reply.status_code, reply.json(), rules=execution_rules))
    for name in ("upscale_request", "relight_request"):
        reply = await http.post(f"/v1/post-process/{name.split('_')[0]}", json=request("000", name, **hook))
        # The document shows no response for these: the task shape of POST /generate is what they answer.
        checks.append(Check("generate_response", reply.status_code, reply.json(), label=name.replace("request", "task"), rules={
            "$.status": enum("pending", "running"), "$.webhook_callback": FIXED}))
    reply = await http.post("/v1/post-process/remove-background", json=request("000", "remove_background_request"))
    checks.append(Check("remove_background_response", reply.status_code, reply.json(), rules={"$.result_url": URL}))
    reply = await http.get("/v1/analytics/user", params={"days": 30})
    checks.append(Check("analytics", reply.status_code, reply.json(), rules={"$.period_days": FIXED},
                        maps=frozenset({"$.models_used"})))
    reply = await http.post("/v1/generate", json=request("000", "generate_request", model="invalid-model", **hook))
    checks.append(Check("error", reply.status_code, reply.json(), expected_status=400, rules={
        "$.error.code": FIXED, "$.error.message": prefix("The specified model 'invalid-model' is not supported")}))
    return checks


async def walk_001(http, live_url, webhook_sink) -> list[Check]:
    checks = []
    reply = await http.get("/health")
    checks.append(Check("health", reply.status_code, reply.json(), rules={
        "$.status": enum("healthy", "unhealthy"), "$.device": enum("cuda", "cpu")}))
    reply = await http.post("/generate", json=request("001", "generate_request", **SMALL_FLUX))
    checks.append(Check("generate_response", reply.status_code, reply.json(), rules={
        "$.success": FIXED, "$.image": prefix("data:image/png;base64,")}))
    reply = await http.get("/models")
    checks.append(Check("models", reply.status_code, reply.json()))
    reply = await http.post("/generate", json=request("001", "generate_request", steps=10))
    checks.append(Check("error", reply.status_code, reply.json(), expected_status=400, rules={"$.success": FIXED}))
    async with websockets.connect(live_url.replace("http", "ws") + "/ws") as ws:
        message = request("001", "ws_generate")
        message["data"].update(SMALL_FLUX)
        await ws.send(json.dumps(message))
        while True:
            received = json.loads(await ws.recv())
            if received.get("type") == "progress":
                checks.append(Check("ws_progress", 200, received, rules={"$.type": FIXED}))
            else:
                checks.append(Check("ws_complete", 200, received, rules={
                    "$.type": FIXED, "$.data.image": prefix("data:image/png;base64,")}))
                break
        message["data"]["steps"] = 99
        await ws.send(json.dumps(message))
        checks.append(Check("ws_error", 200, json.loads(await ws.recv()), rules={"$.type": FIXED}))
    return checks


SHOTGUN_IDS = ("runware_rmbg2", "runware_birefnet_portrait", "kie_recraft", "local_birefnet", "local_isnet")


async def walk_002(http, live_url, webhook_sink) -> list[Check]:
    checks = []
    reply = await http.get("/health")
    checks.append(Check("health", reply.status_code, reply.json(), rules={"$.status": enum("healthy")},
                        maps=frozenset({"$.services"})))
    reply = await http.post("/remove-background", json=request("002", "remove_background_request"))
    removal = reply.json()
    checks.append(Check("remove_background_response", reply.status_code, removal, rules={
        "$.status": enum("completed", "partial"), "$.results[].model_id": enum(*SHOTGUN_IDS),
        "$.results[].status": enum("success", "error")}))
    reply = await http.post("/upscale", json=request("002", "upscale_request"))
    checks.append(Check("upscale_response", reply.status_code, reply.json(), rules={
        "$.status": FIXED, "$.scale_factor": FIXED, "$.alpha_preserved": FIXED, "$.cost_usd": FIXED,
        "$.input_dimensions": equals({"width": 64, "height": 64}),
        "$.output_dimensions": equals({"width": 256, "height": 256})}))
    reply = await http.post("/process", json=request("002", "process_request"))
    checks.append(Check("process_response", reply.status_code, reply.json(), rules={
        "$.status": enum("completed", "partial"), "$.results[].model_id": enum(*SHOTGUN_IDS),
        "$.results[].bg_removal_status": enum("success", "error"),
        "$.results[].upscale_status": enum("success", "error"),
        "$.results[].input_dimensions": equals({"width": 64, "height": 64}),
        "$.results[].output_dimensions": equals({"width": 256, "height": 256})}))
    job_id = removal.get("job_id", "")
    reply = await http.post("/log-selection", json=request("002", "log_selection_request", job_id=job_id))
    checks.append(Check("log_selection_response", reply.status_code, reply.json(), rules={"$.status": FIXED}))
    gif = "R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"  # a 1x1 GIF: the example's image/gif
    reply = await http.post("/remove-background", json={"image": gif})
    checks.append(Check("error", reply.status_code, reply.json(), expected_status=400, rules={
        "$.error.type": FIXED, "$.error.details.field": FIXED, "$.error.details.received": FIXED}))
    return checks


PROVIDERS = ("stability", "wavespeed", "huggingface", "gemini")


async def walk_003(http, live_url, webhook_sink) -> list[Check]:
    base = "/api/image-studio"
    checks = []
    reply = await http.post(f"{base}/create", json=request("003", "create_request"))
    checks.append(Check("create_response", reply.status_code, reply.json(), rules={
        "$.success": FIXED, "$.request.template_id": FIXED, "$.request.template_name": FIXED,
        "$.request.provider": enum(*PROVIDERS), "$.request.dimensions": FIXED, "$.request.quality": FIXED,
        "$.results[].width": FIXED, "$.results[].height": FIXED, "$.results[].provider": enum(*PROVIDERS),
        "$.results[].variation": FIXED, "$.total_generated": FIXED, "$.total_failed": FIXED}))
    template_rules = {"$.templates[].platform": equals("instagram")}
    for query in ({"platform": "instagram"}, {"query": "linkedin"},
                  {"use_case": "product showcase", "platform": "instagram"}):
        path = {"platform": "templates", "query": "templates/search", "use_case": "templates/recommend"}[next(
            iter(query))]
        reply = await http.get(f"{base}/{path}", params=query)
        checks.append(Check("templates", reply.status_code, reply.json(),
                            rules=template_rules if "query" not in query else {}))
    reply = await http.get(f"{base}/providers")
    checks.append(Check("providers", reply.status_code, reply.json(), maps=frozenset({"$.providers"})))
    reply = await http.post(f"{base}/estimate-cost", json=request("003", "estimate_cost_request"))
    checks.append(Check("estimate_cost_response", reply.status_code, reply.json(), rules={
        "$.currency": FIXED, "$.provider": FIXED, "$.model": FIXED, "$.operation": FIXED, "$.num_images": FIXED}))
    reply = await http.post(f"{base}/edit/process", json=request("003", "edit_request"))
    checks.append(Check("edit_response", reply.status_code, reply.json(), rules={
        "$.success": FIXED, "$.operation": FIXED, "$.provider": enum(*PROVIDERS),
        "$.image_base64": prefix("data:image/png;base64,"), "$.width": equals(64), "$.height": equals(64),
        "$.metadata.operation": FIXED}))
    reply = await http.get(f"{base}/edit/operations")
    checks.append(Check("edit_operations", reply.status_code, reply.json(), maps=frozenset({"$.operations"})))
    reply = await http.post(f"{base}/upscale", json=request("003", "upscale_request"))
    checks.append(Check("upscale_response", reply.status_code, reply.json(), rules={
        "$.success": FIXED, "$.mode": FIXED, "$.image_base64": prefix("data:image/png;base64,"),
        "$.metadata.preset": FIXED, "$.metadata.original_width": equals(64),
        "$.metadata.original_height": equals(64)}))
    reply = await http.post(f"{base}/control/process", json=request("003", "control_request"))
    checks.append(Check("control_response", reply.status_code, reply.json(), rules={
        "$.success": FIXED, "$.operation": FIXED, "$.provider": enum(*PROVIDERS),
        "$.metadata.operation": FIXED, "$.metadata.control_strength": FIXED}))
    reply = await http.get(f"{base}/control/operations")  # "Similar format to Edit Operations"
    checks.append(Check("edit_operations", reply.status_code, reply.json(), maps=frozenset({"$.operations"}),
                        label="control_operations"))
    reply = await http.post(f"{base}/social/optimize", json=request("003", "social_request"))
    checks.append(Check("social_response", reply.status_code, reply.json(), match_by={"$.results": "platform"},
                        rules={"$.success": FIXED, "$.results[].format": FIXED, "$.results[].width": FIXED,
                               "$.results[].height": FIXED, "$.results[].image_base64": prefix("data:image/png;"),
                               "$.total_optimized": equals(3)}))
    reply = await http.get(f"{base}/social/platforms/instagram/formats")
    checks.append(Check("platform_formats", reply.status_code, reply.json(), match_by={"$.formats": "name"},
                        rules={f"$.formats[].{k}": FIXED for k in
                               ("width", "height", "ratio", "safe_zone", "file_type", "max_size_mb")}))
    reply = await http.get(f"{base}/platform-specs/instagram")
    checks.append(Check("platform_specs", reply.status_code, reply.json(), match_by={"$.formats": "name"},
                        rules={"$.name": FIXED, "$.formats[].ratio": FIXED, "$.formats[].size": FIXED,
                               "$.file_types": FIXED, "$.max_file_size": FIXED}))
    reply = await http.get(f"{base}/health")
    checks.append(Check("health", reply.status_code, reply.json(), rules={
        "$.status": FIXED, "$.service": FIXED, "$.modules.*": enum("available")}, maps=frozenset({"$.modules"})))
    reply = await http.post(f"{base}/edit/process", json=request("003", "edit_request", image_base64="not an image"))
    checks.append(Check("error", reply.status_code, reply.json(), expected_status=400))
    return checks


async def walk_004(http, live_url, webhook_sink) -> list[Check]:
    checks = []
    reply = await http.get("/api/models")
    checks.append(Check("models", reply.status_code, reply.json(), maps=frozenset({"$.models"})))
    sent = request("004", "generate_request")
    sent["settings"].update(SMALL_CYBERIMAGE)
    reply = await http.post("/api/generate", json=sent)
    checks.append(Check("generate_response", reply.status_code, reply.json(), rules={
        "$.status": FIXED, "$.num_images": FIXED, "$.message": FIXED}))
    job_id = reply.json().get("job_id", "")
    status, job = await _poll(http, f"/api/status/{job_id}", lambda b: b["status"] in ("completed", "failed"))
    echo = {"$.model_id": equals(sent["model_id"]), "$.prompt": equals(sent["prompt"])}
    checks.append(Check("status_completed", status, job, rules={
        **echo, "$.status": FIXED, "$.progress.completed": FIXED, "$.progress.failed": FIXED,
        "$.images[].metadata.model_id": equals(sent["model_id"]),
        "$.images[].metadata.prompt": equals(sent["prompt"])}))
    image_id = (job.get("images") or [{}])[0].get("id", "missing")
    reply = await http.get(f"/api/get_image/{image_id}")
    checks.append(Check("get_image", reply.status_code, {"content_type": reply.headers.get("content-type")},
                        rules={"$.content_type": FIXED}))
    reply = await http.get(f"/api/image/{image_id}/metadata")
    checks.append(Check("image_metadata", reply.status_code, reply.json(), rules=echo))
    reply = await http.get("/api/gallery", params={"page": 1, "limit": 20})
    checks.append(Check("gallery", reply.status_code, reply.json(), rules={"$.page": FIXED, "$.limit": FIXED}))
    reply = await http.get("/api/queue")
    checks.append(Check("queue", reply.status_code, reply.json()))
    reply = await http.get("/api/queue", params={"detailed": "true"})
    checks.append(Check("queue_detailed", reply.status_code, reply.json(), maps=frozenset({"$.models"})))
    reply = await http.post("/api/reset_queue")
    checks.append(Check("reset_queue", reply.status_code, reply.json(), rules={"$.status": FIXED}))
    reply = await http.post("/api/enrich", json=request("004", "enrich_request"))
    checks.append(Check("enrich_response", reply.status_code, reply.json(), rules={
        "$.original_prompt": FIXED, "$.style": FIXED}))
    reply = await http.delete(f"/api/image/{image_id}")
    checks.append(Check("delete_image", reply.status_code, reply.json(), rules={"$.status": FIXED,
                                                                               "$.message": FIXED}))
    reply = await http.post("/api/generate", json=request("004", "generate_request", model_id="flux-99"))
    checks.append(Check("error", reply.status_code, reply.json(), expected_status=400, rules={"$.status": FIXED}))
    return checks


WALKS = {"000": walk_000, "001": walk_001, "002": walk_002, "003": walk_003, "004": walk_004}
# Examples the walks compare with beyond seed_examples.json: what a GET of a CyberImage image answers.
EXTRA_EXAMPLES = {"004": {"get_image": {"content_type": "image/png"}}}


@pytest.mark.parametrize("seed", sorted(WALKS))
async def test_responses_match_the_document_or_a_listed_difference(seed, mesh, live_gateway, webhook_sink, tmp_path):
    SEEDS_BY_EXAMPLE.clear()
    SEEDS_BY_EXAMPLE.update(SEEDS[seed])
    SEEDS_BY_EXAMPLE.update(EXTRA_EXAMPLES.get(seed, {}))
    if seed == "000":
        # The document's requests carry a webhook_url: a mesh that may deliver to the loopback sink (tests only).
        own = await start_mesh(tmp_path, {
            "orchestrator": {"url_allow_list": "127.0.0.1/32", "webhook_default_secret": "whsec-test",
                             "webhook_poll_interval_s": 0.1, "public_image_base_url": "http://gateway/v1/images/"},
            "gateway": {"url_allow_list": "127.0.0.1/32"}})
        try:
            checks = await WALKS[seed](own.http, live_gateway, webhook_sink)
        finally:
            await own.close()
    else:
        checks = await WALKS[seed](mesh.http, live_gateway, webhook_sink)
    found = {(seed, d.example, d.path, d.kind): d.detail for check in checks for d in compare(check)}
    listed = {**documented("deliberate"), **documented("fid")}
    listed = {key: why for key, why in listed.items() if key[0] == seed}
    undocumented = [f"| {s} | {e} | `{p}` | {k}: {found[(s, e, p, k)]} | ? |" for s, e, p, k in sorted(found)
                    if (s, e, p, k) not in listed]
    stale = [f"{key}" for key in sorted(listed) if key not in found]
    report = []
    if undocumented:
        report += ["differences from the seed document not listed in docs/gateway.md:", *undocumented]
    if stale:
        report += ["listed in docs/gateway.md but no longer different (delete the rows):", *stale]
    assert not report, "\n".join(report)


def test_every_listed_difference_says_why():
    for table in TABLES:
        for key, why in documented(table).items():
            assert why and why != "?", f"{key} in the {table} table has no reason"
