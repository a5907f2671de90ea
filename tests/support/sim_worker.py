"""A simulator worker of our own, for deployments that several gateways (or benchmarks) share."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.server import LINGYUN, free_port


@dataclass
class SimWorker:
    """A simulator worker of our own, for deployments several gateways share."""

    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def health(self) -> dict[str, Any]:
        data: dict[str, Any] = httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=5).json()
        return data

    def deployment(self, name: str = "sim", **extra: Any) -> dict[str, Any]:
        return {
            "name": name,
            "engine": "openai-compatible",
            "base_url": self.base_url,
            "model": "sim",
            **extra,
        }


@contextmanager
def sim_worker(log_dir: Path, **args: Any) -> Iterator[SimWorker]:
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / f"worker-{port}.log").open("ab") as log:
        proc = subprocess.Popen(
            [*LINGYUN, "worker", "--backend", "simulator", "--port", str(port),
             "--served-model-name", "sim", "--args", json.dumps(args), "--log-level", "warning"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ),
        )  # fmt: skip
    worker = SimWorker(port)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                worker.health()
                break
            except httpx.HTTPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("simulator worker did not start") from None
                time.sleep(0.1)
        yield worker
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
