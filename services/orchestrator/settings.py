from __future__ import annotations

from pathlib import Path

from pydantic import Field

from shared.config import ClientSettings, ServiceSettings, default_ports


class OrchestratorSettings(ServiceSettings, ClientSettings):
    service_name: str = "orchestrator"
    grpc_port: int = default_ports("orchestrator")[0]
    metrics_port: int = default_ports("orchestrator")[1]
    # Deadline of one backend call made for a synchronous job step.
    backend_timeout_s: float = 300.0
    # A generate job past Generate's per-request image limit runs as several requests, up to this many images.
    max_images_per_job: int = 64
    # Deadline of the parameter check a generate submit asks Generate for (past it, the job runs unchecked).
    submit_check_timeout_s: float = 10.0

    # --- job store -------------------------------------------------------------------------------------------
    # SQLAlchemy URL; empty = SQLite at <var_dir>/imagemesh.db. PostgreSQL: postgresql+psycopg://user@host/db.
    database_url: str = ""
    # Submits past this many pending jobs get QUEUE_FULL instead of an ever-growing queue.
    max_pending_jobs: int = 10_000

    # --- image store retention (services/orchestrator/retention.py; docs/orchestrator.md, "Image retention") ---
    # Images older than this are deleted (0 = kept forever).
    image_retention_max_age_s: float = Field(30 * 86400.0, ge=0)
    # Past this many bytes in the store the oldest images are deleted first (0 = no bound).
    image_retention_max_total_bytes: int = Field(0, ge=0)
    # The size bound never deletes an image younger than this (uploads of queued jobs, results not yet fetched).
    image_retention_min_age_s: float = Field(3600.0, ge=0)
    # How often the sweep runs (the first at start); 0 = never.
    image_retention_sweep_interval_s: float = Field(3600.0, ge=0)

    # --- workers ---------------------------------------------------------------------------------------------
    # Jobs one orchestrator process runs at once (they mostly wait on backends, so more than CPU cores).
    job_workers: int = 4
    # A claimed job's lease; the worker renews it every heartbeat. A lease that runs out means its worker died
    # and the job is taken over by any replica.
    lease_s: float = 30.0
    heartbeat_s: float = 5.0
    # How often an idle worker looks for work that other replicas queued (local submits wake it at once).
    poll_interval_s: float = 0.5
    # A job whose worker died this many times is failed with WORKER_LOST instead of being run again.
    max_job_attempts: int = 3
    # A running job's progress (e.g. Generate's denoising steps) is written at most once per interval; steps
    # that come faster are dropped, never invented. 0.05 s keeps every step of a generation whose steps take
    # 50 ms or more (FLUX at 1024 px on a GPU, any model on CPU), and caps a faster one at 20 writes/s per job;
    # 0 writes every step.
    progress_interval_s: float = 0.05
    # How often WatchJob/RunJob re-read a job that runs in another replica.
    watch_poll_s: float = 0.25

    # --- workflows -------------------------------------------------------------------------------------------
    # Extra YAML workflow definitions (same id overrides a shipped one).
    workflows_dir: Path | None = None

    # --- cost (services/orchestrator/pricing.py: the one price table; docs/orchestrator.md, "Cost") -----------
    # Price of one measured device second per device class, in US dollars.
    price_per_second_usd: dict[str, float] = {"cpu": 0.0002, "cuda": 0.0014, "mps": 0.0006}  # noqa: RUF012
    # Per-service overrides: job kind ("generate", "upscale", ...) -> device class -> price per second.
    service_price_per_second_usd: dict[str, dict[str, float]] = {}  # noqa: RUF012
    # Device class priced when a backend does not say which one it used, and the class estimates assume.
    default_device_class: str = "cpu"
    # One credit (Image Studio's currency) in US dollars: credits = usd / usd_per_credit.
    usd_per_credit: float = 0.01
    # EstimateCost's catalogue: device seconds per megapixel of output, by action or "action:model_id".
    estimate_seconds_per_megapixel: dict[str, float] = {  # noqa: RUF012
        "generate": 20.0, "remove_background": 2.0, "upscale": 4.0, "relight": 1.0}

    # --- webhooks --------------------------------------------------------------------------------------------
    # Per-owner (API key id) signing secrets, and the secret for owners without one.
    webhook_secrets: dict[str, str] = {}  # noqa: RUF012
    webhook_default_secret: str = ""
    # Delay before each retry; len + 1 attempts in all. Default: 6 attempts over about ten minutes.
    webhook_retry_delays_s: list[float] = [10.0, 30.0, 60.0, 150.0, 350.0]  # noqa: RUF012
    # +- this fraction of random jitter on every delay, so a recovering receiver is not hit in lockstep.
    webhook_jitter: float = 0.2
    # A Retry-After longer than this is capped (a receiver cannot park a delivery for a day).
    webhook_max_retry_after_s: float = 900.0
    webhook_timeout_s: float = 10.0
    webhook_poll_interval_s: float = 1.0
    # Comma list of hosts or CIDRs that webhooks may reach although they are private/loopback (shared/ssrf.py).
    url_allow_list: str = ""
    # Prefix for image URLs in webhook payloads (e.g. https://api.example.com/v1/images/); empty = bare refs.
    public_image_base_url: str = ""
    # How long a direct (S3 presigned) image URL handed to a client stays valid.
    image_url_expires_s: int = Field(3600, ge=60, le=7 * 86400)

    # --- shotgun --------------------------------------------------------------------------------------------
    # Shotgun: deadline of each model's call when the request gives none, and the most models one shotgun runs.
    # Replicas of BackgroundRemoval: background_removal_address takes a comma list or dns:///name:port (round robin).
    shotgun_per_model_timeout_s: float = 60.0
    shotgun_max_models: int = 16

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.var_dir / 'imagemesh.db').resolve()}"
