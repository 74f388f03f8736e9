"""Declarative workflows: a DAG with a chained and a parallel part, per-step status, optional steps, retries,
timeouts, references, and ListWorkflows' estimates."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from services.orchestrator.workflows import Scope, load_workflows, parse_workflow, resolve
from shared import clients
from shared.errors import NotFound
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as pb
from tests.images import gradient_rgb, png_bytes
from tests.orchestrator.helpers import png_image, size_of, submit, wait_for, workflow_spec

COMPLETED = common_pb2.JOB_STATUS_COMPLETED


def _seconds(stamp) -> float:
    return stamp.ToNanoseconds() / 1e9


async def test_fan_out_runs_chained_and_parallel_steps_with_per_step_status(orch):
    reply = await clients.call(orch.stub.ExecuteWorkflow, pb.ExecuteWorkflowRequest(
        spec=pb.WorkflowSpec(workflow_id="fan_out", image=png_image(16)), owner="alice"))
    done = await wait_for(orch.stub, reply.job.id)
    assert done.status == COMPLETED and done.kind == "workflow"
    steps = {s.name: s for s in done.steps}
    assert [s.name for s in done.steps] == ["base", "wide_a", "wide_b", "gather"]
    assert all(s.status == COMPLETED and s.attempts == 1 for s in done.steps)
    assert list(steps["wide_a"].depends_on) == ["base"] and list(steps["gather"].depends_on) == ["wide_a", "wide_b"]
    # Chain: each wide step starts after base finished. Fan-out: the two wide steps overlap.
    for wide in ("wide_a", "wide_b"):
        assert _seconds(steps[wide].started_at) >= _seconds(steps["base"].finished_at)
    assert _seconds(steps["wide_b"].started_at) < _seconds(steps["wide_a"].finished_at)
    assert _seconds(steps["wide_a"].started_at) < _seconds(steps["wide_b"].finished_at)
    # Real outputs through the chain: 16 -> 32 -> 64 (x2) and 96 (x3).
    sizes = {}
    for name in ("base", "wide_a", "wide_b"):
        image = await clients.call(orch.stub.GetImage, pb.GetImageRequest(ref=steps[name].outputs[0].ref,
                                                                          owner="alice"))
        sizes[name] = size_of(image.image.data)
    assert sizes == {"base": (32, 32), "wide_a": (64, 64), "wide_b": (96, 96)}
    assert [i.ref for i in done.result.workflow.images] == [steps["wide_a"].outputs[0].ref,
                                                             steps["wide_b"].outputs[0].ref]
    assert [i.ref for i in steps["gather"].outputs] == [i.ref for i in done.result.workflow.images]
    # The job's cost is the sum of its steps'.
    assert done.cost.usd == pytest.approx(sum(s.cost.usd for s in done.steps))
    assert done.cost.device_seconds > 0


async def test_params_override_defaults(orch):
    done = await wait_for(orch.stub, (await submit(orch.stub, workflow_spec("fan_out", factor_a=4))).id)
    wide_a = next(s for s in done.steps if s.name == "wide_a")
    image = await clients.call(orch.stub.GetImage, pb.GetImageRequest(ref=wide_a.outputs[0].ref, owner="alice"))
    assert size_of(image.image.data) == (128, 128)


async def test_optional_step_failure_skips_its_dependants_and_the_workflow_completes(orch):
    done = await wait_for(orch.stub, (await submit(orch.stub, workflow_spec("optional_fail"))).id)
    statuses = {s.name: s.status for s in done.steps}
    assert done.status == COMPLETED
    assert statuses == {"good": COMPLETED, "bad": common_pb2.JOB_STATUS_FAILED,
                        "after_bad": common_pb2.JOB_STATUS_SKIPPED}
    bad = next(s for s in done.steps if s.name == "bad")
    assert bad.error.reason == "INVALID_ARGUMENT" and bad.attempts == 1  # not retryable


async def test_required_step_retries_a_retryable_failure_then_fails_the_workflow(start_orchestrator, database_url):
    orch = await start_orchestrator(database_url, upscale_address="127.0.0.1:1")
    done = await wait_for(orch.stub, (await submit(orch.stub, workflow_spec("retrying"))).id)
    assert done.status == common_pb2.JOB_STATUS_FAILED
    assert done.error.reason == "SERVICE_UNAVAILABLE" and done.error.metadata["step"] == "upscale"
    assert done.steps[0].attempts == 3 and done.steps[0].status == common_pb2.JOB_STATUS_FAILED


async def test_step_timeout_is_deadline_exceeded(orch):
    done = await wait_for(orch.stub, (await submit(orch.stub, workflow_spec("too_slow"))).id)
    assert done.status == common_pb2.JOB_STATUS_FAILED and done.error.reason == "DEADLINE_EXCEEDED"
    assert "timeout of 0.2s" in done.steps[0].error.message


async def test_unknown_workflow_is_not_found(orch):
    with pytest.raises(NotFound) as err:
        await submit(orch.stub, workflow_spec("nope"))
    assert err.value.reason == "WORKFLOW_NOT_FOUND"


async def test_list_workflows_estimates_from_configuration_then_history(orch):
    listed = {w.id: w for w in (await clients.call(orch.stub.ListWorkflows, pb.ListWorkflowsRequest())).workflows}
    assert {"professional_headshot", "product_shot", "process", "social_pack", "fan_out"} <= set(listed)
    headshot = listed["professional_headshot"]
    assert [s.action for s in headshot.steps] == ["generate", "relight", "remove_background", "upscale"]
    assert headshot.estimate_source == "configured" and headshot.estimated_seconds == 210
    # A configured estimate is its seconds priced with the one price table (default class), never a YAML price.
    price = orch.settings.price_per_second_usd[orch.settings.default_device_class]
    assert headshot.estimated_cost_usd == pytest.approx(210 * price)
    estimate = await clients.call(orch.stub.EstimateCost, pb.EstimateCostRequest(action="professional_headshot",
                                                                                 count=2))
    assert estimate.cost.usd == pytest.approx(2 * 210 * price) and estimate.estimate_source == "configured"
    assert estimate.credits == pytest.approx(estimate.cost.usd / orch.settings.usd_per_credit)
    assert listed["fan_out"].estimate_source == "configured"
    done = await wait_for(orch.stub, (await submit(orch.stub, workflow_spec("fan_out"))).id)
    listed = {w.id: w for w in (await clients.call(orch.stub.ListWorkflows, pb.ListWorkflowsRequest())).workflows}
    fan_out = listed["fan_out"]
    assert fan_out.estimate_source == "history"
    measured = (done.finished_at.ToNanoseconds() - done.started_at.ToNanoseconds()) / 1e9
    assert fan_out.estimated_seconds == pytest.approx(measured, abs=1e-5)
    assert fan_out.estimated_cost_usd == pytest.approx(done.cost.usd)


def test_references_keep_types_and_format_text():
    image = png_image(4)
    scope = Scope(request=pb.WorkflowSpec(prompt="a cat", image=image), params={"factor": 4},
                  outputs={"gen": [image]})
    assert resolve("${params.factor}", scope) == 4
    assert resolve("x${params.factor} of ${request.prompt}", scope) == "x4 of a cat"
    assert resolve({"image": "${steps.gen.image}"}, scope)["image"] is image
    assert resolve("${steps.gen.images}", scope) == [image]


@pytest.mark.parametrize("definition,message", [
    ({"id": "x", "steps": [{"name": "a", "action": "teleport"}]}, "unknown action"),
    ({"id": "x", "steps": [{"name": "a", "action": "noop", "depends_on": ["b"]}]}, "unknown step"),
    ({"id": "x", "steps": [{"name": "a", "action": "noop", "depends_on": ["b"]},
                           {"name": "b", "action": "noop", "with": {"image": "${steps.a.image}"}}]}, "cycle"),
    ({"id": "x", "steps": []}, "no steps"),
])
def test_bad_definitions_are_refused(definition, message):
    with pytest.raises(ValueError, match=message):
        parse_workflow(definition)


def test_shipped_workflows_load():
    shipped = load_workflows()
    assert set(shipped) == {"professional_headshot", "product_shot", "process", "social_pack"}
    assert shipped["process"].step("upscale").for_each == "${steps.shotgun.images}"


async def test_relight_then_upscale_and_social_in_parallel(orch):
    photo = png_bytes(gradient_rgb(96, 64))
    spec = pb.JobSpec(workflow=pb.WorkflowSpec(workflow_id="retouch", image=common_pb2.Image(data=photo)))
    done = await wait_for(orch.stub, (await submit(orch.stub, spec)).id)
    assert done.status == COMPLETED, done.error
    steps = {s.name: s for s in done.steps}
    assert {n: s.status for n, s in steps.items()} == {"relight": COMPLETED, "upscale": COMPLETED,
                                                        "social": COMPLETED}
    relit = await clients.call(orch.stub.GetImage, pb.GetImageRequest(ref=steps["relight"].outputs[0].ref,
                                                                      owner="alice"))
    relit_pixels = np.asarray(Image.open(io.BytesIO(relit.image.data)).convert("RGB"), dtype=float)
    original_pixels = np.asarray(Image.open(io.BytesIO(photo)).convert("RGB"), dtype=float)
    # Professional light is +0.3 EV overall: the relit photo is brighter than the original.
    assert relit_pixels.shape == (64, 96, 3) and relit_pixels.mean() > original_pixels.mean()
    sizes = []
    for image in steps["social"].outputs:
        got = await clients.call(orch.stub.GetImage, pb.GetImageRequest(ref=image.ref, owner="alice"))
        sizes.append(size_of(got.image.data))
    assert sorted(sizes) == [(1080, 1080), (1080, 1920)]
    assert len(done.result.workflow.images) == 3  # the upscale, then the two crops
    assert done.cost.usd == pytest.approx(sum(s.cost.usd for s in done.steps))
