"""The worker's ``/metrics``: its load in vLLM's names, so the gateway reads every engine alike.

``vllm:num_requests_running`` is what the backend generates now, ``vllm:num_requests_waiting``
what waits for a batch slot (the transformers scheduler's pending sequences), and
``vllm:kv_cache_usage_perc`` the share of batch rows in use (our stand-in for KV blocks: the
transformers backend keeps one KV row per sequence, up to ``max_batch_size``). Plain text, no
registry: the values are read from the backend when scraped.
"""

from __future__ import annotations

from typing import Any

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _gauge(name: str, help_: str, model: str, value: float) -> str:
    return (
        f"# HELP {name} {help_}\n# TYPE {name} gauge\n"
        f'{name}{{model_name="{model}"}} {float(value)}\n'
    )


def exposition(backend: Any, model: str) -> str:
    health: dict[str, Any] = backend.health()
    running = int(health.get("active", 0))
    waiting = int(health.get("pending", 0))
    out = [
        _gauge("vllm:num_requests_running", "Requests generating now.", model, running),
        _gauge("vllm:num_requests_waiting", "Requests waiting for a batch slot.", model, waiting),
    ]
    scheduler = getattr(backend, "scheduler", None)
    rows = getattr(scheduler, "max_batch_size", None)
    if isinstance(rows, int) and rows > 0:
        usage = min(1.0, running / rows)
        out.append(_gauge("vllm:kv_cache_usage_perc", "Batch rows in use, 0-1.", model, usage))
    if "generated_tokens" in health:
        name = "vllm:generation_tokens"
        out.append(
            f"# HELP {name} Tokens generated.\n# TYPE {name} counter\n"
            f'{name}_total{{model_name="{model}"}} {float(health["generated_tokens"])}\n'
        )
    return "".join(out)
