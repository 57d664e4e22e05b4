"""``Call``: one client request, decoded: its frozen facts plus its one mutable meter.

``web`` builds a call from an HTTP request (``web.calls.decode_call``); everything after that,
from admission to settlement, belongs to ``proxy``. Nothing in a call is read from headers or
settings again later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nitroproxy.config import ModelSettings
from nitroproxy.core import selection
from nitroproxy.core.accounting import Meter
from nitroproxy.core.principal import Principal
from nitroproxy.core.tokens import PromptSize
from nitroproxy.core.types import ApiFormat, Endpoint

_NO_PROMPT = PromptSize(guess=0, ceiling=0)


@dataclass(frozen=True, slots=True)
class Call:
    """``body`` is the client's JSON in its own format; ``meter`` is the only part that
    changes, and only ``proxy`` writes it."""

    request_id: str
    endpoint: Endpoint
    client_format: ApiFormat
    body: dict[str, Any]
    model: ModelSettings
    strategy: selection.Strategy
    prefs: selection.ProviderPrefs
    stream: bool
    principal: Principal
    meter: Meter
    wants_usage: bool = False
    cache_header: str | None = None
    """The client's ``x-nitroproxy-cache`` header, as sent."""
    prompt: PromptSize = _NO_PROMPT
    """The prompt's size from the request bytes: what admission reserves, with no
    tokenizer on the hot path."""
    end_user: str | None = None
    """The end user the client names (OpenAI ``user``, Anthropic ``metadata.user_id``), as
    sent; what a record keeps of it is ``privacy.end_user``'s to say."""
    client_ip: str | None = None
    user_agent: str | None = None
    path: str = ""
    method: str = "POST"
    client_headers: dict[str, str] = field(default_factory=dict)
    """The client's headers that some provider may forward (``anthropic-beta``,
    ``anthropic-version``; lower-case names); each adapter takes what its settings allow."""

    @property
    def default_max_tokens(self) -> int:
        return self.model.default_max_tokens

    @property
    def max_output_tokens(self) -> int:
        """What the call may generate at most: its own limit, else the model's default
        (which is also what it reserves against budgets and tokens/min)."""
        for name in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
            value = self.body.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
        return self.model.default_max_tokens
