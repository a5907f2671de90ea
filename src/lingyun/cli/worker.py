"""``lingyun worker``: one replica of an engine behind our OpenAI-compatible server.

The supervisor starts this as a process and polls ``GET /health``. The model is loaded before
the port is opened, so a replica is never reachable half-loaded. Heavy imports (torch,
FastAPI) happen inside the command so that ``lingyun --help`` stays fast.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
from typing import Any

import typer

logger = logging.getLogger(__name__)


def _parse_args(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not valid JSON: {exc}", param_hint="--args") from None
    if not isinstance(value, dict):
        raise typer.BadParameter("must be a JSON object", param_hint="--args")
    return value


def worker(
    backend: str = typer.Option(
        ...,
        "--backend",
        help="transformers (HF causal LM), embeddings (sentence-transformers), or simulator "
        "(a stand-in for a GPU engine in load tests).",
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", help="Port to listen on."),
    served_model_name: str = typer.Option(
        ..., "--served-model-name", help="The 'model' value requests must carry."
    ),
    model: str | None = typer.Option(
        None, "--model", help="Model directory or packaged model name (backend-specific)."
    ),
    args: str | None = typer.Option(
        None, "--args", help='Backend arguments as a JSON object, e.g. {"device": "cpu"}.'
    ),
    log_level: str = typer.Option("info", "--log-level", help="Logging level."),
) -> None:
    """Load the backend, then serve it until terminated."""
    import uvicorn

    from lingyun.engines.worker.app import create_app
    from lingyun.engines.worker.backend import BACKENDS, create_backend

    if backend not in BACKENDS:
        raise typer.BadParameter(
            f"choose one of {', '.join(sorted(BACKENDS))}", param_hint="--backend"
        )
    backend_args = _parse_args(args)
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    secret = _take_secret(host)
    try:
        loaded = create_backend(backend, model, backend_args)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    logger.info("worker %s (%s) loaded; serving on %s:%d", served_model_name, backend, host, port)
    app = create_app(
        loaded, served_model_name, usage_log=backend_args.get("usage_log"), secret=secret
    )
    # A stopped replica should go quickly: streams still open after 5 s are cut.
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=5,
    )


def _take_secret(host: str) -> str | None:
    """The replica secret from the environment (removed there, so nothing this process
    starts inherits it). Without one the worker answers anyone, so it may then listen only
    on loopback: a worker on a network address without a secret is refused."""
    from lingyun.engines.base import REPLICA_SECRET_ENV

    secret = os.environ.pop(REPLICA_SECRET_ENV, "") or None
    if secret is None and not _is_loopback(host):
        raise typer.BadParameter(
            f"a worker listening on {host} needs a secret in the environment variable "
            f"{REPLICA_SECRET_ENV} (supervisors set it); without one, listen on 127.0.0.1",
            param_hint="--host",
        )
    if secret is None:
        logger.warning("no %s set: this worker answers any local caller", REPLICA_SECRET_ENV)
    return secret


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


if __name__ == "__main__":
    # The supervisor starts replicas as `python -m lingyun.cli.worker`, which skips importing
    # the gateway and every other verb: a replica comes up sooner.
    typer.run(worker)
