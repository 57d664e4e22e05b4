"""Canonical value types shared by the pure core, the store and the gateway."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ApiFormat(StrEnum):
    """The wire format a client speaks or an upstream expects."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"


class Endpoint(StrEnum):
    CHAT = "chat.completions"
    COMPLETIONS = "completions"
    EMBEDDINGS = "embeddings"
    MESSAGES = "messages"
    RESPONSES = "responses"
    COUNT_TOKENS = "messages.count_tokens"
    """Anthropic's POST /v1/messages/count_tokens."""
    INPUT_TOKENS = "responses.input_tokens"
    """OpenAI's POST /v1/responses/input_tokens."""

    @property
    def counts_tokens(self) -> bool:
        """Token counting: answered without generating anything, and never billed."""
        return self in (Endpoint.COUNT_TOKENS, Endpoint.INPUT_TOKENS)


class UsageSource(StrEnum):
    PROVIDER = "provider"
    ESTIMATED = "estimated"
    NONE = "none"


class Outcome(StrEnum):
    """How a request ended; one per usage record."""

    OK = "ok"
    UPSTREAM_ERROR = "upstream_error"
    TIMEOUT = "timeout"
    CLIENT_ERROR = "client_error"
    RATE_LIMITED = "rate_limited"
    CLIENT_DISCONNECTED = "client_disconnected"
    STREAM_ERROR = "stream_error"
    CACHE_HIT = "cache_hit"
    SERVER_SHUTDOWN = "server_shutdown"  # still running when the shutdown grace ended


@dataclass(slots=True)
class Usage:
    """Token counts for one request, in OpenAI's convention: ``prompt_tokens`` include the
    prompt tokens read from a cache (``cached_tokens``) and written to one
    (``cache_write_tokens``, of which ``cache_write_1h_tokens`` went to Anthropic's 1-hour
    cache and the rest to its 5-minute one); ``completion_tokens`` include
    ``reasoning_tokens``. Anthropic's usage, which reports cache reads and writes outside
    ``input_tokens``, is normalised to this on the way in."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_1h_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens."""

    input: float = 0.0
    output: float = 0.0
    cached_input: float | None = None
    cache_write: float | None = None
    """Prompt tokens written to a cache (Anthropic: its 5-minute cache, 1.25x input)."""
    cache_write_1h: float | None = None
    """Prompt tokens written to Anthropic's 1-hour cache (2x input); unset: ``cache_write``."""


@dataclass(slots=True)
class UsageRecord:
    """One request's metadata. No field can hold prompt, completion or credential text:
    everything here is an id, a name from config, a number or an enum value.

    Not frozen only because a frozen dataclass sets each of its 28 fields through
    ``object.__setattr__``, which made building one per request cost ~5 us; treat it as
    immutable."""

    id: str
    request_id: str
    ts: float
    key_id: str | None
    user_id: str | None
    model: str
    provider: str | None
    deployment: str | None
    upstream_model: str | None
    endpoint: str
    stream: bool
    status: int
    outcome: str
    error_class: str | None
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    usage_source: str
    cost_nanos: int
    latency_ms: float
    ttft_ms: float | None
    output_tps: float | None
    attempts: int
    client_ip: str | None
    user_agent: str | None
    cache_hit: bool = False
    end_user: str | None = None
    """The client's end user (OpenAI ``user``, Anthropic ``metadata.user_id``) as
    ``privacy.end_user`` says: a keyed pseudonym by default, never free text otherwise."""
    cache_write_1h_tokens: int = 0

    @property
    def cost_usd(self) -> float:
        return self.cost_nanos / 1e9
