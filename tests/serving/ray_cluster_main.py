"""Run a two-node Ray cluster on this machine until SIGTERM (``ray_cluster.py`` starts it).

Ray's own ``ray.cluster_utils.Cluster``: a head (custom resource ``node_a``) and a second
node (``node_b``), both on 127.0.0.1. Two ``ray start`` processes cannot do this here: the
joining node rewrites 127.0.0.1 to the machine's interface address and never reaches the
head. Kept in its own process so the test process never imports Ray. Prints one JSON line
(address and each node's raylet pid) once both nodes are up.
"""

from __future__ import annotations

import json
import signal
import sys
import threading

from ray import ray_constants
from ray.cluster_utils import Cluster


def raylet_pid(node: object) -> int:
    procs = node.all_processes[ray_constants.PROCESS_TYPE_RAYLET]  # type: ignore[attr-defined]
    return int(procs[0].process.pid)


def main(temp_dir: str, port: int) -> None:
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "node_ip_address": "127.0.0.1",
            "gcs_server_port": port,
            "num_cpus": 4,
            "resources": {"node_a": 1},
            "temp_dir": temp_dir,
            "include_dashboard": False,
        },
    )
    try:
        worker = cluster.add_node(node_ip_address="127.0.0.1", num_cpus=2, resources={"node_b": 1})
        cluster.wait_for_nodes()
        print(json.dumps({
            "address": cluster.address,
            "head_raylet": raylet_pid(cluster.head_node),
            "worker_raylet": raylet_pid(worker),
        }), flush=True)  # fmt: skip
        done.wait()
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
