"""A throwaway two-node Ray cluster on this machine, from the virtualenv's ``ray start``.

Two ``ray start --block`` processes, each in its own session: a head (custom resource
``node_a``) and a worker node (``node_b``) joining it, both on 127.0.0.1 with a private
``--temp-dir`` and never the default port (6379 is Redis's here). ``stop()`` ends them by
their own process ids (SIGTERM: ``--block`` then stops every process it started), then
SIGKILLs anything still naming our temp dir, so no Ray process outlives the tests; it never
runs a machine-wide ``ray stop``, which would end other people's clusters.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.server import free_port

RAY = str(Path(sys.executable).with_name("ray"))
# Quiet and local: no token auth, no usage report, 127.0.0.1 as every node's address.
RAY_ENV = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
}


@dataclass
class RayCluster:
    port: int = field(default_factory=free_port)
    # Short: Ray puts unix sockets under it, and those paths are limited to 107 bytes.
    temp_dir: Path = field(default_factory=lambda: Path(f"/tmp/lyray-{secrets.token_hex(3)}"))
    head: subprocess.Popen[bytes] | None = None
    worker: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, **RAY_ENV}

    def _start(
        self, args: list[str], log: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        with (self.temp_dir / log).open("ab") as out:
            return subprocess.Popen(
                [RAY, "start", "--block", "--node-ip-address", "127.0.0.1",
                 "--disable-usage-stats", *args],
                stdout=out, stderr=subprocess.STDOUT, env={**self.env, **(env or {})},
                start_new_session=True,
            )  # fmt: skip

    def start(self, timeout_s: float = 60.0) -> None:
        self.head = self._start(
            ["--head", "--port", str(self.port), "--temp-dir", str(self.temp_dir),
             "--num-cpus", "4", "--resources", json.dumps({"node_a": 1}),
             "--include-dashboard", "false"],
            "head.log",
        )  # fmt: skip
        self._wait_port(timeout_s)
        self.worker = self._start(
            ["--address", self.address, "--num-cpus", "2",
             "--resources", json.dumps({"node_b": 1})],
            "worker.log",
            # `ray start --address` refuses to join with the variable at 0 ("multi-node
            # clusters are not supported"); the explicit node IP keeps it on 127.0.0.1.
            {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1"},
        )  # fmt: skip

    def _wait_port(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.head is not None and self.head.poll() is not None:
                raise AssertionError(f"ray start --head exited:\n{self.log('head.log')}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 1),
            ):
                return
            time.sleep(0.2)
        raise AssertionError(f"Ray head not up in {timeout_s}s:\n{self.log('head.log')}")

    def log(self, name: str) -> str:
        path = self.temp_dir / name
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def processes(self) -> list[int]:
        """Every live process whose command line names our temp dir (ours, and only ours)."""
        found = []
        marker = str(self.temp_dir).encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            with contextlib.suppress(OSError):
                if marker in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
        return found

    def stop(self) -> list[int]:
        """End the cluster; returns the pids that had to be killed after the graceful stop."""
        for proc in (self.worker, self.head):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in (self.worker, self.head):
            if proc is None:
                continue
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        leftovers = self.processes()
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        return leftovers
