"""The ``llamacpp`` engine: a GGUF file served by llama-cpp-python's OpenAI-compatible server.

Each replica is ``python -m llama_cpp.server``. That server is a single-model FastAPI app
that loads the model *before* it starts listening, so any 200 means "loaded". Its quirks,
which this module papers over so the supervisor and the gateway see a plain OpenAI peer:

* Every endpoint that touches the model, ``/v1/models`` included, queues on one lock held
  for a whole generation, so a health probe there stalls behind a long stream. The probe
  uses ``/openapi.json``, which is served without the lock.
* ``--interrupt_requests`` defaults to true: a second request arriving mid-stream ends the
  first stream early with ``[DONE]``, silently truncated. The gateway sends concurrent
  requests, so we turn it off unless a deployment explicitly asks for it.
* ``HOST``/``PORT`` environment variables override ``--host``/``--port``; we set them to the
  same values so an inherited ``PORT`` cannot move the replica.
* Boolean flags take a value (``--flash_attn true``), list flags several (``--tensor_split 1 1``),
  dict flags JSON. ``args`` are mapped accordingly and checked against the flags the server
  accepts (llama-cpp-python 0.3.x ``ModelSettings``), so a typo fails at config time rather
  than as a crash-looping replica. Two keys are Lingyun's, as for the vllm engine, and are
  not passed on: ``env`` (extra environment variables, e.g. ``CUDA_VISIBLE_DEVICES``) and
  ``ready_timeout_s``.
* Any environment variable named like a server setting (``API_KEY``, ``N_CTX``, ``MODEL``,
  ...; pydantic-settings, case-insensitive) configures the server when no flag does. The
  replica inherits the supervisor's environment; ``API_KEY`` is the one we set ourselves:
  the supervisor's per-replica secret (``ProcessSpec.secret_env``), never a flag, so it stays
  out of ``/proc/*/cmdline`` and the replica log. llama.cpp's key does not guard
  ``/openapi.json`` (the health probe); every model endpoint demands it.

Left to the gateway (nothing a flag can change in 0.3.x): streams carry no ``usage`` even
with ``stream_options.include_usage``; streams drop characters whose UTF-8 bytes span
tokens (abetlen/llama-cpp-python#372); ``completion_tokens`` may exceed ``max_tokens`` by
the few tokens needed to finish a multi-byte character.

``llama_cpp`` is never imported here (it loads a shared library); only its presence is checked.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any, Literal

from lingyun.engines.base import Deployment, ProcessSpec, env_arg, ready_timeout_arg

INSTALL_HINT = "pip install 'lingyun[llamacpp]'"
# Modules the server needs: llama_cpp itself and the [server] extra.
_REQUIRED_MODULES = ("llama_cpp", "sse_starlette", "starlette_context")

_Kind = Literal["int", "float", "str", "bool", "list", "json"]

# Settings of llama_cpp.server that a deployment may set through ``args``.
# Left out on purpose: model/model_alias/host/port (the deployment owns them), vocab_only
# (a server that cannot generate), api_key (the supervisor sets it through the environment)/
# ssl_*/root_path/config_file (the gateway talks to replicas over plain local HTTP).
ARG_KINDS: dict[str, _Kind] = {
    # model loading and placement
    "n_gpu_layers": "int",
    "split_mode": "int",
    "main_gpu": "int",
    "tensor_split": "list",
    "use_mmap": "bool",
    "use_mlock": "bool",
    "kv_overrides": "list",
    "rpc_servers": "str",
    # context
    "seed": "int",
    "n_ctx": "int",
    "n_batch": "int",
    "n_ubatch": "int",
    "n_threads": "int",
    "n_threads_batch": "int",
    "rope_scaling_type": "int",
    "rope_freq_base": "float",
    "rope_freq_scale": "float",
    "yarn_ext_factor": "float",
    "yarn_attn_factor": "float",
    "yarn_beta_fast": "float",
    "yarn_beta_slow": "float",
    "yarn_orig_ctx": "int",
    "mul_mat_q": "bool",
    "logits_all": "bool",
    "embedding": "bool",
    "offload_kqv": "bool",
    "flash_attn": "bool",
    "last_n_tokens_size": "int",
    "lora_base": "str",
    "lora_path": "str",
    "numa": "bool",
    # chat formatting
    "chat_format": "str",
    "chat_template_kwargs": "json",
    "clip_model_path": "str",
    # prompt cache
    "cache": "bool",
    "cache_type": "str",
    "cache_size": "int",
    # tokenizer overrides
    "hf_tokenizer_config_path": "str",
    "hf_pretrained_model_name_or_path": "str",
    "hf_model_repo_id": "str",
    # speculative decoding
    "draft_model": "str",
    "draft_model_num_pred_tokens": "int",
    # KV cache quantization (ggml type ids)
    "type_k": "int",
    "type_v": "int",
    # server behaviour
    "verbose": "bool",
    "interrupt_requests": "bool",
    "disable_ping_events": "bool",
}

# Loading maps the file; even large GGUFs are ready in well under this on a local disk.
DEFAULT_READY_TIMEOUT_S = 300.0
# See the module docstring: the server's default truncates concurrent streams.
_DEFAULT_ARGS: dict[str, Any] = {"interrupt_requests": False}


class LlamaCppEngine:
    """Builds the command of one llama-cpp-python server replica for a GGUF deployment."""

    name = "llamacpp"

    def process(self, dep: Deployment, host: str, port: int) -> ProcessSpec:
        model = _model_path(dep)
        _check_installed()
        args = dict(dep.args)
        env = env_arg(dep.name, args.pop("env", None))
        ready_timeout_s = ready_timeout_arg(
            dep.name, args.pop("ready_timeout_s", None), DEFAULT_READY_TIMEOUT_S
        )
        argv = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(model),
            "--host", host,
            "--port", str(port),
            "--model_alias", dep.name,
        ]  # fmt: skip
        argv += args_to_flags({**_DEFAULT_ARGS, **args}, deployment=dep.name)
        return ProcessSpec(
            argv=argv,
            env={**env, "HOST": host, "PORT": str(port)},
            health_path="/openapi.json",
            ready_timeout_s=ready_timeout_s,
            model_id=dep.name,
            secret_env=("API_KEY",),
        )


def args_to_flags(args: dict[str, Any], *, deployment: str = "") -> list[str]:
    """Turn ``args`` into llama_cpp.server flags; ``ValueError`` names the bad key."""
    flags: list[str] = []
    where = f"deployment {deployment!r}: " if deployment else ""
    for key, value in args.items():
        kind = ARG_KINDS.get(key)
        if kind is None:
            raise ValueError(
                f"{where}unknown llamacpp arg {key!r}; supported: {', '.join(sorted(ARG_KINDS))}"
            )
        if value is None:  # None means "server default", as in the server's own settings
            continue
        flags.append(f"--{key}")
        flags += _format(key, kind, value, where)
    return flags


def _format(key: str, kind: _Kind, value: Any, where: str) -> list[str]:
    bad = ValueError(f"{where}llamacpp arg {key!r} must be {_KIND_WORDS[kind]}, got {value!r}")
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad
        return ["true" if value else "false"]
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return [str(value)]
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad
        return [str(value)]
    if kind == "str":
        if not isinstance(value, str) or not value:
            raise bad
        return [value]
    if kind == "list":
        if not isinstance(value, list) or not value:
            raise bad
        if any(isinstance(v, bool) or not isinstance(v, int | float | str) for v in value):
            raise bad
        return [str(v) for v in value]
    if not isinstance(value, dict):
        raise bad
    return [json.dumps(value)]


_KIND_WORDS: dict[_Kind, str] = {
    "int": "an integer",
    "float": "a number",
    "str": "a non-empty string",
    "bool": "true or false",
    "list": "a non-empty list of numbers or strings",
    "json": "a mapping",
}


def _model_path(dep: Deployment) -> Path:
    """The absolute path of the deployment's GGUF file: replicas may run in another cwd."""
    if not dep.model:
        raise ValueError(
            f"deployment {dep.name!r}: engine llamacpp needs 'model': the path of a .gguf file"
        )
    path = Path(dep.model).expanduser()
    if path.suffix.lower() != ".gguf":
        raise ValueError(
            f"deployment {dep.name!r}: llamacpp 'model' must be a .gguf file, got {dep.model!r}"
        )
    if not path.is_file():
        raise ValueError(f"deployment {dep.name!r}: GGUF file {dep.model!r} does not exist")
    return path.resolve()


def _check_installed() -> None:
    # ValueError like bad config: retrying does not install it, and the supervisor marks a
    # replica whose process() raises ValueError as failed with this message.
    missing = [m for m in _REQUIRED_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise ValueError(
            f"the llamacpp engine needs llama-cpp-python[server] ({', '.join(missing)} "
            f"missing): {INSTALL_HINT}"
        )
