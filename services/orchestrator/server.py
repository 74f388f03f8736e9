"""create_server for the Orchestrator."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from services.orchestrator.backends import Backends
from services.orchestrator.core import OrchestratorCore, ranked_models
from services.orchestrator.job_store import AsyncStore, JobStore, make_engine
from services.orchestrator.metrics import JobMetrics
from services.orchestrator.pricing import PriceTable
from services.orchestrator.retention import RetentionSweeper
from services.orchestrator.servicer import OrchestratorServicer
from services.orchestrator.settings import OrchestratorSettings
from services.orchestrator.shotgun import RankingSource, Shotgun, ShotgunLimits
from services.orchestrator.webhooks import DeliveryFactory
from services.orchestrator.workflows import WorkflowCatalog, load_workflows
from shared import images
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as pb
from shared.gen.imagemesh.v1 import orchestrator_service_pb2_grpc as pb_grpc
from shared.image_store import ImageStore, RetentionPolicy, open_image_store
from shared.server import ServiceRuntime, build_server

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["OrchestratorService"].full_name


@dataclass
class OrchestratorDeps:
    """An Orchestrator's collaborators. Whatever is None, `build_deps` builds from settings; a caller that needs
    to look inside (tests, in-process tools: the job store, the runner, the ranking) builds the deps, passes them
    to `create_server` and keeps them. The server owns what it is given: stopping it closes the job store and
    the backend channels.

    `ranking` ranks models per image category for the shotgun's top_k and "auto"; by default the selection
    store's ranking (fed by LogSelection). An injected `core` brings its own job metrics and shotgun."""

    metrics_registry: CollectorRegistry | None = None
    workflows: WorkflowCatalog | None = None
    job_store: AsyncStore | None = None
    backends: Backends | None = None
    image_store: ImageStore | None = None
    ranking: RankingSource | None = None
    shotgun: Shotgun | None = None
    core: OrchestratorCore | None = None


def open_job_store(settings: OrchestratorSettings) -> AsyncStore:
    """The job store on the configured database, its schema in place."""
    threads = settings.job_workers + 4
    sync_store = JobStore(make_engine(settings.resolved_database_url, pool_size=threads),
                          DeliveryFactory(settings.public_image_base_url), settings.max_pending_jobs)
    sync_store.migrate()
    store = AsyncStore(sync_store, threads)
    return store


def build_deps(settings: OrchestratorSettings, deps: OrchestratorDeps | None = None) -> OrchestratorDeps:
    """`deps` with every missing collaborator built from `settings` (this opens the database and creates its
    schema; backend channels connect lazily). Starts no worker: that is `core.start`, at the server's start."""
    deps = deps or OrchestratorDeps()
    metrics_registry = deps.metrics_registry if deps.metrics_registry is not None else CollectorRegistry()
    registry = deps.workflows if deps.workflows is not None else WorkflowCatalog(load_workflows(settings.workflows_dir))
    store = deps.job_store if deps.job_store is not None else open_job_store(settings)
    backends = deps.backends if deps.backends is not None else Backends.connect(settings)
    image_store = deps.image_store
    if image_store is None:
        image_store = open_image_store(settings)
    ranking = deps.ranking if deps.ranking is not None else functools.partial(ranked_models, store)
    shotgun = deps.shotgun if deps.shotgun is not None else Shotgun(
        backends.background_removal, backends.upscale, ranking,
        ShotgunLimits(settings.shotgun_per_model_timeout_s, settings.shotgun_max_models),
        images.ImageLimits(settings.max_image_bytes, settings.max_image_pixels),
        PriceTable.from_settings(settings),
    )
    core = deps.core if deps.core is not None else OrchestratorCore(
        settings, backends, store, image_store, registry, JobMetrics.create(metrics_registry), shotgun.run)
    return dataclasses.replace(deps, metrics_registry=metrics_registry, workflows=registry, job_store=store,
                               backends=backends, image_store=image_store, ranking=ranking, shotgun=shotgun,
                               core=core)


def create_server(settings: OrchestratorSettings | None = None,
                  deps: OrchestratorDeps | None = None) -> tuple[ServiceRuntime, int]:
    settings = settings or OrchestratorSettings()
    deps = build_deps(settings, deps)
    core, store, backends = deps.core, deps.job_store, deps.backends
    servicer = OrchestratorServicer(core, deps.shotgun)

    async def ready() -> bool:
        return await store.ping()

    runtime = build_server(
        settings,
        lambda server: pb_grpc.add_OrchestratorServiceServicer_to_server(servicer, server),
        [SERVICE_NAME],
        ready,
        registry=deps.metrics_registry,
    )

    # The worker loops start with the server (they need the running event loop), and stop after it: jobs
    # still running get the grace period, then go back to the queue for another replica.
    retention = RetentionSweeper(deps.image_store, RetentionPolicy(
        settings.image_retention_max_age_s, settings.image_retention_max_total_bytes,
        settings.image_retention_min_age_s), settings.image_retention_sweep_interval_s)
    runtime.retention = retention  # type: ignore[attr-defined] - tests read its last sweep

    async def stop() -> None:
        await retention.stop()
        await core.stop(settings.grace_period_s)
        await backends.close()
        store.close()

    runtime.on_start(core.start)
    runtime.on_start(retention.start)
    runtime.on_stop(stop)
    return runtime, runtime.port
