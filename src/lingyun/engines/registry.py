"""Engines by name: how a deployment's replicas come to exist.

A *process* engine builds the command of a replica process that the supervisor starts and
watches (our worker, vLLM, llama.cpp); an *upstream* engine names a remote endpoint that is
already running (a public cloud, any OpenAI-compatible server). Pick by name from ``ENGINES``.
"""

from __future__ import annotations

from lingyun.engines.base import ProcessEngine, ProcessSpec, UpstreamEngine, UpstreamSpec
from lingyun.engines.llamacpp import LlamaCppEngine
from lingyun.engines.upstream import OpenAICompatibleEngine
from lingyun.engines.vllm import VllmEngine
from lingyun.engines.worker_engine import WorkerEngine

__all__ = [
    "CONTINUES_REPLIES",
    "ENGINES",
    "ProcessEngine",
    "ProcessSpec",
    "UpstreamEngine",
    "UpstreamSpec",
]

ENGINES: dict[str, ProcessEngine | UpstreamEngine] = {
    e.name: e
    for e in (
        WorkerEngine("transformers"),
        WorkerEngine("embeddings"),
        WorkerEngine("simulator"),
        VllmEngine(),
        LlamaCppEngine(),
        OpenAICompatibleEngine(),
    )
}

# Engines that continue a partial assistant reply where it stopped (vLLM's
# ``continue_final_message``; our worker implements the same option), so a stream broken
# mid-way can resume on a sibling. A public cloud or llama.cpp's server cannot be asked to.
CONTINUES_REPLIES = frozenset({"transformers", "simulator", "vllm"})
