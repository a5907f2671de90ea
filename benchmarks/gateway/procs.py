"""Processes under test: start them pinned to CPUs, wait for them, and measure their cost.

CPU time comes from psutil (``/proc/<pid>/stat``: user + system), summed over a process and
its children, leaving out the replica's process tree: a gateway that supervises the replica
must not be charged for it. Peak memory is the highest summed RSS seen by a sampler thread
that polls every 100 ms while a run is measured.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import psutil

CPU_COUNT = os.cpu_count() or 1


def stop_on_sigterm() -> None:
    """Turn SIGTERM (``timeout``, ``kill``) into SystemExit, so ``finally`` blocks stop the
    servers we started; they run in sessions of their own and would otherwise live on."""

    def _exit(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(cmd: Sequence[str], cpus: str | None) -> list[str]:
    """``cmd`` under ``taskset -c cpus`` when pinning is asked for and possible."""
    if cpus is None or shutil.which("taskset") is None:
        return list(cmd)
    return ["taskset", "-c", cpus, *cmd]


class Proc:
    """A server process we started; stopped by its own pid, never by name."""

    def __init__(
        self,
        name: str,
        cmd: Sequence[str],
        log: Path,
        cpus: str | None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.log = log
        with log.open("ab") as out:
            self.popen = subprocess.Popen(
                pinned(cmd, cpus),
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, n: int = 30) -> str:
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return "\n".join(lines[-n:])

    def wait_http(self, url: str, timeout_s: float, ok: int = 200) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2).status_code == ok:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready in {timeout_s}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if not self.alive():
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            # Our own process group (start_new_session), so this reaches only our children.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.popen.wait()


def _tree(pid: int, exclude: set[int]) -> list[psutil.Process]:
    """``pid`` and its descendants, minus the excluded processes and their descendants."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
    skipped: set[int] = set()
    for p in procs:
        if p.pid in exclude:
            skipped.add(p.pid)
            with contextlib.suppress(psutil.NoSuchProcess):
                skipped.update(c.pid for c in p.children(recursive=True))
    return [p for p in procs if p.pid not in skipped]


def cpu_seconds(pid: int, exclude: set[int]) -> float:
    total = 0.0
    for p in _tree(pid, exclude):
        with contextlib.suppress(psutil.NoSuchProcess):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def rss_bytes(pid: int, exclude: set[int]) -> int:
    total = 0
    for p in _tree(pid, exclude):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total


class PeakRss:
    """Samples the summed RSS of a process tree in a thread while the block runs."""

    def __init__(self, pid: int, exclude: set[int], every_s: float = 0.1) -> None:
        self.pid, self.exclude, self.every_s = pid, exclude, every_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes(self.pid, self.exclude))
            self._stop.wait(self.every_s)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes(self.pid, self.exclude))
