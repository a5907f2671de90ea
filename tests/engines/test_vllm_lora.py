"""The vLLM engine serves a deployment's LoRA adapters: the flags and env it passes."""

from __future__ import annotations

from lingyun.config import DeploymentConfig
from lingyun.engines.vllm import VllmEngine


def test_adapters_become_lora_modules_with_runtime_loading() -> None:
    dep = DeploymentConfig.model_validate({
        "name": "qwen", "engine": "vllm", "model": "Qwen/Qwen2.5-0.5B",
        "adapters": [{"name": "sql", "path": "/a/sql"}, {"name": "law", "path": "/a/law"}],
    })  # fmt: skip
    spec = VllmEngine().process(dep, "127.0.0.1", 9000)
    argv = spec.argv
    assert "--enable-lora" in argv
    at = argv.index("--lora-modules")
    assert argv[at + 1 : at + 3] == ["sql=/a/sql", "law=/a/law"]
    assert argv[argv.index("--max-loras") + 1] == "2"
    assert spec.env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"


def test_no_adapters_no_lora_flags() -> None:
    dep = DeploymentConfig(name="qwen", engine="vllm", model="Qwen/Qwen2.5-0.5B")
    assert "--enable-lora" not in VllmEngine().process(dep, "127.0.0.1", 9000).argv
