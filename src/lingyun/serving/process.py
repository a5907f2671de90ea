"""Starting and ending replica child processes so that none outlives the gateway.

Three rules keep orphans away:
- each child gets ``PR_SET_PDEATHSIG`` (Linux): when the process that forked it dies, even
  by SIGKILL, the kernel sends the child ``PARENT_DEATH_SIGNAL``. SIGTERM, not SIGKILL, so
  vLLM can still take its own GPU workers down; all our engines exit on SIGTERM.
- each child leads its own session (``start_new_session``): a Ctrl-C in the gateway's
  terminal reaches only the gateway, which then stops children in order, and the child's
  own helpers (vLLM's engine-core processes) share its process group, so one ``killpg``
  reaches them.
- ending a child is SIGTERM to it, SIGKILL to its whole group after a grace period, and
  SIGKILL to the group once it has exited, for helpers it left behind. Signalling a reaped
  leader's group is safe: Linux does not reuse a pid while a process group still bears it.

Caveat: the death signal follows the *thread* that forked, so spawn from the event loop
thread of a long-lived loop (``LocalSupervisor`` does).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

logger = logging.getLogger(__name__)

PARENT_DEATH_SIGNAL = signal.SIGTERM
_PR_SET_PDEATHSIG = 1

# Resolved in the parent: the child between fork and exec should do as little as possible.
_prctl: Callable[..., int] | None = None
if sys.platform.startswith("linux"):
    try:
        _prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # pragma: no cover - exotic libc
        _prctl = None


def _die_with_parent(parent_pid: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` asking the kernel to signal the child when we die."""
    prctl = _prctl
    if prctl is None:
        return None

    def setup() -> None:
        prctl(_PR_SET_PDEATHSIG, int(PARENT_DEATH_SIGNAL), 0, 0, 0)
        # The parent may have died between fork() and prctl(): then nobody will signal us.
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), signal.SIGKILL)

    return setup


async def spawn(
    argv: Sequence[str], env: Mapping[str, str], log_file: IO[bytes]
) -> asyncio.subprocess.Process:
    """Start ``argv`` with output appended to ``log_file``; raises OSError if it cannot."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
    return await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=log_file,
        stderr=asyncio.subprocess.STDOUT,
        env=full_env,
        start_new_session=True,
        preexec_fn=_die_with_parent(os.getpid()),
    )


def open_log(path: Path, header: str) -> IO[bytes]:
    """Append mode, so the log of every restart of a replica stays in one file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    log_file = path.open("ab")
    log_file.write(f"\n===== lingyun: {header} =====\n".encode())
    log_file.flush()
    return log_file


def kill_group(pid: int, sig: signal.Signals = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def terminate(proc: asyncio.subprocess.Process, grace_s: float) -> int:
    """SIGTERM the child, SIGKILL its group if it is still alive after ``grace_s``."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace_s)
        except TimeoutError:
            logger.warning("pid %s ignored SIGTERM for %ss; killing it", proc.pid, grace_s)
            kill_group(proc.pid)
    returncode = await proc.wait()
    kill_group(proc.pid)
    return returncode
