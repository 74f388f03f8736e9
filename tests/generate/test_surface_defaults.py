"""A surface's documented defaults (GenerateParameters.defaults): they fill what a request left unset and are fitted
into the model's limits with a note, while the same value given explicitly is refused (Generate's rule)."""

from __future__ import annotations

import grpc
import pytest

from services.generate.catalog import ModelEntry
from services.generate.defaults import SurfaceDefaults, fill
from services.generate.request import GenerateInput
from shared.gen.imagemesh.v1 import generate_service_pb2 as pb
from shared.gen.imagemesh.v1 import generate_service_pb2_grpc as pb_grpc

CYBERIMAGE = SurfaceDefaults(width=1024, height=1024, steps=30, guidance_scale=7.5)
SMALL = ModelEntry(id="small", path="small", default_steps=4, max_steps=8, max_guidance=5.0, default_width=256,
                   default_height=256, max_size=512)


def test_defaults_past_the_models_limits_are_fitted_with_notes():
    inp = GenerateInput(prompt="x")
    notes = fill(inp, SMALL, CYBERIMAGE)
    # The size keeps to the checkpoint's trained pixel count (its 256x256 default), as a derived size does.
    assert (inp.width, inp.height, inp.steps, inp.guidance_scale) == (256, 256, 8, 5.0)
    assert len(notes) == 3 and all("small" in note for note in notes)


def test_a_default_size_the_model_was_trained_at_is_used_as_is():
    inp = GenerateInput(prompt="x")
    large = SMALL.model_copy(update={"id": "large", "default_width": 1024, "default_height": 1024, "max_size": 2048})
    assert fill(inp, large, SurfaceDefaults(width=1024, height=1024)) == [] and (inp.width, inp.height) == (1024, 1024)


def test_values_the_request_gave_are_left_to_generates_checks():
    inp = GenerateInput(prompt="x", width=64, height=64, steps=2, guidance_scale=1.0)
    assert fill(inp, SMALL, CYBERIMAGE) == [] and (inp.width, inp.height, inp.steps, inp.guidance_scale) == (
        64, 64, 2, 1.0)


def test_one_side_given_takes_the_other_default_side():
    inp = GenerateInput(prompt="x", width=100)
    fill(inp, SMALL, CYBERIMAGE)
    assert (inp.width, inp.height) == (100, 256)


@pytest.fixture
def generate(mesh):
    channel = grpc.aio.insecure_channel(mesh.address("generate"))
    yield pb_grpc.GenerateServiceStub(channel)


async def test_check_parameters_reports_the_plan_with_the_defaults_applied(generate):
    reply = await generate.CheckParameters(pb.CheckParametersRequest(parameters=pb.GenerateParameters(
        model="flux-1", prompt="a castle", defaults=pb.GenerateDefaults(width=1024, height=1024, steps=30,
                                                                         guidance_scale=7.5))))
    # tiny-flux-dev was trained at 128x128: the 1024x1024 default is fitted to it, with a note; 30 steps and
    # guidance 7.5 are within its limits.
    assert (reply.model_id, reply.width, reply.height, reply.steps, reply.guidance_scale) == (
        "tiny-flux-dev", 128, 128, 30, 7.5)
    assert [note for note in reply.notes if "default size 1024x1024" in note]


async def test_check_parameters_refuses_what_generate_refuses(generate):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await generate.CheckParameters(pb.CheckParametersRequest(parameters=pb.GenerateParameters(
            model="flux-1", prompt="a castle", width=4096, height=4096)))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
