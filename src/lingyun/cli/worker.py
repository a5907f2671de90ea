"""``lingyun worker``: one replica of an engine behind our OpenAI-compatible server.

The supervisor starts this as a process and polls ``GET /health``. The model is loaded before
the port is opened, so a replica is never reachable half-loaded. Heavy imports (torch,
FastAPI) happen inside the command so that ``lingyun --help`` stays fast.
"""

from __future__ import annotations

import json
import logging
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
    try:
        loaded = create_backend(backend, model, backend_args)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    logger.info("worker %s (%s) loaded; serving on %s:%d", served_model_name, backend, host, port)
    app = create_app(loaded, served_model_name, usage_log=backend_args.get("usage_log"))
    # A stopped replica should go quickly: streams still open after 5 s are cut.
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    # The supervisor starts replicas as `python -m lingyun.cli.worker`, which skips importing
    # the gateway and every other verb: a replica comes up sooner.
    typer.run(worker)
