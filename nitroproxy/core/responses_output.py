"""A Response built the way the Responses API streams one, sans I/O.

``ResponsesBuilder`` is fed what an upstream produced, piece by piece (text, refusal,
reasoning, tool calls, the end), and returns at each step the events a streaming client is
owed, with their ``sequence_number``s, in the API's order::

    response.created, response.in_progress
    per output item: response.output_item.added
        message:   content_part.added, output_text.delta..., output_text.done,
                   content_part.done (refusal parts: refusal.delta / refusal.done)
        reasoning: reasoning_summary_part.added, reasoning_summary_text.delta...,
                   reasoning_summary_text.done, reasoning_summary_part.done
        function_call: function_call_arguments.delta..., function_call_arguments.done
        custom_tool_call: custom_tool_call_input.delta, custom_tool_call_input.done
    response.output_item.done
    response.completed | response.incomplete | response.failed

A non-streamed answer is built the same way and read with ``response()``, so the two can
never disagree. One item is open at a time: opening another closes it, as the API does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from nitroproxy.core.responses_tools import ToolNames
from nitroproxy.core.responses_wire import failure_error, response_object
from nitroproxy.core.types import Usage

Event = tuple[str, dict[str, Any]]


class ResponsesBuilder:
    __slots__ = (
        "_created_at",
        "_error",
        "_finished",
        "_id",
        "_incomplete",
        "_model",
        "_names",
        "_open",
        "_output",
        "_part",
        "_pieces",
        "_request",
        "_seq",
        "_started",
        "_status",
        "_stem",
        "usage",
    )

    def __init__(
        self,
        request: Mapping[str, Any],
        *,
        stem: str,
        created_at: int,
        model: str,
        names: ToolNames,
        usage: Usage | None = None,
    ) -> None:
        self._request = request
        self._stem = stem
        self._id = f"resp_{stem}"
        self._created_at = created_at
        self._model = model
        self._names = names
        self.usage = usage if usage is not None else Usage()
        self._seq = 0
        self._started = False
        self._finished = False
        self._status = "in_progress"
        self._incomplete: str | None = None
        self._error: dict[str, Any] | None = None
        self._output: list[dict[str, Any]] = []
        self._open: dict[str, Any] | None = None  # the item being built (also in _output)
        self._part: dict[str, Any] | None = None  # its open content or summary part
        self._pieces: list[str] = []  # text of the open part, or arguments of the open call

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def output_index(self) -> int:
        return len(self._output) - 1

    # -- what the upstream produced ------------------------------------------------------

    def start(self) -> list[Event]:
        if self._started:
            return []
        self._started = True
        snapshot = self.response()
        return [
            self._event("response.created", response=snapshot),
            self._event("response.in_progress", response=snapshot),
        ]

    def text(self, delta: str) -> list[Event]:
        return self._message_delta("output_text", delta)

    def refusal(self, delta: str) -> list[Event]:
        return self._message_delta("refusal", delta)

    def open_reasoning(self) -> list[Event]:
        """A reasoning item starts (its text may never come: thinking can be hidden)."""
        events = self.close()
        item = {"id": f"rs_{self._stem}_{len(self._output)}", "type": "reasoning", "summary": []}
        return events + self._add(item)

    def reasoning(self, delta: str) -> list[Event]:
        events = [] if self._kind() == "reasoning" else self.open_reasoning()
        assert self._open is not None
        if self._part is None:
            self._part = {"type": "summary_text", "text": ""}
            events.append(
                self._event(
                    "response.reasoning_summary_part.added",
                    **self._where(),
                    summary_index=0,
                    part=dict(self._part),
                )
            )
        if delta:
            self._pieces.append(delta)
            events.append(
                self._event(
                    "response.reasoning_summary_text.delta",
                    **self._where(),
                    summary_index=0,
                    delta=delta,
                )
            )
        return events

    def seal_reasoning(self, sealed: str) -> list[Event]:
        """The open reasoning item's ``encrypted_content`` (what lets it be sent back)."""
        events = [] if self._kind() == "reasoning" else self.open_reasoning()
        assert self._open is not None
        self._open["encrypted_content"] = (self._open.get("encrypted_content") or "") + sealed
        return events

    def tool_call(self, call_id: str | None, upstream_name: str) -> list[Event]:
        events = self.close()
        tool = self._names.client(upstream_name)
        index = len(self._output)
        call_id = call_id or f"call_{self._stem}_{index}"
        item: dict[str, Any]
        if tool.custom:
            item = {"id": f"ctc_{self._stem}_{index}", "type": "custom_tool_call", "input": ""}
        else:
            item = {"id": f"fc_{self._stem}_{index}", "type": "function_call", "arguments": ""}
        item.update(status="in_progress", call_id=call_id, name=tool.name)
        if tool.namespace is not None:
            item["namespace"] = tool.namespace
        return events + self._add(item)

    def arguments(self, delta: str) -> list[Event]:
        if self._kind() not in ("function_call", "custom_tool_call") or not delta:
            return []
        self._pieces.append(delta)
        if self._kind() == "custom_tool_call":
            return []  # the input is the arguments' "input": known only once they are whole
        return [self._event("response.function_call_arguments.delta", **self._where(), delta=delta)]

    def close(self) -> list[Event]:
        """Finish the open item, if any."""
        item, kind = self._open, self._kind()
        if item is None:
            return []
        events = self._close_part()
        if kind == "function_call":
            item["arguments"] = "".join(self._pieces)
            events.append(
                self._event(
                    "response.function_call_arguments.done",
                    **self._where(),
                    name=item["name"],
                    arguments=item["arguments"],
                )
            )
        elif kind == "custom_tool_call":
            item["input"] = _custom_input("".join(self._pieces))
            where = self._where()
            if item["input"]:
                events.append(
                    self._event(
                        "response.custom_tool_call_input.delta", **where, delta=item["input"]
                    )
                )
            events.append(
                self._event("response.custom_tool_call_input.done", **where, input=item["input"])
            )
        if kind != "reasoning":
            item["status"] = "completed"
        events.append(
            self._event(
                "response.output_item.done", output_index=self.output_index, item=_copy(item)
            )
        )
        self._open, self._pieces = None, []
        return events

    def finish(self, *, incomplete: str | None = None, usage: Usage | None = None) -> list[Event]:
        """The end: ``incomplete`` is the reason when the output was cut short
        ("max_output_tokens", "content_filter")."""
        if self._finished:
            return []
        events = self.start() + self.close()
        self._finished = True
        if usage is not None:
            self.usage = usage
        self._status = "incomplete" if incomplete else "completed"
        self._incomplete = incomplete
        return [*events, self._event(f"response.{self._status}", response=self.response())]

    def fail(self, status: int, message: str) -> list[Event]:
        """The stream broke after it started (``status`` is what the failure would have
        been before it): ``response.failed`` is its last event."""
        if self._finished:
            return []
        events = self.start()
        self._finished = True
        self._status = "failed"
        self._error = failure_error(status, message)
        return [*events, self._event("response.failed", response=self.response())]

    def response(self) -> dict[str, Any]:
        """The Response as it stands: in progress (no usage yet) until ``finish``/``fail``."""
        return response_object(
            self._request,
            response_id=self._id,
            created_at=self._created_at,
            model=self._model,
            status=self._status,
            output=[_copy(item) for item in self._output],
            usage=self.usage if self._finished else None,
            incomplete_reason=self._incomplete,
            error=self._error,
        )

    # -- plumbing -------------------------------------------------------------------------

    def _kind(self) -> str | None:
        return None if self._open is None else str(self._open["type"])

    def _where(self) -> dict[str, Any]:
        assert self._open is not None
        return {"item_id": self._open["id"], "output_index": self.output_index}

    def _event(self, kind: str, **fields: Any) -> Event:
        data = {"type": kind, **fields, "sequence_number": self._seq}
        self._seq += 1
        return kind, data

    def _add(self, item: dict[str, Any]) -> list[Event]:
        events = self.start()
        self._output.append(item)
        self._open, self._part, self._pieces = item, None, []
        events.append(
            self._event(
                "response.output_item.added", output_index=self.output_index, item=_copy(item)
            )
        )
        return events

    def _message_delta(self, part_type: str, delta: str) -> list[Event]:
        events: list[Event] = []
        if self._kind() != "message":
            events = self.close()
            item = {
                "id": f"msg_{self._stem}_{len(self._output)}",
                "type": "message",
                "status": "in_progress",
                "role": "assistant",
                "content": [],
            }
            events += self._add(item)
        assert self._open is not None
        if self._part is None or self._part["type"] != part_type:
            events += self._close_part()
            field = "text" if part_type == "output_text" else "refusal"
            self._part = {"type": part_type, field: ""}
            if part_type == "output_text":
                self._part.update(annotations=[], logprobs=[])
            events.append(
                self._event(
                    "response.content_part.added",
                    **self._where(),
                    content_index=len(self._open["content"]),
                    part=dict(self._part),
                )
            )
        if delta:
            self._pieces.append(delta)
            name = "output_text" if part_type == "output_text" else "refusal"
            extra: dict[str, Any] = {"logprobs": []} if part_type == "output_text" else {}
            events.append(
                self._event(
                    f"response.{name}.delta",
                    **self._where(),
                    content_index=len(self._open["content"]),
                    delta=delta,
                    **extra,
                )
            )
        return events

    def _close_part(self) -> list[Event]:
        """Finish the open content part (a message) or summary part (reasoning)."""
        part, item = self._part, self._open
        if part is None or item is None:
            return []
        self._part = None
        text = "".join(self._pieces)
        self._pieces = []
        where = self._where()
        if part["type"] == "summary_text":
            part["text"] = text
            item["summary"].append(part)
            done = {**where, "summary_index": len(item["summary"]) - 1}
            return [
                self._event("response.reasoning_summary_text.done", **done, text=text),
                self._event("response.reasoning_summary_part.done", **done, part=dict(part)),
            ]
        index = len(item["content"])
        item["content"].append(part)
        if part["type"] == "refusal":
            part["refusal"] = text
            done_event = self._event(
                "response.refusal.done", **where, content_index=index, refusal=text
            )
        else:
            part["text"] = text
            done_event = self._event(
                "response.output_text.done", **where, content_index=index, text=text, logprobs=[]
            )
        return [
            done_event,
            self._event(
                "response.content_part.done", **where, content_index=index, part=dict(part)
            ),
        ]


def _custom_input(arguments: str) -> str:
    """A custom tool's text from the ``{"input": text}`` the upstream filled in; anything
    else it wrote is handed over as it is."""
    try:
        decoded = json.loads(arguments)
    except ValueError:
        return arguments
    if isinstance(decoded, dict) and isinstance(decoded.get("input"), str):
        return str(decoded["input"])
    return arguments


def _copy(item: Mapping[str, Any]) -> dict[str, Any]:
    copied = dict(item)
    for key in ("content", "summary"):
        if isinstance(copied.get(key), list):
            copied[key] = [dict(part) for part in copied[key]]
    return copied
