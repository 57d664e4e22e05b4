import pytest

from nitroproxy.core import sse

OPENAI_STREAM = (
    b'data: {"id":"1","choices":[{"delta":{"role":"assistant"}}]}\n\n'
    b'data: {"id":"1","choices":[{"delta":{"content":" caf\xc3\xa9"}}]}\n\n'
    b": keep-alive\n\n"
    b'data: {"id":"1","choices":[],"usage":{"prompt_tokens":3}}\n\n'
    b"data: [DONE]\n\n"
)
ANTHROPIC_STREAM = (
    b'event: message_start\ndata: {"type":"message_start"}\n\n'
    b"event: ping\ndata: {}\n\n"
    b'event: content_block_delta\ndata: {"type":"content_block_delta"}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)


def decode_all(chunks: list[bytes]) -> list[sse.Event]:
    dec = sse.SSEDecoder()
    out: list[sse.Event] = []
    for chunk in chunks:
        out.extend(dec.feed(chunk))
    out.extend(dec.flush())
    return out


def summary(events: list[sse.Event]) -> list[tuple[str | None, bytes | None]]:
    return [(e.event, e.data) for e in events]


@pytest.mark.parametrize("stream", [OPENAI_STREAM, ANTHROPIC_STREAM])
def test_split_at_every_offset_gives_the_same_events(stream: bytes) -> None:
    whole = decode_all([stream])
    for cut in range(1, len(stream)):
        assert summary(decode_all([stream[:cut], stream[cut:]])) == summary(whole)
    assert summary(decode_all([bytes([b]) for b in stream])) == summary(whole)


@pytest.mark.parametrize("ending", [b"\r\n", b"\r"])
def test_crlf_and_cr_line_ends_split_anywhere(ending: bytes) -> None:
    stream = ANTHROPIC_STREAM.replace(b"\n", ending)
    expected = summary(decode_all([ANTHROPIC_STREAM]))
    for cut in range(1, len(stream)):
        assert summary(decode_all([stream[:cut], stream[cut:]])) == expected


def test_raw_bytes_of_pass_through_events_are_exact() -> None:
    events = decode_all([OPENAI_STREAM])
    assert b"".join(e.raw for e in events) == OPENAI_STREAM


def test_fields() -> None:
    events = decode_all([OPENAI_STREAM + ANTHROPIC_STREAM])
    assert events[1].data == '{"id":"1","choices":[{"delta":{"content":" café"}}]}'.encode()
    assert events[2].data is None  # comment only
    assert events[4].data == b"[DONE]"
    assert events[5].event == "message_start"
    assert events[6] == sse.Event(b"event: ping\ndata: {}\n\n", "ping", b"{}")


def test_multiline_data_no_space_and_unknown_fields() -> None:
    (event,) = decode_all([b"id: 7\nretry: 10\ndata:a\ndata: b\nfoo: bar\n\n"])
    assert event.data == b"a\nb"
    assert event.event is None


def test_tail_without_blank_line_is_flushed_at_end() -> None:
    dec = sse.SSEDecoder()
    assert dec.feed(b'data: {"x":1}\n') == []
    assert dec.pending > 0
    assert [e.data for e in dec.flush()] == [b'{"x":1}']
    assert dec.flush() == []


def test_encode_round_trip() -> None:
    blob = sse.encode(b'{"a":1}', "message_delta") + sse.encode(b"[DONE]") + sse.comment()
    events = decode_all([blob])
    assert summary(events) == [
        ("message_delta", b'{"a":1}'),
        (None, b"[DONE]"),
        (None, None),
    ]
    assert sse.encode(b"[DONE]") == sse.DONE
