"""A ``lingyun worker`` subprocess for tests, and how to talk to it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class WorkerProcess:
    """One ``lingyun worker`` subprocess and how to talk to it."""

    backend: str
    name: str
    model: str | None = None
    args: str | None = None
    log_path: Path | None = None
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    _clients: dict[float, openai.OpenAI] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, log_dir: Path) -> WorkerProcess:
        argv = [
            sys.executable, "-m", "lingyun.cli.main", "worker",
            "--backend", self.backend,
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--served-model-name", self.name,
            "--log-level", "warning",
        ]  # fmt: skip
        if self.model:
            argv += ["--model", self.model]
        if self.args:
            argv += ["--args", self.args]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        self.log_path = log_dir / f"{self.backend}-{self.port}.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def log_tail(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-3000:]

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> WorkerProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                pytest.fail(f"{self.backend} worker exited early:\n{self.log_tail()}")
            try:
                if httpx.get(self.base_url + "/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        pytest.fail(f"{self.backend} worker not ready in {timeout} s:\n{self.log_tail()}")

    def health(self) -> dict[str, Any]:
        response = httpx.get(self.base_url + "/health", timeout=5.0)
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def wait_idle(self, timeout: float = 5.0) -> dict[str, Any]:
        """Poll /health until no generation is active (or pending) and return it."""
        deadline = time.monotonic() + timeout
        health = self.health()
        while time.monotonic() < deadline:
            if health.get("active", 0) == 0 and health.get("pending", 0) == 0:
                return health
            time.sleep(0.05)
            health = self.health()
        pytest.fail(f"worker still busy after {timeout} s: {health}")

    def client(self, timeout: float = 60.0) -> openai.OpenAI:
        """An ``openai`` client for this worker (one per timeout, closed with the worker)."""
        if timeout not in self._clients:
            self._clients[timeout] = openai.OpenAI(
                base_url=self.base_url + "/v1", api_key="unused", max_retries=0, timeout=timeout
            )
        return self._clients[timeout]

    def stop(self) -> None:
        for c in self._clients.values():
            c.close()
        self._clients.clear()
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
