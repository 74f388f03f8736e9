"""create_server for the Orchestrator."""

from __future__ import annotations

from services.orchestrator.backends import Backends
from services.orchestrator.core import OrchestratorCore
from services.orchestrator.metrics import JobMetrics
from services.orchestrator.servicer import OrchestratorServicer
from services.orchestrator.settings import OrchestratorSettings
from services.orchestrator.shotgun import RankingSource, Shotgun, ShotgunLimits
from services.orchestrator.store import AsyncStore, JobStore, make_engine
from services.orchestrator.webhooks import DeliveryFactory
from services.orchestrator.workflows import Registry, load_workflows
from shared import images
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as pb, orchestrator_service_pb2_grpc as pb_grpc
from shared.image_store import LocalImageStore
from shared.server import ServiceRuntime, build_server

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["OrchestratorService"].full_name


def create_server(settings: OrchestratorSettings | None = None,
                  ranking: RankingSource | None = None) -> tuple[ServiceRuntime, int]:
    """`ranking` ranks models per image category for the shotgun's top_k and "auto"; by default the selection
    store's ranking (`OrchestratorCore.rank`, fed by LogSelection)."""
    settings = settings or OrchestratorSettings()
    registry = Registry(load_workflows(settings.workflows_dir))
    threads = settings.job_workers + 4
    sync_store = JobStore(make_engine(settings.resolved_database_url, pool_size=threads),
                          DeliveryFactory(settings.public_image_base_url), settings.max_pending_jobs)
    sync_store.migrate()
    store = AsyncStore(sync_store, threads)
    backends = Backends.connect(settings)
    image_store = LocalImageStore(settings.resolved_image_store_dir)
    servicer = OrchestratorServicer(None)  # type: ignore[arg-type]

    async def ready() -> bool:
        return await store.ping()

    runtime = build_server(
        settings,
        lambda server: pb_grpc.add_OrchestratorServiceServicer_to_server(servicer, server),
        [SERVICE_NAME],
        ready,
    )
    # The core's job metrics live on the runtime's registry, which exists only once the server is built; the
    # server takes no calls before start(), so the servicer gets its core here.
    core = OrchestratorCore(settings, backends, store, image_store, registry,
                            JobMetrics.create(runtime.metrics.registry))
    servicer.core = core
    shotgun = Shotgun(
        backends.background_removal, backends.upscale, ranking or core.rank,
        ShotgunLimits(settings.shotgun_per_model_timeout_s, settings.shotgun_max_models),
        images.ImageLimits(settings.max_image_bytes, settings.max_image_pixels),
        image_store,
    )
    core.shotgun_runner = shotgun.run
    servicer.shotgun = shotgun
    # The worker loops start with the server (they need the running event loop), and stop after it: jobs
    # still running get the grace period, then go back to the queue for another replica.
    async def stop() -> None:
        await core.stop(settings.grace_period_s)
        await backends.close()
        store.close()

    runtime.on_start(core.start)
    runtime.on_stop(stop)
    runtime.core = core  # type: ignore[attr-defined]  # for tests and in-process tools
    return runtime, runtime.port
