"""STAND-IN gateway for the orphan test: a parent process running a ``LocalSupervisor``
with two stand-in replicas. Once both are healthy it writes their pids (JSON) to the file
named by argv[2] and waits to be killed with SIGKILL. Usage: standin_gateway.py DATA PIDS"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from supervisor_standins import StandInEngine, make_dep

from lingyun.serving.health import HealthPolicy
from lingyun.serving.local import LocalSupervisor


async def main(data_dir: Path, pids_file: Path) -> None:
    sup = LocalSupervisor(
        data_dir, engines={"standin": StandInEngine()}, policy=HealthPolicy(startup_interval_s=0.05)
    )
    await sup.start([make_dep("orphan-test", replicas=2)])
    if not await sup.wait_ready("orphan-test", 10.0, min_healthy=2):
        sys.exit(3)
    pids = [r.pid for d in sup.status() for r in d.replicas]
    tmp = pids_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(pids))
    tmp.rename(pids_file)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2])))
