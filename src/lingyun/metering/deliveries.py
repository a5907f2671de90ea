"""What reached clients, written as it goes out: the record a crash cannot take away.

Each streamed chunk appends ``request_id prompt_tokens completion_tokens`` (the counts so
far, including the chunk about to be sent) to a per-gateway file with one ``write``: once it
returns, the bytes belong to the OS, so a ``kill -9`` of the gateway loses none of them. A
timer fsyncs the file every ``sync_s`` while it has new lines, so a power loss costs at most
that window. The journal's checkpoint makes the same counts durable in the database every
second; the file is rotated before each checkpoint and the previous file dropped once the
checkpoint has committed, so it holds about one checkpoint's worth of lines.

If the disk is full (or the write fails otherwise), ``record`` raises
``ServiceUnavailableError`` before the chunk is sent: a stream ends with a clean error event
and a whole answer becomes a 503, never content that no record would charge.

A request decided against a credit lease has no reservation row: its ``H`` line (the hold:
parties, prices, bounds) is written before its engine is asked, and its ``S`` line (the final
usage) when it settles, before the settlement is folded into the ledger; the lines of
requests still running are carried into each new file at rotation.

At start-up the journal replays the file (and a rotated one a crash left behind): each open
reservation of this gateway is charged the larger of its checkpoint and its last counts, each
leased request its ``S`` line or else its last counts — at least what its client received, at
most the chunk that was on its way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lingyun.errors import ServiceUnavailableError
from lingyun.metering.holds import Hold, Settlement, hold_from_record, hold_line

if TYPE_CHECKING:
    from lingyun.config import Settings

logger = logging.getLogger(__name__)

Counts = tuple[int, int]
# (prompt, cached, completion, reasoning, note) of a settled leased request
Final = tuple[int, int, int, int, str]


@dataclass
class Replay:
    """What the files say: counts per request, leased holds, and their final usage."""

    counts: dict[str, Counts] = field(default_factory=dict)
    holds: dict[str, Hold] = field(default_factory=dict)
    finals: dict[str, Final] = field(default_factory=dict)

    def settlements(self) -> list[Settlement]:
        """A leased request's settlement: its final usage if it settled, else what its last
        counts say reached the client (nothing reached it: nothing to charge)."""
        out: list[Settlement] = []
        for rid, hold in self.holds.items():
            final = self.finals.get(rid)
            if final is not None:
                p, cached, c, r, note = final
                out.append(Settlement(hold, p, cached, c, r, note))
            elif rid in self.counts:
                p, c = self.counts[rid]
                out.append(Settlement(hold, p, 0, c, 0, "reconciled"))
        return out


def delivery_path(settings: Settings) -> Path:
    """This gateway's file, named for its lease owner (several gateways may share a dir)."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", settings.instance_owner())
    return settings.data_dir / "metering" / f"deliveries-{name}.log"


class DeliveryLog:
    def __init__(self, path: Path, sync_s: float = 0.2) -> None:
        self.path = path
        self.rotated = path.with_name(path.name + ".1")
        self.sync_s = sync_s
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = self._open()
        self._dirty = False

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def record(self, request_id: str, counts: Counts) -> None:
        """Append one request's counts so far; the OS has them when this returns."""
        self._write(f"{request_id} {counts[0]} {counts[1]}\n".encode())

    def begin(self, hold: Hold) -> bytes:
        """Record a leased hold before its engine is asked; answers the line, which the
        journal carries into the next file while the request runs."""
        line = hold_line(hold)
        self._write(line)
        return line

    def settled(self, s: Settlement) -> None:
        """A leased request's final usage, recorded before its fold into the ledger."""
        note = s.note.replace(" ", "_")
        self._write(
            f"S {s.hold.request_id} {s.prompt_tokens} {s.cached_tokens} "
            f"{s.completion_tokens} {s.reasoning_tokens} {note}\n".encode()
        )

    def _write(self, data: bytes) -> None:
        try:
            os.write(self._fd, data)
        except OSError as exc:  # disk full: send nothing that is not on record
            logger.error("delivery log %s: %s; refusing to send unrecorded output", self.path, exc)
            raise ServiceUnavailableError(
                "The gateway cannot record usage right now (its disk is full); retry shortly.",
                code="storage_unavailable",
                headers={"Retry-After": "5"},
            ) from exc
        self._dirty = True

    def replay(self) -> Replay:
        """The rotated and the current file, read back (a line torn by a power loss is
        skipped)."""
        seen = Replay()
        for path in (self.rotated, self.path):
            with contextlib.suppress(FileNotFoundError), path.open("rb") as f:
                for line in f:
                    _read(line, seen)
        return seen

    def rotate(self, carry: Iterable[bytes] = ()) -> bool:
        """Start a new file before a checkpoint, with ``carry`` (the lines of leased requests
        still running) at its head; False while an older rotation is pending (its checkpoint
        failed), in which case lines keep going to the current file."""
        if self.rotated.exists():
            return False
        self._sync()
        os.replace(self.path, self.rotated)
        old, self._fd = self._fd, self._open()
        os.close(old)
        lines = b"".join(carry)
        if lines:
            self._write(lines)
        return True

    def checkpointed(self) -> None:
        """The checkpoint after the last rotation committed: its lines are redundant now."""
        with contextlib.suppress(FileNotFoundError):
            self.rotated.unlink()

    def clear(self) -> None:
        """After start-up reconciliation: nothing in the files is open any more."""
        self.checkpointed()
        os.ftruncate(self._fd, 0)

    def _sync(self) -> None:
        if self._dirty:
            self._dirty = False
            os.fsync(self._fd)

    async def sync_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sync_s)
            try:
                self._sync()
            except OSError:
                logger.exception("fsync of %s failed", self.path)

    def close(self) -> None:
        self._sync()
        os.close(self._fd)


def _read(line: bytes, seen: Replay) -> None:
    if line.startswith(b"H "):
        with contextlib.suppress(ValueError, KeyError, TypeError):
            hold = hold_from_record(json.loads(line[2:]))
            seen.holds[hold.request_id] = hold
        return
    parts = line.split()
    if parts[:1] == [b"S"]:
        if len(parts) == 7 and all(p.isdigit() for p in parts[2:6]):
            rid = parts[1].decode("ascii", "replace")
            p, cached, c, r = (int(x) for x in parts[2:6])
            seen.finals[rid] = (p, cached, c, r, parts[6].decode("ascii", "replace"))
        return
    if len(parts) != 3 or not (parts[1].isdigit() and parts[2].isdigit()):
        return
    rid = parts[0].decode("ascii", "replace")
    prev = seen.counts.get(rid, (0, 0))
    seen.counts[rid] = (max(prev[0], int(parts[1])), max(prev[1], int(parts[2])))
