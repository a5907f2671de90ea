"""Private PostgreSQL and Redis servers for fault tests: started on free ports in temp dirs, so
a test may stop, kill and restart them (never the shared ones on 5432 and 6379).

PostgreSQL runs Debian's binaries as the ``postgres`` user when the suite runs as root (the
server refuses to run as root); its data dir is a fresh ``initdb`` with fsync off (a test
cluster, rebuilt every run). Each is stopped by its own process id.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.server import free_port

PG_BIN = Path(os.environ.get("LINGYUN_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


def _as_postgres(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@dataclass
class PrivatePostgres:
    root: Path
    port: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", *args]),
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> None:
        """Start and wait until it accepts connections (``pg_ctl -w``)."""
        opts = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=100"
        )
        self._ctl("-l", str(self.root / "server.log"), "-o", opts, "start")

    def stop(self) -> None:
        """Stop at once, closing every client's connection (``-m fast``)."""
        self._ctl("-m", "fast", "stop")


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    if not (PG_BIN / "initdb").exists():
        raise RuntimeError(f"no PostgreSQL binaries in {PG_BIN}; set LINGYUN_TEST_PG_BIN")
    root = Path(tempfile.mkdtemp(prefix="lingyun-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, user="postgres")
    pg = PrivatePostgres(root, free_port())
    subprocess.run(
        _as_postgres([str(PG_BIN / "initdb"), "-D", str(pg.data), "-A", "trust",
                      "-U", "postgres", "--no-sync", "-E", "UTF8"]),
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    pg.start()
    try:
        yield pg
    finally:
        if (pg.data / "postmaster.pid").exists():
            pg.stop()
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class PrivateRedis:
    root: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start and wait until it answers PING."""
        log = (self.root / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.root)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 30
        while not self.answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"redis-server did not start on {self.port}")
            time.sleep(0.05)

    def answers(self) -> bool:
        done = subprocess.run(
            ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True
        )
        return done.stdout.strip() == "PONG"

    def kill(self) -> None:
        """SIGKILL, as a crash would: no goodbye to its clients."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=30)
            self.proc = None


@contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    root = Path(tempfile.mkdtemp(prefix="lingyun-redis-"))
    redis = PrivateRedis(root, free_port())
    redis.start()
    try:
        yield redis
    finally:
        redis.kill()
        shutil.rmtree(root, ignore_errors=True)
