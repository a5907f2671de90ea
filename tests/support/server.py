"""A real ``lingyun serve`` subprocess for integration tests, and the CLI beside it."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import yaml

LINGYUN = [sys.executable, "-m", "lingyun.cli.main"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LingyunServer:
    """One ``lingyun serve`` process over a data dir and a database."""

    data_dir: Path
    database_url: str
    models: list[dict[str, Any]]
    extra_config: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    # More `lingyun serve` flags, e.g. ["--ray-address", "127.0.0.1:6380"].
    serve_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    # Opens /health?details=1 (the open /health says only "ok").
    health_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "lingyun.yaml"

    def _common(self) -> list[str]:
        return ["--data-dir", str(self.data_dir), "--database-url", self.database_url]

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a ``lingyun`` verb against this server's data."""
        result = subprocess.run(
            [*LINGYUN, *args, *self._common()],
            capture_output=True,
            text=True,
            env={**os.environ, **self.env},
            timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"lingyun {' '.join(args)} failed:\n{result.stderr}")
        return result

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)

    def create_key(self, tenant: str, project: str = "default") -> str:
        if self.cli("tenants", "create", tenant, check=False).returncode != 0:
            pass  # already exists
        if project != "default":
            self.cli("projects", "create", project, "--tenant", tenant, check=False)
        key: str = self.cli_json("keys", "create", "--tenant", tenant, "--project", project)["key"]
        return key

    def client(self, key: str, **kwargs: Any) -> openai.OpenAI:
        return openai.OpenAI(api_key=key, base_url=f"{self.base_url}/v1", **kwargs)

    def start(self, wait_for: list[str] | None = None, timeout_s: float = 120.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump({"models": self.models, **self.extra_config}))
        with (self.data_dir / "serve.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    *LINGYUN,
                    "serve",
                    "--port",
                    str(self.port),
                    "--config",
                    str(self.config_path),
                    *self._common(),
                    *self.serve_args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "LINGYUN_HEALTH_TOKEN": self.health_token, **self.env},
            )
        self.wait_healthy(wait_for if wait_for is not None else [m["name"] for m in self.models],
                          timeout_s)  # fmt: skip

    def wait_healthy(self, models: list[str], timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"lingyun serve exited early:\n{self.log_tail()}")
            try:
                last = self.health(timeout_s=2)
                ready = {
                    d["name"] for d in last.get("deployments", []) if d["healthy_replicas"] > 0
                }
                if set(models) <= ready:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"not healthy in {timeout_s}s: {last}\n{self.log_tail()}")

    def health(self, timeout_s: float = 5) -> Any:
        """The detailed health (deployments, replica states), with the operators' token."""
        return httpx.get(
            f"{self.base_url}/health",
            params={"details": "1"},
            headers={"Authorization": f"Bearer {self.health_token}"},
            timeout=timeout_s,
        ).json()

    def log_tail(self, n: int = 60) -> str:
        path = self.data_dir / "serve.log"
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        return "\n".join(lines[-n:])

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
