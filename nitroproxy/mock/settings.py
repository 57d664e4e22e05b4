"""Server-wide defaults of the mock provider."""

from dataclasses import dataclass


@dataclass(frozen=True)
class MockSettings:
    """Defaults that every request starts from; the model name can override most per request."""

    tokens: int = 12
    """Completion tokens per response."""
    delay_ms: float = 0.0
    """Pause before each streamed token after the first."""
    first_token_delay_ms: float = 0.0
    """Pause before the first token (streamed) or before the answer (non-stream)."""
    slow_first_token_ms: float = 1500.0
    """First-token pause of the ``slowfirst`` fault."""
    api_key: str | None = None
    """When set, require ``Authorization: Bearer <key>`` (OpenAI routes) or ``x-api-key``."""
    record: bool = True
    """Keep ``ReceivedRequest`` and ``StreamLog`` records; benchmarks turn it off."""
