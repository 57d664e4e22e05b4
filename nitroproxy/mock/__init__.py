"""Bundled mock LLM provider: an aiohttp app speaking the OpenAI and Anthropic Messages APIs.

Tests, benchmarks and the demo use it as the upstream. Answers are deterministic: the text is
words from a fixed list, each exactly one token in cl100k_base and o200k_base, so reported
``completion_tokens`` equals a tokenizer's count (except under ``echo``, which repeats the
last user message word by word and reports one token per word). Each request is scripted through its
upstream model name, e.g. ``"mock-a+fail500"`` or ``"gpt-x+tokens=50+delay=200"`` (grammar in
``nitroproxy.mock.script``, prompt-token formula in ``nitroproxy.mock.content``), or through
``MockState.enqueue_faults`` for one deployment that fails N times and then recovers.

Streams write each token event on its own only when ``delay`` > 0; with no pause between
tokens they go out in one write (cheap for benchmarks). Use ``delay=`` to test a client's
handling of events that arrive one by one.

Routes: ``POST /v1/chat/completions``, ``POST /v1/completions``, ``POST /v1/embeddings``,
``GET /v1/models``, ``POST /v1/messages``, ``POST /v1/messages/count_tokens``, and the
Responses API: ``POST /v1/responses`` and ``POST /v1/responses/input_tokens``.

Tools: a request that offers tools gets a tool call (see ``nitroproxy.mock.tools``); the
``text`` directive asks for text instead, and ``MockState.script_tool_call`` makes the next
answer call a given tool with given arguments, as a test of a real client's tool needs.

Disconnects: the mock notices a client that goes away mid-answer only if the server runs with
``handler_cancellation=True``. ``run_mock`` sets it. aiohttp's ``TestServer`` (behind the
``aiohttp_server`` and ``aiohttp_client`` fixtures) already forces it on in aiohttp 3.14, so
call ``aiohttp_server(create_mock_app())`` with no extra argument: passing
``handler_cancellation=True`` there again raises a TypeError (duplicate keyword). With a
hand-made ``web.AppRunner``, pass ``handler_cancellation=True`` yourself.

Example::

    server = await aiohttp_server(create_mock_app(MockSettings(tokens=5)))
    mock = server.app[MOCK_STATE]
    mock.enqueue_faults("mock-a", ["fail500", "fail500"])  # two 500s, then normal answers
"""

from nitroproxy.mock.app import create_mock_app, run_mock
from nitroproxy.mock.content import WORDS
from nitroproxy.mock.settings import MockSettings
from nitroproxy.mock.state import (
    MOCK_STATE,
    MockState,
    Outcome,
    ReceivedRequest,
    StreamLog,
)

__all__ = [
    "MOCK_STATE",
    "WORDS",
    "MockSettings",
    "MockState",
    "Outcome",
    "ReceivedRequest",
    "StreamLog",
    "create_mock_app",
    "run_mock",
]
