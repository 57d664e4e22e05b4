"""Settings: the typed, frozen tree a config file becomes (``config.parse`` builds it).

After start-up nobody reads a settings dict: components get these dataclasses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from nitroproxy.core.end_users import EndUserMode
from nitroproxy.core.limits import KeyLimits
from nitroproxy.core.selection import Strategy
from nitroproxy.core.types import ApiFormat, Price


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds. ``first_byte`` bounds the wait for response headers, ``idle`` the gap
    between two body chunks, ``total`` the whole upstream exchange."""

    connect: float = 10.0
    first_byte: float = 120.0
    idle: float = 120.0
    total: float = 900.0


@dataclass(frozen=True, slots=True)
class MockProviderSettings:
    host: str = "127.0.0.1"
    port: int = 8081
    tokens: int = 12
    delay_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class TLSSettings:
    """The listener's certificate; ``client_ca`` set means clients must present a
    certificate signed by it (mutual TLS)."""

    cert: str
    key: str
    client_ca: str | None = None


@dataclass(frozen=True, slots=True)
class ClientTimeouts:
    """Seconds a client may take, in the spirit of nginx's ``client_header_timeout`` and
    ``client_body_timeout`` (60 s) and ``keepalive_timeout`` (75 s). ``header``: from the
    first byte of a request (or from connecting) until its head is complete; ``body``: the
    whole body (nginx times the gap between two reads, which a byte a second never trips);
    ``keepalive``: an idle connection between requests."""

    header: float = 60.0
    body: float = 60.0
    keepalive: float = 75.0


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """``connections``: open client connections (past it a new one is answered 503 and
    closed); ``body_bytes_in_flight``: the request bodies held in memory at once, summed
    (past it a request is answered 503 before its body is read)."""

    connections: int = 4096
    body_bytes_in_flight: int = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 16 * 1024 * 1024
    shutdown_grace: float = 30.0
    keepalive_interval: float = 0.0
    trust_forwarded_for: bool = False
    backlog: int = 1024
    mock_provider: MockProviderSettings | None = None
    tls: TLSSettings | None = None
    timeouts: ClientTimeouts = ClientTimeouts()
    limits: ServerLimits = ServerLimits()


@dataclass(frozen=True, slots=True)
class UpstreamSettings:
    max_connections: int = 1000
    max_connections_per_host: int = 0
    keepalive_timeout: float = 30.0
    client: str = "lean"
    """``lean`` (upstream.http1: keep-alive pools and httptools' parser) or ``aiohttp``
    (its ClientSession, about 5x the CPU per call)."""


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    name: str
    kind: ApiFormat
    base_url: str
    api_key: str | None = field(default=None, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    timeouts: Timeouts = Timeouts()
    stream_usage: bool = True
    anthropic_version: str = "2023-06-01"
    auth_header: str = "authorization"
    ca_bundle: str | None = None
    insecure_skip_verify: bool = False
    responses: bool = False
    """An OpenAI-format upstream with the Responses API (and its store): /v1/responses is
    passed through to it, not translated to chat completions."""
    forward_headers: tuple[str, ...] = ()
    """Client headers (lower-case names) copied onto requests to this provider when the
    client speaks its format: Anthropic's ``anthropic-beta`` and ``anthropic-version``."""


@dataclass(frozen=True, slots=True)
class Deployment:
    name: str
    provider: str
    upstream_model: str
    price: Price = field(default_factory=Price)
    weight: float = 1.0
    seed_ttft: float | None = None
    seed_tokens_per_s: float | None = None


@dataclass(frozen=True, slots=True)
class ModelSettings:
    name: str
    strategy: Strategy
    deployments: tuple[Deployment, ...]
    default_max_tokens: int = 4096


@dataclass(frozen=True, slots=True)
class RoutingSettings:
    max_attempts: int = 3
    deadline: float = 120.0
    failure_threshold: int = 3
    base_cooldown: float = 5.0
    max_cooldown: float = 60.0
    ewma_alpha: float = 0.2
    min_samples: int = 3
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class StorageSettings:
    """Usage records: batches of up to ``batch_size`` every ``flush_interval`` seconds.

    While the database cannot take them, records wait in memory (up to ``max_queue``, and
    for at most ``journal_after`` seconds), then in an append-only journal in ``journal_dir``
    (another directory, ideally on another disk), replayed into the database once it works
    again and at start-up. If neither can take them, ``on_failure: refuse`` answers new
    requests 503 instead of serving them unrecorded (``serve`` keeps serving). Readiness
    fails while records cannot be written or more than ``high_water`` wait in memory.
    ``journal_before_answer`` journals each record (fsync) before its answer completes."""

    enabled: bool = True
    path: str = "data/nitroproxy.db"
    backend: str = "sqlite"
    """``postgres``: usage records go to ``url`` (keys, accounts and the rest stay in
    ``path`` for now)."""
    url: str = field(default="", repr=False)
    batch_size: int = 500
    flush_interval: float = 0.2
    max_queue: int = 50_000
    high_water: int = 40_000
    busy_timeout: float = 5.0
    journal_dir: str = ""  # "": a ``journal`` directory beside the database
    journal_after: float = 1.0
    on_failure: str = "refuse"
    journal_before_answer: bool = False

    def journal_path(self) -> str:
        return self.journal_dir or str(Path(self.path).parent / "journal")


@dataclass(frozen=True, slots=True)
class FailPolicy:
    """Per limit kind, what admission does while the shared state (Redis) is unreachable:
    ``open`` serves on, each process enforcing the limit alone from its own memory (so N
    processes admit at most N times the limit); ``closed`` refuses with a 503."""

    requests: str = "open"
    tokens: str = "open"
    concurrency: str = "open"
    budget: str = "closed"


@dataclass(frozen=True, slots=True)
class StateSettings:
    """Where limits, budgets, cool-downs and measurements live: ``memory`` (one process) or
    ``redis`` (shared by every process and machine that names the same URL and prefix)."""

    backend: str = "memory"
    url: str = field(default="redis://127.0.0.1:6379/0", repr=False)
    prefix: str = "nitroproxy"
    ca_bundle: str | None = None
    """For ``rediss://``: the CA that signed the server's certificate (default: the
    system's)."""
    timeout: float = 0.1
    """No request waits on Redis longer than this (seconds)."""
    retry_interval: float = 0.5
    """While Redis is down, how often it is probed; requests meanwhile do not wait on it."""
    lease: float = 30.0
    """How long a concurrency slot or a reservation outlives a process that died holding it."""
    resync_interval: float = 5.0
    """Full resync of keys and shared health, so a missed pub/sub message heals."""
    health_interval: float = 0.25
    fail: FailPolicy = FailPolicy()


@dataclass(frozen=True, slots=True)
class RetentionSettings:
    """Seconds each kind of data is kept (``core.retention`` says what each window covers)."""

    requests: float = 90 * 86400.0
    billing: float = 7 * 365 * 86400.0
    interval: float = 3600.0
    batch_size: int = 1000
    analytics: float = 730 * 86400.0
    audit: float = 730 * 86400.0
    closed_accounts: float = 30 * 86400.0


@dataclass(frozen=True, slots=True)
class PrivacySettings:
    client_ip: str = "truncated"
    store_user_agent: bool = True
    end_user: EndUserMode = EndUserMode.PSEUDONYMOUS
    """What a record keeps of the client's end user (OpenAI ``user``, Anthropic
    ``metadata.user_id``): nothing, a keyed pseudonym, or the value as sent."""


@dataclass(frozen=True, slots=True)
class LoggingSettings:
    level: str = "info"
    format: str = "auto"
    access_log: bool = True


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """``port`` set: ``/metrics`` moves to a listener of its own on ``host`` (the server's
    host when unset) and leaves the API port. ``token`` set: a scrape must send
    ``Authorization: Bearer <token>``."""

    enabled: bool = True
    key_labels: bool = False
    port: int | None = None
    host: str | None = None
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class TracingSettings:
    """OpenTelemetry traces, off by default. ``endpoint`` is an OTLP/HTTP traces URL; unset,
    the exporter reads ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (or its own default)."""

    enabled: bool = False
    endpoint: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    service_name: str = "nitroproxy"
    sample_ratio: float = 1.0
    timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class UISettings:
    """The dashboard at ``/ui/``. Sessions live in this process's memory: ``session_ttl``
    bounds a session's whole life, ``session_idle`` the gap between two of its requests."""

    enabled: bool = True
    session_ttl: float = 12 * 3600.0
    session_idle: float = 3600.0


@dataclass(frozen=True, slots=True)
class TokenSettings:
    count: bool = True
    offload_chars: int = 20_000


LimitSettings = KeyLimits
"""Per-key defaults; a tier or a key overrides each field. None means unlimited. The same
dataclass as ``core.limits.KeyLimits``: the limit fields are defined once."""


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """The opt-in response cache: the only place prompt-derived data may be stored."""

    enabled: bool = False
    ttl: float = 3600.0
    max_entries: int = 10_000
    max_bytes: int = 256 * 1024 * 1024
    scope: str = "key"


@dataclass(frozen=True, slots=True)
class StatsSettings:
    """``min_bucket``: fewest requests behind a published number; ``min_users``: fewest
    distinct people (users, or keys without a user) behind a published bucket."""

    enabled: bool = True
    min_bucket: int = 10
    min_users: int = 10


@dataclass(frozen=True, slots=True)
class KeySettings:
    """A key declared in the config file (small deployments, demos); the store holds the rest."""

    name: str
    key: str = field(repr=False)
    user: str | None = None
    tier: str | None = None
    models: tuple[str, ...] = ()
    limits: LimitSettings = field(default_factory=LimitSettings)
    cache: bool = False


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """``admin_key`` is the admin key named "admin"; ``admin_keys`` maps more admins' names
    to their keys (each name is the actor of that admin's audit entries)."""

    required: bool = True
    admin_key: str | None = field(default=None, repr=False)
    admin_keys: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class Settings:
    server: ServerSettings = ServerSettings()
    upstream: UpstreamSettings = UpstreamSettings()
    providers: Mapping[str, ProviderSettings] = field(default_factory=dict)
    models: Mapping[str, ModelSettings] = field(default_factory=dict)
    routing: RoutingSettings = RoutingSettings()
    storage: StorageSettings = StorageSettings()
    retention: RetentionSettings = RetentionSettings()
    privacy: PrivacySettings = PrivacySettings()
    logging: LoggingSettings = LoggingSettings()
    metrics: MetricsSettings = MetricsSettings()
    tokens: TokenSettings = TokenSettings()
    auth: AuthSettings = AuthSettings()
    tiers: Mapping[str, LimitSettings] = field(default_factory=dict)
    keys: tuple[KeySettings, ...] = ()
    cache: CacheSettings = CacheSettings()
    stats: StatsSettings = StatsSettings()
    state: StateSettings = StateSettings()
    end_users: KeyLimits = field(default_factory=KeyLimits)
    """Limits for each end user of each key (requests/min, tokens/min, concurrency and
    budgets), on top of the key's own; unlimited by default."""
    tracing: TracingSettings = TracingSettings()
    ui: UISettings = UISettings()

    def deployment(self, name: str) -> Deployment:
        for model in self.models.values():
            for dep in model.deployments:
                if dep.name == name:
                    return dep
        raise KeyError(name)
