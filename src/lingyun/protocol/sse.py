"""Server-sent events read as the WHATWG HTML standard defines them (§9.2.6).

The relay reads every streamed answer through this, so it follows the spec where upstreams
differ: lines end in LF, CRLF or CR (a CRLF split across two network reads is one line end);
an event is the lines up to a blank line; its ``data:`` lines join with LF; ``event:`` names
its type; one space after the colon is dropped; comments (``:``) and ``id:``/``retry:`` are
skipped. One deviation, for upstreams that omit the final blank line: an event left open at
the end of the body is still delivered. Events come out as a list per network read, so a
caller can write what arrived together in one send.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Event:
    data: bytes
    type: bytes = b"message"


class Decoder:
    """Bytes in, whole events out; keeps the partial line and event between reads."""

    def __init__(self) -> None:
        self._tail = b""
        self._after_cr = False  # the last read ended in CR: a leading LF belongs to it
        self._data: list[bytes] = []
        self._type = b""

    def feed(self, piece: bytes) -> list[Event]:
        if self._after_cr and piece.startswith(b"\n"):
            piece = piece[1:]
        if not piece:
            return []
        self._after_cr = piece.endswith(b"\r")
        buf = self._tail + piece if self._tail else piece
        lines = buf.splitlines()  # bytes split on LF, CR and CRLF only
        self._tail = b"" if buf.endswith((b"\n", b"\r")) else lines.pop()
        out: list[Event] = []
        for line in lines:
            self._line(line, out)
        return out

    def end(self) -> list[Event]:
        out: list[Event] = []
        if self._tail:
            self._line(self._tail, out)
            self._tail = b""
        self._line(b"", out)
        return out

    def _line(self, line: bytes, out: list[Event]) -> None:
        if not line:
            if self._data:
                out.append(Event(b"\n".join(self._data), self._type or b"message"))
            self._data, self._type = [], b""
            return
        if line.startswith(b":"):
            return  # a comment (keep-alives)
        name, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._type = value


async def events(body: AsyncIterable[bytes]) -> AsyncIterator[list[Event]]:
    """The events of an SSE body, a non-empty list per read that completed any."""
    decoder = Decoder()
    async for piece in body:
        if batch := decoder.feed(piece):
            yield batch
    if batch := decoder.end():
        yield batch
