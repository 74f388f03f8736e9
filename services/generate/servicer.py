"""Thin gRPC servicer: protobuf <-> GenerateCore."""

from __future__ import annotations

import asyncio

import grpc

from services.generate import defaults as surface_defaults
from services.generate.core import GenerateCore, GenerateOutput
from services.generate.edits import Outpaint
from services.generate.loaded import LoadState
from services.generate.request import GenerateInput
from shared import images
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import generate_service_pb2 as pb
from shared.gen.imagemesh.v1 import generate_service_pb2_grpc as pb_grpc

_OPERATIONS = {
    pb.GENERATE_OPERATION_UNSPECIFIED: "text_to_image",
    pb.GENERATE_OPERATION_TEXT_TO_IMAGE: "text_to_image",
    pb.GENERATE_OPERATION_IMAGE_TO_IMAGE: "image_to_image",
    pb.GENERATE_OPERATION_INPAINT: "inpaint",
    pb.GENERATE_OPERATION_CONTROL: "control",
    pb.GENERATE_OPERATION_INSTRUCT_EDIT: "instruct_edit",
    pb.GENERATE_OPERATION_STYLE: "style",
    pb.GENERATE_OPERATION_STYLE_TRANSFER: "style_transfer",
    pb.GENERATE_OPERATION_SEGMENT: "segment",
}
_OPERATION_ENUM = {name: value for value, name in _OPERATIONS.items() if value != pb.GENERATE_OPERATION_UNSPECIFIED}
_STATES = {LoadState.NOT_LOADED: pb.MODEL_STATE_NOT_LOADED, LoadState.LOADING: pb.MODEL_STATE_LOADING,
           LoadState.READY: pb.MODEL_STATE_READY, LoadState.FAILED: pb.MODEL_STATE_FAILED}


class GenerateServicer(pb_grpc.GenerateServiceServicer):
    def __init__(self, core: GenerateCore, limits: images.ImageLimits) -> None:
        self.core = core
        self.limits = limits

    def _prepared(self, p: pb.GenerateParameters) -> tuple[GenerateInput, list[str]]:
        """The request's input with the surface's defaults (p.defaults) filled in, and the notes that says."""
        inp = self._input(p)
        if not p.HasField("defaults"):
            return inp, []
        d = p.defaults
        wanted = surface_defaults.SurfaceDefaults(
            width=d.width, height=d.height, steps=d.steps,
            guidance_scale=d.guidance_scale if d.HasField("guidance_scale") else None)
        return inp, surface_defaults.fill(inp, self.core.registry.resolve(inp.model), wanted)

    def _input(self, p: pb.GenerateParameters) -> GenerateInput:
        outpaint = None
        if p.HasField("outpaint"):
            outpaint = Outpaint(p.outpaint.left, p.outpaint.right, p.outpaint.up, p.outpaint.down)
            outpaint.check()

        def image(field: str):
            if not p.HasField(field):
                return None
            decoded = images.decode_message(getattr(p, field), self.limits)
            if outpaint is not None and field == "init_image":
                # decode_message checked the image's own pixels; the grown canvas is checked before it exists.
                outpaint.check_canvas(decoded.width, decoded.height, self.limits.max_pixels)
            return decoded

        return GenerateInput(
            prompt=p.prompt, model=p.model, negative_prompt=p.negative_prompt, width=p.width, height=p.height,
            aspect_ratio=p.aspect_ratio, steps=p.steps,
            guidance_scale=p.guidance_scale if p.HasField("guidance_scale") else None,
            seed=p.seed if p.HasField("seed") else None, num_images=p.num_images, style_preset=p.style_preset,
            output_format=p.output_format, scheduler=p.scheduler,
            operation=_OPERATIONS.get(p.operation, f"unknown({p.operation})"),
            init_image=image("init_image"), mask_image=image("mask_image"),
            strength=p.strength if p.HasField("strength") else None, owner=p.owner, template=p.template,
            quality=p.quality, outpaint=outpaint, mask_from_alpha=p.mask_from_alpha,
            control_preprocessor=p.control_preprocessor.strip().lower(),
            control_strength=p.control_strength if p.HasField("control_strength") else None,
            style_image=image("style_image"),
            style_strength=p.style_strength if p.HasField("style_strength") else None,
            image_guidance_scale=p.image_guidance_scale if p.HasField("image_guidance_scale") else None,
            search_prompt=p.search_prompt, subject_mask=image("subject_mask"), control_image=image("control_image"),
        )

    async def Generate(self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext) -> pb.GenerateResponse:
        # Decoding the input images is image work: a worker thread, never the event loop.
        inp, notes = await asyncio.to_thread(self._prepared, request.parameters)
        return _response(await self.core.generate(inp), notes)

    async def CheckParameters(self, request: pb.CheckParametersRequest,
                              context: grpc.aio.ServicerContext) -> pb.CheckParametersResponse:
        inp, notes = await asyncio.to_thread(self._prepared, request.parameters)
        plan = await asyncio.to_thread(self.core.plan, inp)
        return pb.CheckParametersResponse(model_id=plan.entry.id, width=plan.output_width, height=plan.output_height,
                                          steps=plan.steps, guidance_scale=plan.guidance_scale,
                                          notes=[*notes, *plan.notes])

    async def GenerateStream(self, request: pb.GenerateStreamRequest, context: grpc.aio.ServicerContext):
        events: asyncio.Queue = asyncio.Queue()
        inp, notes = await asyncio.to_thread(self._prepared, request.parameters)
        task = asyncio.create_task(self.core.generate(inp, events.put_nowait))
        try:
            while True:
                getter = asyncio.ensure_future(events.get())
                done, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    yield pb.GenerateStreamResponse(progress=getter.result())
                    continue
                getter.cancel()
                break
            while not events.empty():
                yield pb.GenerateStreamResponse(progress=events.get_nowait())
            yield pb.GenerateStreamResponse(result=_response(task.result(), notes))
        finally:
            # The client went away (or the deadline passed) while we waited: cancelling the core's task
            # cancels the job, which stops the pipeline at its next step.
            if not task.done():
                task.cancel()

    async def ListModels(self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext) -> pb.ListModelsResponse:
        device = self.core.device
        models = []
        for status in self.core.models():
            e = status.entry
            models.append(pb.ModelInfo(
                id=e.id, aliases=list(e.aliases), description=e.description, source=e.source,
                pipeline_class=e.pipeline, dtype=e.dtype, state=_STATES[status.state], state_reason=status.reason,
                device=device, default_steps=e.default_steps, min_steps=e.min_steps, max_steps=e.max_steps,
                default_guidance=e.default_guidance, min_size=e.min_size, max_size=e.max_size,
                size_multiple=e.size_multiple, supports_negative_prompt=e.supports_negative_prompt,
                operations=[_OPERATION_ENUM[o] for o in e.operations],
                default_width=e.default_width, default_height=e.default_height, is_default=status.is_default,
                max_images_per_request=self.core.settings.max_images_per_request, providers=list(e.providers),
            ))
        templates = [pb.SizeTemplate(id=key, width=w, height=h) for key, (w, h) in self.core.templates.items()]
        return pb.ListModelsResponse(models=models, device=device, default_model=self.core.registry.default_id,
                                     templates=templates)


def _response(out: GenerateOutput, notes: list[str] | None = None) -> pb.GenerateResponse:
    plan = out.plan
    return pb.GenerateResponse(
        images=[pb.GeneratedImage(image=img.image, seed=img.seed, index=img.index) for img in out.images],
        metadata=pb.GenerationMetadata(
            model_id=plan.entry.id, effective_prompt=plan.effective_prompt, steps=plan.steps,
            guidance_scale=plan.guidance_scale, width=plan.output_width, height=plan.output_height, device=out.device,
            timings=pb.GenerationTimings(**out.timings_ms),
            # Seconds and class only: the Orchestrator's price table is the one place dollars are made.
            cost=common_pb2.Cost(device_seconds=out.device_seconds, device_class=out.device_class),
            batch_size=out.batch_size, scheduler=out.scheduler, path=plan.path,
        ),
        notes=[*(notes or []), *out.notes],
    )
