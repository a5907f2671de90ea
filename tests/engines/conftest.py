"""Fixtures for the worker server tests: real ``lingyun worker`` processes, one per backend.

The session workers that the collected tests use start together the first time any is asked
for, so their model loads overlap; each fixture then waits for its own ``/health``. Tests drive them with the
official ``openai`` client.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.engines.worker_process import WorkerProcess


@pytest.fixture(scope="session")
def worker_log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("worker-logs")


@pytest.fixture(scope="session")
def _session_workers(
    request: pytest.FixtureRequest, worker_log_dir: Path
) -> Iterator[dict[str, WorkerProcess]]:
    """Start, together, the workers that this session's tests will ask for."""
    wanted = {name for item in request.session.items for name in getattr(item, "fixturenames", ())}
    workers: dict[str, WorkerProcess] = {}
    if "sim_worker" in wanted:
        workers["simulator"] = WorkerProcess("simulator", "sim-model", args='{"output_tokens": 16}')
    if "tf_worker" in wanted:
        tiny_model_dir: Path = request.getfixturevalue("tiny_model_dir")
        workers["transformers"] = WorkerProcess(
            "transformers", "tiny-chat", model=str(tiny_model_dir), args='{"device": "cpu"}'
        )
    if "emb_worker" in wanted:
        workers["embeddings"] = WorkerProcess("embeddings", "minilm", model="all-MiniLM-L6-v2")
    for w in workers.values():
        w.start(worker_log_dir)
    yield workers
    for w in workers.values():
        w.stop()


@pytest.fixture(scope="session")
def sim_worker(_session_workers: dict[str, WorkerProcess]) -> WorkerProcess:
    return _session_workers["simulator"].wait_ready()


@pytest.fixture(scope="session")
def tf_worker(_session_workers: dict[str, WorkerProcess]) -> WorkerProcess:
    return _session_workers["transformers"].wait_ready()


@pytest.fixture(scope="session")
def emb_worker(_session_workers: dict[str, WorkerProcess]) -> WorkerProcess:
    return _session_workers["embeddings"].wait_ready()


@pytest.fixture
def spawn_worker(worker_log_dir: Path) -> Iterator[Any]:
    """A factory for a private worker (e.g. one a test will crash); stopped afterwards."""
    started: list[WorkerProcess] = []

    def spawn(backend: str, name: str, **kwargs: Any) -> WorkerProcess:
        w = WorkerProcess(backend, name, **kwargs).start(worker_log_dir)
        started.append(w)
        return w.wait_ready()

    yield spawn
    for w in started:
        w.stop()
