"""The SSE decoder against the WHATWG standard's own examples (HTML §9.2.5–9.2.6), fed
whole and one byte at a time: how the body is cut into network reads must not matter."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from lingyun.protocol.sse import Decoder, Event, events


def decode(body: bytes, *, bytewise: bool) -> list[Event]:
    decoder = Decoder()
    pieces = [body[i : i + 1] for i in range(len(body))] if bytewise else [body]
    out = [event for piece in pieces for event in decoder.feed(piece)]
    return out + decoder.end()


CASES = [
    # Several data lines are one event, joined by LF.
    (b"data: YHOO\ndata: +2\ndata: 10\n\n", [Event(b"YHOO\n+2\n10")]),
    # Comments are skipped; id lines ignored; one space after the colon dropped, not two.
    (
        b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n",
        [Event(b"first event"), Event(b"second event"), Event(b" third event")],
    ),
    # A bare "data" is an empty value; two of them are one LF.
    (b"data\n\ndata\ndata\n\n", [Event(b""), Event(b"\n")]),
    # The same event with and without the space.
    (b"data:test\n\ndata: test\n\n", [Event(b"test"), Event(b"test")]),
    # CRLF and lone CR line ends.
    (b"data: a\r\n\r\ndata: b\r\rdata: c\n\n", [Event(b"a"), Event(b"b"), Event(b"c")]),
    # Event types; the type resets after each event.
    (b"event: error\ndata: {}\n\ndata: x\n\n", [Event(b"{}", b"error"), Event(b"x")]),
    # A blank line with no data dispatches nothing.
    (b"\n\nevent: ping\n\n: keep-alive\n\n", []),
    # An event left open at the end of the body is delivered (upstreams that omit it).
    (b"data: [DONE]", [Event(b"[DONE]")]),
    (b"data: [DONE]\n", [Event(b"[DONE]")]),
]


@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
@pytest.mark.parametrize(("body", "expected"), CASES)
def test_the_standards_examples(body: bytes, expected: list[Event], bytewise: bool) -> None:
    assert decode(body, bytewise=bytewise) == expected


def test_a_crlf_split_between_reads_is_one_line_end() -> None:
    decoder = Decoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\n") == []  # the LF of the CRLF, not a blank line
    assert decoder.feed(b"data: b\r\n\r\n") == [Event(b"a\nb")]


def test_events_come_out_as_a_list_per_read() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"data: 1\n\ndata: 2\n\nda"
        yield b"ta: 3\n"
        yield b"\n"

    async def collect() -> list[list[Event]]:
        return [batch async for batch in events(body())]

    assert asyncio.run(collect()) == [[Event(b"1"), Event(b"2")], [Event(b"3")]]
