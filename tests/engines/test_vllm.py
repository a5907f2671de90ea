"""VllmEngine: the ``vllm serve`` command it builds, and its life under LocalSupervisor
against a STAND-IN ``vllm`` executable (real vLLM needs CUDA and its own virtualenv)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from lingyun.config import DeploymentConfig
from lingyun.engines.vllm import DEFAULT_READY_TIMEOUT_S, VllmEngine
from lingyun.serving.health import HealthPolicy
from lingyun.serving.local import LocalSupervisor

MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
BRIEF_ARGS = {
    "tensor_parallel_size": 2,
    "gpu_memory_utilization": 0.9,
    "max_model_len": 8192,
    "enable_auto_tool_choice": True,
}
BRIEF_FLAGS = [
    "--tensor-parallel-size", "2",
    "--gpu-memory-utilization", "0.9",
    "--max-model-len", "8192",
    "--enable-auto-tool-choice",
]  # fmt: skip
BASE = ["serve", MODEL, "--host", "127.0.0.1", "--port", "8100", "--served-model-name", "qwen"]


def build(args: dict[str, Any], model: str | None = MODEL) -> list[str]:
    dep = DeploymentConfig(name="qwen", engine="vllm", model=model, args={"venv": "/v", **args})
    spec = VllmEngine().process(dep, "127.0.0.1", 8100)
    assert spec.argv[0] == "/v/bin/vllm"
    return spec.argv[1:]


@pytest.mark.parametrize(
    ("args", "flags"),
    [
        pytest.param({}, [], id="no-args"),
        pytest.param(BRIEF_ARGS, BRIEF_FLAGS, id="brief-example"),
        pytest.param({"enable_prefix_caching": False}, ["--no-enable-prefix-caching"], id="false"),
        pytest.param({"quantization": None}, [], id="none-left-out"),
        pytest.param(
            {"lora_modules": ["a=/x", "b=/y"]},
            ["--lora-modules", "a=/x", "--lora-modules", "b=/y"],
            id="list-repeats",
        ),
        pytest.param(
            {"speculative_config": {"method": "ngram", "num_speculative_tokens": 5}},
            ["--speculative-config", '{"method":"ngram","num_speculative_tokens":5}'],
            id="mapping-as-json",
        ),
        pytest.param({"--dtype": "half"}, ["--dtype", "half"], id="dashes-kept"),
        pytest.param(
            {"env": {"CUDA_VISIBLE_DEVICES": "0"}, "ready_timeout_s": 60}, [], id="lingyun-keys"
        ),
    ],
)
def test_command(args: dict[str, Any], flags: list[str]) -> None:
    assert build(args) == BASE + flags


def test_spec_fields() -> None:
    dep = DeploymentConfig(
        name="qwen",
        engine="vllm",
        model=MODEL,
        args={"venv": "/v", "env": {"CUDA_VISIBLE_DEVICES": "0,1"}, "ready_timeout_s": 60},
    )
    spec = VllmEngine().process(dep, "127.0.0.1", 8100)
    assert (spec.health_path, spec.model_id, spec.ready_timeout_s) == ("/health", "qwen", 60.0)
    assert spec.env == {"CUDA_VISIBLE_DEVICES": "0,1"}
    default = VllmEngine().process(dep.model_copy(update={"args": {}}), "127.0.0.1", 1)
    assert default.ready_timeout_s == DEFAULT_READY_TIMEOUT_S >= 600


def test_venv_from_args_then_env_then_default(monkeypatch: pytest.MonkeyPatch) -> None:
    dep = DeploymentConfig(name="q", engine="vllm", model=MODEL)
    monkeypatch.delenv("LINGYUN_VLLM_VENV", raising=False)
    assert VllmEngine().process(dep, "h", 1).argv[0] == str(Path(".venv-vllm/bin/vllm"))
    monkeypatch.setenv("LINGYUN_VLLM_VENV", "/opt/vllm")
    assert VllmEngine().process(dep, "h", 1).argv[0] == "/opt/vllm/bin/vllm"
    with_arg = dep.model_copy(update={"args": {"venv": "/srv/v"}})
    assert VllmEngine().process(with_arg, "h", 1).argv[0] == "/srv/v/bin/vllm"


@pytest.mark.parametrize(
    ("args", "model", "match"),
    [
        pytest.param({}, None, "'qwen'.*needs `model`", id="missing-model"),
        pytest.param({"port": 9}, MODEL, "args.port is set by Lingyun", id="reserved-port"),
        pytest.param({"api_key": "k"}, MODEL, "secret goes in VLLM_API_KEY", id="reserved-api-key"),
        pytest.param(
            {"served-model-name": "x"}, MODEL, "is set by Lingyun", id="reserved-served-name"
        ),
        pytest.param({"ready_timeout_s": 0}, MODEL, "ready_timeout_s", id="bad-timeout"),
        pytest.param({"env": ["A=1"]}, MODEL, "args.env must be a mapping", id="bad-env"),
        pytest.param({"x": [[1]]}, MODEL, "args.x has a value of type list", id="nested-list"),
    ],
)
def test_invalid_config_names_the_deployment(
    args: dict[str, Any], model: str | None, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        build(args, model=model)


def test_gateway_side_never_imports_vllm() -> None:
    import lingyun.engines.registry  # noqa: F401

    assert "vllm" not in sys.modules


STANDIN_VLLM = '''#!{python}
"""STAND-IN for `vllm serve` (not vLLM): records its argv, serves /health and /v1/models."""
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
with open({argv_file!r}, "w") as f:
    json.dump(sys.argv, f)
opts = dict(zip(sys.argv[3::2], sys.argv[4::2]))
name = opts["--served-model-name"]
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = {{"/health": {{}}, "/v1/models": {{"object": "list", "data": [{{"id": name}}]}}}}
        if self.path not in body:
            self.send_error(404)
            return
        data = json.dumps(body[self.path]).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
HTTPServer((opts["--host"], int(opts["--port"])), H).serve_forever()
'''


@pytest.mark.anyio
async def test_lifecycle_under_local_supervisor_with_standin_vllm(tmp_path: Path) -> None:
    venv = tmp_path / "venv-vllm"
    (venv / "bin").mkdir(parents=True)
    argv_file = tmp_path / "argv.json"
    exe = venv / "bin" / "vllm"
    exe.write_text(STANDIN_VLLM.format(python=sys.executable, argv_file=str(argv_file)))
    exe.chmod(0o755)
    dep = DeploymentConfig(
        name="qwen", engine="vllm", model=MODEL, args={"venv": str(venv), "max_model_len": 4096}
    )
    # The real registry: "vllm" resolves to VllmEngine.
    sup = LocalSupervisor(tmp_path / "data", policy=HealthPolicy(startup_interval_s=0.05))
    await sup.start([dep])
    try:
        assert await sup.wait_ready("qwen", 10.0)
        [replica] = sup.replicas("qwen")
        assert replica.model_id == "qwen"
        async with httpx.AsyncClient(trust_env=False) as client:
            models = (await client.get(f"{replica.base_url}/models")).json()
        assert models["data"][0]["id"] == "qwen"
        argv = json.loads(argv_file.read_text())
        port = replica.base_url.removesuffix("/v1").rsplit(":", 1)[1]
        assert argv[0] == str(exe)
        assert argv[1:] == [
            "serve", MODEL, "--host", "127.0.0.1", "--port", port,
            "--served-model-name", "qwen", "--max-model-len", "4096",
        ]  # fmt: skip
        [status] = sup.status()
        pid = status.replicas[0].pid
        assert pid is not None
    finally:
        await sup.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
