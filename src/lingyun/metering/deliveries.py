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

At start-up the journal replays the file (and a rotated one a crash left behind) and
charges each open reservation of this gateway the larger of its checkpoint and its last
line: at least what its client received, at most the chunk that was on its way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from lingyun.errors import ServiceUnavailableError

if TYPE_CHECKING:
    from lingyun.config import Settings

logger = logging.getLogger(__name__)

Counts = tuple[int, int]


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
        try:
            os.write(self._fd, f"{request_id} {counts[0]} {counts[1]}\n".encode())
        except OSError as exc:  # disk full: send nothing that is not on record
            logger.error("delivery log %s: %s; refusing to send unrecorded output", self.path, exc)
            raise ServiceUnavailableError(
                "The gateway cannot record usage right now (its disk is full); retry shortly.",
                code="storage_unavailable",
                headers={"Retry-After": "5"},
            ) from exc
        self._dirty = True

    def replay(self) -> dict[str, Counts]:
        """The last counts of each request in the rotated and the current file."""
        seen: dict[str, Counts] = {}
        for path in (self.rotated, self.path):
            with contextlib.suppress(FileNotFoundError), path.open("rb") as f:
                for line in f:
                    parts = line.split()
                    if len(parts) != 3 or not (parts[1].isdigit() and parts[2].isdigit()):
                        continue  # a line torn by a power loss
                    rid = parts[0].decode("ascii", "replace")
                    prev = seen.get(rid, (0, 0))
                    seen[rid] = (max(prev[0], int(parts[1])), max(prev[1], int(parts[2])))
        return seen

    def rotate(self) -> bool:
        """Start a new file before a checkpoint; False while an older rotation is pending
        (its checkpoint failed), in which case lines keep going to the current file."""
        if self.rotated.exists():
            return False
        self._sync()
        os.replace(self.path, self.rotated)
        old, self._fd = self._fd, self._open()
        os.close(old)
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
