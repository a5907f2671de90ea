"""One worker of ``lingyun serve --workers N`` (``python -m lingyun.cli.serve_worker``).

Started by ``serving/workers.py`` only: everything it needs arrives in the environment
(``serving/worker_env.py``), the listening socket as an inherited file descriptor.
"""

from __future__ import annotations

import argparse
import os
import socket

from lingyun.serving import worker_env


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)

    import uvicorn

    from lingyun.app import create_app
    from lingyun.cli.serve import configure_logging
    from lingyun.config import Settings

    slot = worker_env.slot()
    if slot is None:
        raise SystemExit("serve_worker runs under `lingyun serve --workers N` only")
    settings = Settings.model_validate_json(os.environ.pop(worker_env.SETTINGS_ENV))
    settings = settings.model_copy(
        update={
            "instance_name": worker_env.owner_name(settings.instance_owner(), slot),
            # One ops listener: worker 0's (its /metrics sums every worker's counters).
            "metrics_port": settings.metrics_port if slot == 0 else None,
        }
    )
    configure_logging(args.log_level)
    sock = socket.socket(fileno=int(os.environ[worker_env.FD_ENV]))
    config = uvicorn.Config(
        create_app(settings),
        log_level=args.log_level,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
