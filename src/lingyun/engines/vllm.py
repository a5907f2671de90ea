"""vLLM replicas: ``vllm serve`` from vLLM's own virtualenv, used as it is (it speaks OpenAI).

vLLM pins its own CUDA torch, transformers and fastapi, so it cannot share Lingyun's
environment; it lives in a separate virtualenv and this module never imports it. The
deployment's ``args`` become ``vllm serve`` flags::

    args: {tensor_parallel_size: 2, enable_auto_tool_choice: true, max_lora_rank: [a, b]}
    -> --tensor-parallel-size 2 --enable-auto-tool-choice --max-lora-rank a --max-lora-rank b

``true`` is a bare flag, ``false`` is ``--no-<flag>`` (vLLM's boolean flags accept both
forms), ``null`` is left out, a list repeats the flag, a mapping is passed as JSON (what
vLLM expects for ``--speculative-config`` and friends). Three keys are Lingyun's, not
vLLM's, and are not passed on: ``venv`` (the virtualenv holding ``bin/vllm``; else env
``LINGYUN_VLLM_VENV``; else ``.venv-vllm``), ``env`` (extra environment variables, e.g.
``CUDA_VISIBLE_DEVICES``) and ``ready_timeout_s`` (how long loading may take).

The replica's secret reaches vLLM as ``VLLM_API_KEY`` (``ProcessSpec.secret_env``), never
as ``--api-key``: argv is readable by every local user in ``/proc/*/cmdline`` and is written
to the replica log. ``api_key`` in ``args`` is therefore refused. vLLM's key does not guard
``/health``, ``/metrics`` or ``/tokenize``; keep replicas on addresses only the gateway reaches.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lingyun.engines.base import Deployment, ProcessSpec, env_arg, ready_timeout_arg

DEFAULT_VENV = ".venv-vllm"
VENV_ENV_VAR = "LINGYUN_VLLM_VENV"
# Downloading and loading a large model, then compiling CUDA graphs, takes many minutes.
DEFAULT_READY_TIMEOUT_S = 1800.0
# Flags the supervisor sets itself; a deployment setting them would break routing.
_RESERVED = frozenset({"host", "port", "served_model_name", "model", "api_key"})
SECRET_ENV = "VLLM_API_KEY"
_LINGYUN_KEYS = ("venv", "env", "ready_timeout_s")


class VllmEngine:
    name = "vllm"

    def process(self, dep: Deployment, host: str, port: int) -> ProcessSpec:
        # Imported here, not at the top: the registry imports this module while it loads.
        from lingyun.engines.base import ProcessSpec

        if not dep.model:
            raise ValueError(
                f"deployment {dep.name!r}: the vllm engine needs `model` "
                "(a Hugging Face model id or a local directory)"
            )
        args = dict(dep.args)
        venv = args.pop("venv", None) or os.environ.get(VENV_ENV_VAR) or DEFAULT_VENV
        env = env_arg(dep.name, args.pop("env", None))
        ready_timeout_s = ready_timeout_arg(
            dep.name, args.pop("ready_timeout_s", None), DEFAULT_READY_TIMEOUT_S
        )
        argv = [
            str(Path(str(venv)) / "bin" / "vllm"), "serve", dep.model,
            "--host", host,
            "--port", str(port),
            "--served-model-name", dep.name,
        ]  # fmt: skip
        argv += args_to_flags(dep.name, args)
        if dep.adapters:
            # Adapters are served under their own names; runtime loading lets a replica take
            # adapters added later through vLLM's /v1/load_lora_adapter.
            argv += ["--enable-lora"]
            if "max_loras" not in dep.args:
                argv += ["--max-loras", str(len(dep.adapters))]
            argv += ["--lora-modules", *(f"{a.name}={a.path}" for a in dep.adapters)]
            env = {**env, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}
        return ProcessSpec(
            argv=argv,
            env=env,
            health_path="/health",
            ready_timeout_s=ready_timeout_s,
            model_id=dep.name,
            secret_env=(SECRET_ENV,),
        )


def args_to_flags(deployment: str, args: Mapping[str, Any]) -> list[str]:
    """Turn ``args`` into ``vllm serve`` flags (see the module docstring for the rules)."""
    flags: list[str] = []
    for key, value in args.items():
        name = str(key).removeprefix("--").replace("_", "-")
        if name.replace("-", "_") in _RESERVED:
            raise ValueError(
                f"deployment {deployment!r}: args.{key} is set by Lingyun (the replica "
                "secret goes in VLLM_API_KEY; host, port and names come from the "
                "deployment's fields); remove it"
            )
        flag = f"--{name}"
        if value is None:
            continue
        if value is True:
            flags.append(flag)
        elif value is False:
            flags.append(f"--no-{name}")
        elif isinstance(value, list | tuple):
            for item in value:
                flags += [flag, _scalar(deployment, key, item)]
        else:
            flags += [flag, _scalar(deployment, key, value)]
    return flags


def _scalar(deployment: str, key: object, value: object) -> str:
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, str | int | float):
        return str(value)
    raise ValueError(
        f"deployment {deployment!r}: args.{key} has a value of type "
        f"{type(value).__name__}; use a string, number, boolean, list or mapping"
    )
