"""Traces cross the mesh with W3C trace context, and JSON logs carry the trace id."""

from __future__ import annotations

import json
import logging

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared import telemetry
from shared.clients import call, create_channel
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as orch_pb
from shared.gen.imagemesh.v1 import orchestrator_service_pb2_grpc as orch_grpc
from shared.gen.imagemesh.v1 import upscale_service_pb2 as up_pb
from tests.images import disc_rgba, png_bytes


async def test_one_trace_spans_client_orchestrator_and_upscale(mesh):
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider), "build_server installs the SDK provider"
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    channel = create_channel(mesh.address("orchestrator"))
    try:
        with telemetry.tracer().start_as_current_span("test-root") as root:
            trace_id = root.get_span_context().trace_id
            spec = orch_pb.JobSpec(upscale=up_pb.UpscaleRequest(
                image=common_pb2.Image(data=png_bytes(disc_rgba(8))), scale_factor=2))
            await call(orch_grpc.OrchestratorServiceStub(channel).RunJob, orch_pb.RunJobRequest(spec=spec))
    finally:
        await channel.close()
    spans = {(span.name, span.kind): span for span in exporter.get_finished_spans()}
    server, client = trace.SpanKind.SERVER, trace.SpanKind.CLIENT
    # The orchestrator's server span, its client call to Upscale, and Upscale's server span share one trace.
    for key in [("/imagemesh.v1.OrchestratorService/RunJob", server), ("/imagemesh.v1.UpscaleService/Upscale", client),
                ("/imagemesh.v1.UpscaleService/Upscale", server)]:
        assert spans[key].context.trace_id == trace_id, key
    assert spans[("/imagemesh.v1.UpscaleService/Upscale", server)].parent.span_id == \
        spans[("/imagemesh.v1.UpscaleService/Upscale", client)].context.span_id


def test_json_log_lines_carry_the_trace_id():
    record = logging.LogRecord("imagemesh.test", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    with telemetry.tracer().start_as_current_span("logging") as span:
        line = json.loads(telemetry.JsonFormatter().format(record))
        expected = format(span.get_span_context().trace_id, "032x")
    assert line["message"] == "hello world" and line["level"] == "INFO"
    assert line["trace_id"] == expected
