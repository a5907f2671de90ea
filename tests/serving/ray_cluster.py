"""A throwaway two-node Ray cluster on this machine, for the Ray tests.

``ray_cluster_main.py`` runs it in a child process of its own session: a head (custom
resource ``node_a``) and a second node (``node_b``), both on 127.0.0.1 with a private temp
dir and never the default port (6379 is Redis's here). ``stop()`` ends it by its process id
(SIGTERM: it shuts its cluster down), then SIGKILLs anything still naming our temp dir, so no
Ray process outlives the tests; it never runs a machine-wide ``ray stop``, which would end
other people's clusters.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.server import free_port

MAIN = Path(__file__).with_name("ray_cluster_main.py")
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
    proc: subprocess.Popen[str] | None = None
    address: str = ""
    head_raylet: int = 0
    worker_raylet: int = 0

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, **RAY_ENV}

    def start(self, timeout_s: float = 90.0) -> None:
        (self.temp_dir / "ray").mkdir(parents=True, exist_ok=True)
        log = (self.temp_dir / "cluster.log").open("a")
        self.proc = subprocess.Popen(
            [sys.executable, str(MAIN), str(self.temp_dir), str(self.port)],
            # RAY_TMPDIR: Ray's "current cluster" file goes there too, not /tmp/ray, so
            # `ray.init("auto")` elsewhere on the machine never finds our cluster.
            stdout=subprocess.PIPE, stderr=log, text=True,
            env={**self.env, "RAY_TMPDIR": str(self.temp_dir)},
            start_new_session=True,
        )  # fmt: skip
        log.close()
        assert self.proc.stdout is not None
        ready: dict[str, str] = {}
        reader = threading.Thread(
            target=lambda: ready.update(json.loads(self.proc.stdout.readline() or "{}"))  # type: ignore[union-attr]
        )
        reader.start()
        deadline = time.monotonic() + timeout_s
        while reader.is_alive() and self.proc.poll() is None and time.monotonic() < deadline:
            reader.join(0.2)
        if not ready:
            raise AssertionError(f"Ray cluster not up in {timeout_s}s:\n{self.log()}")
        self.address = ready["address"]
        self.head_raylet, self.worker_raylet = (
            int(ready["head_raylet"]),
            int(ready["worker_raylet"]),
        )

    def log(self) -> str:
        path = self.temp_dir / "cluster.log"
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
        proc = self.proc
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        time.sleep(0.5)  # Ray's processes notice their raylet is gone and exit
        leftovers = self.processes()
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        return leftovers
