"""Which tool a mock answer calls, and with what arguments (pure, apart from the queue).

The rule, in order, for a request that offers tools:

1. a call scripted with ``MockState.script_tool_call`` for this model whose tool is offered
   is made once, with the scripted arguments (how a test drives a real client's tool, such
   as Claude Code's ``Read`` with a file of the test's choosing);
2. under the ``text`` directive the answer is text, as a model that chose not to call is;
3. otherwise the tool that ``tool_choice`` names, or the first offered, is called with
   ``{"query": "mock value"}`` (under ``echo``: the last user text as the query).

A request that offers no tools, or whose ``tool_choice`` says none, gets text.
"""

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nitroproxy.mock.content import MOCK_TOOL_CALL, ToolCall, echo_tool_call
from nitroproxy.mock.exchange import Call

# A run of spaces with what follows, or the first piece: streamed arguments are split before
# each space, so they arrive in several fragments as real providers send them.
_PIECE = re.compile(r" +[^ ]*|[^ ]+")


@dataclass(frozen=True)
class PlannedCall:
    name: str
    call: ToolCall


def scripted_call(arguments: Mapping[str, Any]) -> ToolCall:
    """A tool call with the given arguments; one completion token per streamed fragment."""
    encoded = json.dumps(dict(arguments), ensure_ascii=False)
    return ToolCall(dict(arguments), encoded, tuple(_PIECE.findall(encoded)))


def plan_tool_call(
    call: Call, offered: Sequence[str], forced: str | None, echo: str | None
) -> PlannedCall | None:
    """The call this answer makes, or None for a text answer (the module's rule)."""
    if not offered:
        return None
    scripted = call.state.take_tool_call(call.model, offered)
    if scripted is not None:
        name, arguments = scripted
        return PlannedCall(name, scripted_call(arguments))
    if "text" in call.script.flags:
        return None
    name = forced if forced is not None else offered[0]
    return PlannedCall(name, MOCK_TOOL_CALL if echo is None else echo_tool_call(echo))
