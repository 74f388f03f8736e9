from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.config import MIB, ClientSettings, default_ports

# Each dialect's documented default limit as "N/period" (period: second, minute, hour, day), by bucket name.
# 000 Freepik: Professional tier 1000/hour (its free tier, 10/day, is one setting away). 001 FLUX Krea: 30/minute
# authenticated, 10/minute anonymous. 002 shotgun: 60/minute. 003 Image Studio: tier-based, undocumented numbers:
# 60/minute. 004 CyberImage: 10/hour per IP on generation; its read endpoints (status polling every 5 s, gallery,
# queue) get their own, wider bucket so the documented polling client is not locked out by its own polls.
DEFAULT_RATE_LIMITS = {
    "freepik": "1000/hour",
    "flux": "30/minute",
    "flux_anonymous": "10/minute",
    "shotgun": "60/minute",
    "image_studio": "60/minute",
    "cyberimage": "10/hour",
    "cyberimage_read": "720/hour",
    # OpenAI Images API: OpenAI's limits depend on the account's tier; one request a second on average.
    "openai": "60/minute",
    # A1111 web UI API: generation and edits; its UIs poll /progress about once a second, so reads count apart.
    "a1111": "60/minute",
    "a1111_read": "600/minute",
    # Downloads of stored results through /images/{ref}, whichever dialect's response linked them.
    "images": "600/minute",
}


class GatewaySettings(ClientSettings):
    model_config = SettingsConfigDict(env_prefix="IMAGEMESH_", extra="ignore")

    service_name: str = "gateway"
    host: str = "127.0.0.1"
    http_port: int = default_ports("gateway")[0]
    metrics_port: int = default_ports("gateway")[1]
    version: str = "1.0.0"
    # Request bodies past this are refused with 413 before they are parsed (the seeds' 50 MB image limit).
    max_body_bytes: int = 50 * MIB
    # A decoded image (base64 or fetched from image_url) past this is refused with 413.
    max_image_bytes: int = 50 * MIB
    # Deadline of one synchronous call into the mesh.
    request_timeout_s: float = 300.0
    # Retry-After (seconds) on a 429 or 503 that carries no window of its own: a full queue, a service down.
    retry_after_s: int = Field(5, ge=1)

    # The gateway's own HTTP server (gateway/server.py; docs/gateway.md, "Slow clients"). A request's headers must
    # be complete this long after its connection opens (or after the previous response on a keep-alive
    # connection); a request body may pause at most this long between two pieces; past either: 408 and close.
    http_header_timeout_s: float = Field(10.0, gt=0)
    http_body_timeout_s: float = Field(30.0, gt=0)
    # An idle keep-alive connection is closed after this many seconds.
    http_keep_alive_timeout_s: int = Field(5, ge=1)
    # Connections plus requests in flight; past it the answer is 503 at once (0 = unbounded, not recommended).
    http_max_connections: int = Field(1000, ge=0)
    # Connections the kernel queues before the server accepts them.
    http_backlog: int = Field(2048, ge=1)
    health_timeout_s: float = 2.0
    # /health answers from cached health watches; Generate's model listing is re-read this often and whenever
    # Generate turns SERVING.
    health_models_refresh_s: float = 60.0
    log_level: str = "INFO"
    log_json: bool = True

    # Auth: "key1:owner1,key2:owner2". Keys may also live in the job store's database (gateway_api_keys).
    # With no key configured anywhere, auth is off (make run on loopback); with any key, every request needs one.
    api_keys: str = ""
    # Force auth on even before any key exists (a deployment that only adds keys to the database later).
    require_auth: bool = False
    # Owner recorded for requests when auth is off.
    anonymous_owner: str = "anonymous"

    # The job store's database, shared with the orchestrator, so every gateway replica counts the same windows.
    var_dir: Path = Path("var")
    database_url: str = ""
    # Limits by bucket, "N/period"; a JSON object in IMAGEMESH_RATE_LIMITS overrides single buckets.
    rate_limits: dict[str, str] = Field(default_factory=dict)
    rate_limit_enabled: bool = True
    # Count the windows in Redis ("redis://host:6379/0") instead of the job store's database: exact across every
    # replica using it, and cheaper than PostgreSQL per request. Empty: the database (embedded SQLite by default).
    rate_limit_redis_url: str = ""

    # image_url fetching: a bound on time and bytes, and the SSRF rules of shared/ssrf.py.
    fetch_timeout_s: float = 20.0
    # Non-public networks or host names image_url and webhook_url may reach anyway ("10.0.0.0/8,cdn.internal");
    # empty = public addresses only.
    url_allow_list: str = ""

    # Longest prompt accepted by dialects whose seed gives no number (FLUX Krea says 1000, CyberImage 500); the
    # Generate service's own default limit, so an asynchronous job is refused at submit rather than failing later.
    max_prompt_chars: int = 1000
    # The scheme://host[:port][/prefix] clients reach this gateway at; result URLs (image_url, result_url) are
    # built from it, never from the request's Host header. Empty: http://<host>:<http_port> of this process
    # (127.0.0.1 when bound to every interface), right for `make run`; set it behind an ingress.
    public_base_url: str = ""
    # Where the catalogues (Image Studio templates, providers, operations, enrichment styles) are read from.
    catalogue_dir: Path | None = None

    @property
    def resolved_database_url(self) -> str:
        # The orchestrator's default: one SQLite file for jobs, keys and rate-limit windows.
        return self.database_url or f"sqlite:///{(self.var_dir / 'imagemesh.db').resolve()}"

    @property
    def resolved_public_base_url(self) -> str:
        if self.public_base_url:
            return self.public_base_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.http_port}"

    @property
    def resolved_rate_limits(self) -> dict[str, str]:
        return {**DEFAULT_RATE_LIMITS, **self.rate_limits}

    @property
    def resolved_catalogue_dir(self) -> Path:
        return self.catalogue_dir or Path(__file__).parent / "catalogues"
