"""Token counting the proxy answers itself (``CountedExchange``).

``POST /v1/messages/count_tokens`` and ``/v1/responses/input_tokens`` are forwarded to an
upstream that counts (Anthropic's count_tokens; OpenAI's input_tokens) when the model routes
to one. Otherwise, or when that upstream fails, the proxy counts with tiktoken: exact for
OpenAI's models' text, an estimate for everything else (Claude's tokenizer is not public;
see ``core.tokens``). Either way nothing is generated and nothing is billed: the record
says ``usage_source: none`` and costs 0, and the answer says which it was in
``x-nitroproxy-token-count`` (``provider`` or ``estimate``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson

from nitroproxy.core import usage_wire
from nitroproxy.proxy.call import Call
from nitroproxy.proxy.exchange import Exchange

COUNT_HEADER = "x-nitroproxy-token-count"


class CountedExchange(Exchange):
    """The proxy's own count: nothing upstream, nothing billed."""

    __slots__ = ("_body",)

    def __init__(self, call: Call, headers: dict[str, str], tokens: int) -> None:
        super().__init__(call, headers)
        call.meter.completed = True
        headers[COUNT_HEADER] = "estimate"
        self._body = orjson.dumps(usage_wire.count_answer(call.endpoint, tokens))

    @property
    def body(self) -> bytes:
        return self._body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        # Counting never streams (decode_call says so); iterating gives the one body.
        yield self._body
