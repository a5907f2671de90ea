"""Engines served by our own worker server (``lingyun worker``): transformers, embeddings,
simulator. The worker speaks the OpenAI API so the gateway treats it like any other replica."""

from __future__ import annotations

import json
import sys

from lingyun.engines.base import Deployment, ProcessSpec


class WorkerEngine:
    def __init__(self, backend: str) -> None:
        self.name = backend

    def process(self, dep: Deployment, host: str, port: int) -> ProcessSpec:
        argv = [
            sys.executable, "-m", "lingyun.cli.worker",
            "--backend", self.name,
            "--host", host,
            "--port", str(port),
            "--served-model-name", dep.name,
        ]  # fmt: skip
        if dep.model:
            argv += ["--model", dep.model]
        args = dict(dep.args)
        if dep.adapters:  # the backend loads each on first use (transformers: PEFT)
            args["adapters"] = {a.name: a.path for a in dep.adapters}
        if args:
            argv += ["--args", json.dumps(args)]
        return ProcessSpec(argv=argv, health_path="/health", model_id=dep.name)
