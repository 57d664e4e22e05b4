"""The mock's Responses API, its count-tokens routes, the ``text`` directive and scripted tool
calls, driven by the official SDKs over loopback."""

from typing import Any

import anthropic
import openai
import pytest
from openai.types.responses import ResponseFunctionToolCall

from nitroproxy.mock import MOCK_STATE, WORDS, MockSettings, MockState, create_mock_app
from nitroproxy.web.server import start

FIVE = "".join(WORDS[:5])
FUNCTION = {"type": "function", "name": "exec_command", "parameters": {"type": "object"}}
READ = {"name": "Read", "input_schema": {"type": "object"}}
AGENT = {"name": "Agent", "input_schema": {"type": "object"}}


@pytest.fixture
async def mock() -> Any:
    app = create_mock_app(MockSettings(tokens=5))
    runner, port = await start(app, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{port}", app[MOCK_STATE]
    await runner.cleanup()


def gpt(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=url + "/v1", api_key="k", max_retries=0)


def claude(url: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=url, api_key="k", max_retries=0)


async def test_responses_text_and_usage_by_the_formula(mock: Any) -> None:
    url, _ = mock
    async with gpt(url) as client:
        response = await client.responses.create(
            model="m+cached=2+reasoning=3", input="say something nice", instructions="Be kind."
        )
    assert response.output_text == FIVE and response.status == "completed"
    assert [item.type for item in response.output] == ["reasoning", "message"]
    # 3 + (3 + 3 words) + instructions (3 + 2 words) = 14
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (14, 8)
    assert response.usage.input_tokens_details.cached_tokens == 2
    assert response.usage.output_tokens_details.reasoning_tokens == 3


async def test_responses_stream_is_in_the_api_order_and_ends_with_usage(mock: Any) -> None:
    url, _ = mock
    async with gpt(url) as client:
        # The SDK's stream helper finishes only on response.completed, so the raw stream.
        stream = await client.responses.create(
            model="m", input="hi", max_output_tokens=3, stream=True
        )
        events = [event async for event in stream]
    kinds = [event.type for event in events]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert events[-1].type == "response.incomplete"
    final = events[-1].response
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 3,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.incomplete",
    ]
    assert final.output_text == "".join(WORDS[:3])
    assert final.incomplete_details is not None
    assert final.incomplete_details.reason == "max_output_tokens"
    assert final.usage is not None and final.usage.output_tokens == 3


async def test_responses_tool_call_streamed_and_not(mock: Any) -> None:
    url, _ = mock
    async with gpt(url) as client:
        whole = await client.responses.create(model="m", input="run", tools=[FUNCTION])
        async with client.responses.stream(model="m", input="run", tools=[FUNCTION]) as stream:
            kinds = [event.type async for event in stream]
            streamed = await stream.get_final_response()
    for response in (whole, streamed):
        (call,) = response.output
        assert isinstance(call, ResponseFunctionToolCall)
        assert (call.name, call.arguments) == ("exec_command", '{"query": "mock value"}')
    assert kinds.count("response.function_call_arguments.delta") == 6
    assert "response.function_call_arguments.done" in kinds


async def test_text_directive_answers_in_text_despite_tools(mock: Any) -> None:
    url, _ = mock
    async with gpt(url) as client:
        response = await client.responses.create(model="m+text", input="hi", tools=[FUNCTION])
    assert response.output_text == FIVE
    async with claude(url) as client:
        message = await client.messages.create(
            model="m+text",
            max_tokens=10,
            messages=[{"role": "user", "content": "hi"}],
            tools=[AGENT],
        )
    assert message.content[0].type == "text" and message.stop_reason == "end_turn"


async def test_a_scripted_call_is_made_once_then_the_model_name_rules(mock: Any) -> None:
    url, state = mock
    state.script_tool_call("mock-claude", "Read", {"file_path": "/tmp/x/note.txt"})
    async with claude(url) as client:
        first = await client.messages.create(
            model="mock-claude+text",
            max_tokens=100,
            messages=[{"role": "user", "content": "read it"}],
            tools=[AGENT, READ],
        )
        async with client.messages.stream(
            model="mock-claude+text",
            max_tokens=100,
            messages=[{"role": "user", "content": "again"}],
            tools=[AGENT, READ],
        ) as stream:
            second = await stream.get_final_message()
    (tool_use,) = first.content
    assert tool_use.type == "tool_use" and tool_use.name == "Read"
    assert tool_use.input == {"file_path": "/tmp/x/note.txt"}
    assert first.stop_reason == "tool_use" and first.usage.output_tokens == 2
    assert second.content[0].type == "text" and second.content[0].text == FIVE


async def test_a_scripted_call_waits_for_a_request_that_offers_its_tool(mock: Any) -> None:
    url, state = mock
    state.script_tool_call("m", "exec_command", {"cmd": "cat a.txt"})
    async with gpt(url) as client:
        plain = await client.chat.completions.create(
            model="m+text", messages=[{"role": "user", "content": "hi"}]
        )
        called = await client.chat.completions.create(
            model="m+text",
            messages=[{"role": "user", "content": "hi"}],
            tools=[{"type": "function", "function": {"name": "exec_command"}}],
        )
        via_responses = await client.responses.create(model="m+text", input="hi", tools=[FUNCTION])
    assert plain.choices[0].message.content == FIVE
    (call,) = called.choices[0].message.tool_calls or []
    assert call.type == "function" and call.function.arguments == '{"cmd": "cat a.txt"}'
    assert via_responses.output_text == FIVE  # the script was used up


async def test_count_routes_answer_the_prompt_formula(mock: Any) -> None:
    url, state = mock
    async with gpt(url) as client:
        counted = await client.responses.input_tokens.count(model="m", input="say something nice")
    async with claude(url) as client:
        messages = await client.messages.count_tokens(
            model="m",
            system="Be kind.",
            messages=[{"role": "user", "content": "say something nice"}],
        )
    assert counted.input_tokens == 9 and messages.input_tokens == 14
    assert [r.path for r in state.requests] == [
        "/v1/responses/input_tokens",
        "/v1/messages/count_tokens",
    ]


async def test_responses_faults_and_echo(mock: Any) -> None:
    url, state = mock
    async with gpt(url) as client:
        with pytest.raises(openai.InternalServerError):
            await client.responses.create(model="m+fail500", input="hi")
        echoed = await client.responses.create(
            model="m+echo",
            input=[{"role": "user", "content": [{"type": "input_text", "text": "canary words"}]}],
        )
    assert echoed.output_text == " canary words"
    state_check: MockState = state
    assert state_check.total_requests == 2
