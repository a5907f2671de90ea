"""STAND-IN engines for supervisor tests (tiny stdlib HTTP servers, not real engines),
injected into ``LocalSupervisor`` in place of the registry, and process helpers."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lingyun.config import DeploymentConfig
from lingyun.engines.registry import ProcessSpec, UpstreamSpec

STANDIN = Path(__file__).with_name("standin_replica.py")


@dataclass
class StandInEngine:
    """Runs ``standin_replica.py`` with extra ``flags`` (see its docstring)."""

    name: str = "standin"
    flags: list[str] = field(default_factory=list)
    ready_timeout_s: float = 10.0
    argv0: str = sys.executable

    def process(self, dep: DeploymentConfig, host: str, port: int) -> ProcessSpec:
        argv = [self.argv0, str(STANDIN), "--port", str(port), "--model", dep.name, *self.flags]
        return ProcessSpec(argv=argv, ready_timeout_s=self.ready_timeout_s, model_id=dep.name)


@dataclass
class FakeUpstreamEngine:
    name: str = "fake-upstream"
    error: str | None = None

    def upstream(self, dep: DeploymentConfig) -> UpstreamSpec:
        if self.error:
            raise ValueError(self.error)
        return UpstreamSpec(
            base_url="https://example.invalid/v1",
            model_id=dep.model or dep.name,
            headers={"Authorization": "Bearer sk-test"},
        )


@dataclass
class BrokenConfigEngine:
    name: str = "broken"

    def process(self, dep: DeploymentConfig, host: str, port: int) -> ProcessSpec:
        raise ValueError(f"deployment {dep.name!r}: needs `model`")


def make_dep(name: str, engine: str = "standin", **fields: Any) -> DeploymentConfig:
    """A deployment naming a stand-in engine; ``model_construct`` skips the check that the
    engine is in the real registry (the supervisor gets a fake one)."""
    return DeploymentConfig.model_construct(name=name, engine=engine, **fields)


def pid_alive(pid: int) -> bool:
    """True if ``pid`` runs; a zombie (dead, not yet reaped by whoever adopted it) is dead."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
