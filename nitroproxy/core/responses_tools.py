"""The tools of a Responses request, as an upstream without the Responses API sees them.

Responses has three kinds of client-run tools: ``function`` (a JSON schema), ``custom`` (free
text, as Codex's ``apply_patch`` is) and ``namespace`` (a named group of either, as Codex's
``multi_agent_v1`` is). Chat completions and Anthropic Messages know only the first, so a
custom tool becomes a function taking ``{"input": <text>}``, and a namespaced tool a
function named ``<namespace>__<name>``. ``ToolNames`` remembers which is which, so that a call
the upstream makes is handed back to the client as the kind of call it declared. Hosted
tools (``web_search``, ``file_search``, ``computer_use_preview``, ``mcp``, ...) run on
OpenAI's side and have no equivalent: they are refused, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from nitroproxy.core.errors import InvalidRequest

SEPARATOR = "__"
CUSTOM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"input": {"type": "string"}},
    "required": ["input"],
}
_EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}


@dataclass(frozen=True, slots=True)
class ClientTool:
    """A tool as the client declared it."""

    name: str
    namespace: str | None = None
    custom: bool = False


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """One tool as the upstream gets it: a function with a JSON schema."""

    upstream_name: str
    description: str | None
    parameters: Mapping[str, Any]
    strict: bool | None


class ToolNames:
    """Upstream function names to the client's tools, and back."""

    __slots__ = ("_by_client", "_by_upstream")

    def __init__(self, tools: list[ClientTool]) -> None:
        self._by_upstream = {_flat(t.namespace, t.name): t for t in tools}
        self._by_client = {(t.namespace, t.name): _flat(t.namespace, t.name) for t in tools}

    def upstream(self, name: str, namespace: str | None = None) -> str:
        return self._by_client.get((namespace, name), _flat(namespace, name))

    def client(self, upstream_name: str) -> ClientTool:
        """The declared tool; a name the client never declared is taken as a plain function."""
        return self._by_upstream.get(upstream_name) or ClientTool(upstream_name)


def _flat(namespace: str | None, name: str) -> str:
    return name if namespace is None else f"{namespace}{SEPARATOR}{name}"


def _declared(tools: Any) -> Iterator[tuple[str, Mapping[str, Any], str | None]]:
    """(param, tool, namespace) for each client-run tool; hosted tools raise."""
    for i, tool in enumerate(tools if isinstance(tools, list) else []):
        param = f"tools[{i}]"
        kind = tool.get("type") if isinstance(tool, Mapping) else None
        if kind in ("function", "custom"):
            yield param, tool, None
        elif kind == "namespace" and isinstance(tool.get("name"), str):
            inner = tool.get("tools")
            for j, member in enumerate(inner if isinstance(inner, list) else []):
                where = f"{param}.tools[{j}]"
                if not isinstance(member, Mapping) or member.get("type") not in (
                    "function",
                    "custom",
                ):
                    raise InvalidRequest(
                        f"{where}: only function and custom tools can be translated", param=where
                    )
                yield where, member, tool["name"]
        else:
            raise InvalidRequest(
                f"{param}: {kind!r} tools run on OpenAI's side and are not supported by this "
                "model; only function, custom and namespace tools can be translated",
                param=param,
            )


def tool_names(body: Mapping[str, Any]) -> ToolNames:
    """The naming of ``body``'s tools; lenient (``tool_specs`` is where bad tools raise), so a
    response can always be named back."""
    found: list[ClientTool] = []
    try:
        for _, tool, namespace in _declared(body.get("tools")):
            if isinstance(tool.get("name"), str):
                found.append(ClientTool(tool["name"], namespace, tool.get("type") == "custom"))
    except InvalidRequest:
        found = []
    return ToolNames(found)


def tool_specs(body: Mapping[str, Any]) -> list[ToolSpec]:
    """Every client-run tool of ``body`` as a function; InvalidRequest for the rest."""
    specs = []
    for param, tool, namespace in _declared(body.get("tools")):
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequest(f"{param}.name: a tool name is required", param=f"{param}.name")
        custom = tool.get("type") == "custom"
        parameters = CUSTOM_SCHEMA if custom else tool.get("parameters") or _EMPTY_SCHEMA
        if not isinstance(parameters, Mapping):
            raise InvalidRequest(
                f"{param}.parameters: must be a JSON schema object", param=f"{param}.parameters"
            )
        description = tool.get("description")
        strict = tool.get("strict")
        specs.append(
            ToolSpec(
                _flat(namespace, name),
                description if isinstance(description, str) and description else None,
                parameters,
                strict if isinstance(strict, bool) and not custom else None,
            )
        )
    return specs


def chosen_tool(choice: Any, names: ToolNames) -> str | None:
    """The upstream name of the one tool ``tool_choice`` forces, or None for the string
    choices ("auto", "none", "required"); InvalidRequest for a choice with no equivalent."""
    if isinstance(choice, str) and choice in ("auto", "none", "required"):
        return None
    if isinstance(choice, Mapping) and choice.get("type") in ("function", "custom"):
        name = choice.get("name")
        if not isinstance(name, str):
            raise InvalidRequest("a tool name is required", param="tool_choice.name")
        namespace = choice.get("namespace")
        return names.upstream(name, namespace if isinstance(namespace, str) else None)
    raise InvalidRequest("tool_choice: this choice cannot be translated", param="tool_choice")


def upstream_call_name(item: Mapping[str, Any], names: ToolNames, param: str) -> str:
    """The upstream function name of a ``function_call`` or ``custom_tool_call`` input item."""
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequest(f"{param}.name: required", param=f"{param}.name")
    namespace = item.get("namespace")
    return names.upstream(name, namespace if isinstance(namespace, str) else None)
