"""The ``llamacpp`` engine: the command it builds, and a real llama.cpp server started from it.

The GGUF is converted from the suite's tiny HF model (``tests/support/gguf.py``), so these
tests also prove the conversion: same token ids as the HF tokenizer, same logits as the HF
model. llama-cpp-python is required, not optional: ``make install`` installs it, and a
missing install fails collection here rather than skipping quietly.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import llama_cpp
import numpy as np
import openai
import pytest
from llama_cpp.server.cli import add_args_from_model, parse_model_from_args
from llama_cpp.server.settings import Settings

from lingyun.config import DeploymentConfig
from lingyun.engines import llamacpp
from lingyun.engines.llamacpp import ARG_KINDS, LlamaCppEngine
from lingyun.engines.registry import ENGINES
from tests.support.gguf import build_tiny_gguf
from tests.support.server import free_port

NAME = "tiny-llamacpp"
TEXTS = [
    "Hello, world! 你好，世界。",
    "  leading spaces\n\nnew lines\ttabs  \n",
    "数字 12345 and émojis 🚀🌍 ok?",
    "<|im_start|>user\n凌云 cloud<|im_end|>\n",
    "春眠不觉晓，处处闻啼鸟。don't I'll 'quoted' DON'T",
    "a\r\nb   c\n\n\n  d x=1+2; y = [3,4]!!",
]
MESSAGES: list[Any] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "你好，凌云! Write a poem about the sea."},
]


def make_dep(model: str | Path | None, **args: Any) -> DeploymentConfig:
    model = None if model is None else str(model)
    return DeploymentConfig(name=NAME, engine="llamacpp", model=model, args=args)


@pytest.fixture(scope="module")
def tiny_gguf(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_gguf(tiny_model_dir, tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.fixture(scope="module")
def hf_tokenizer(tiny_model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model_dir))


# --- the command ---------------------------------------------------------------------------


def test_registered_under_its_name() -> None:
    assert isinstance(ENGINES["llamacpp"], LlamaCppEngine)


D = "--interrupt_requests false"  # our default, first in every command


@pytest.mark.parametrize(
    ("args", "flags"),
    [
        pytest.param({}, D, id="defaults"),
        pytest.param(
            {"n_ctx": 4096, "n_threads": 4, "n_gpu_layers": -1, "chat_format": "chatml"},
            f"{D} --n_ctx 4096 --n_threads 4 --n_gpu_layers -1 --chat_format chatml",
            id="ints-and-strings",
        ),
        pytest.param(
            {"flash_attn": True, "use_mmap": False},
            f"{D} --flash_attn true --use_mmap false",
            id="bools-take-a-value",
        ),
        pytest.param(
            {"tensor_split": [0.5, 0.5], "rope_freq_base": 1e6},
            f"{D} --tensor_split 0.5 0.5 --rope_freq_base 1000000.0",
            id="list-and-float",
        ),
        pytest.param(
            {"chat_template_kwargs": {"enable_thinking": False}},
            f"""{D} --chat_template_kwargs '{{"enable_thinking": false}}'""",
            id="dict-as-json",
        ),
        pytest.param(
            {"interrupt_requests": True}, "--interrupt_requests true", id="default-overridden"
        ),
        pytest.param({"n_ctx": None}, D, id="none-is-unset"),
    ],
)
def test_command(tmp_path: Path, args: dict[str, Any], flags: str) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    spec = LlamaCppEngine().process(make_dep(model, **args), "127.0.0.1", 8123)
    assert spec.argv[:3] == [sys.executable, "-m", "llama_cpp.server"]
    assert spec.argv[3:11] == [
        "--model", str(model), "--host", "127.0.0.1", "--port", "8123", "--model_alias", NAME,
    ]  # fmt: skip
    assert spec.argv[11:] == shlex.split(flags)
    # The server lets HOST/PORT from the environment win over its flags: pin them.
    assert spec.env == {"HOST": "127.0.0.1", "PORT": "8123"}
    assert spec.health_path == "/openapi.json"
    assert spec.ready_timeout_s == 300.0
    assert spec.model_id == NAME


def test_lingyun_keys_are_not_flags(tmp_path: Path) -> None:
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    env = {"CUDA_VISIBLE_DEVICES": "1", "PORT": "1"}
    dep = make_dep(tmp_path / "m.gguf", env=env, ready_timeout_s=60, n_ctx=8)
    spec = LlamaCppEngine().process(dep, "127.0.0.1", 8123)
    assert spec.argv[11:] == ["--interrupt_requests", "false", "--n_ctx", "8"]
    assert spec.env == {"CUDA_VISIBLE_DEVICES": "1", "HOST": "127.0.0.1", "PORT": "8123"}
    assert spec.ready_timeout_s == 60.0


def test_relative_model_path_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "m.GGUF").write_bytes(b"GGUF")
    monkeypatch.chdir(tmp_path)
    spec = LlamaCppEngine().process(make_dep("m.GGUF"), "127.0.0.1", 8123)
    assert spec.argv[spec.argv.index("--model") + 1] == str(tmp_path / "m.GGUF")


@pytest.mark.parametrize(
    ("model", "args", "message"),
    [
        pytest.param(None, {}, "needs 'model'", id="no-model"),
        pytest.param("weights.bin", {}, "must be a .gguf file", id="not-gguf"),
        pytest.param("missing.gguf", {}, "does not exist", id="missing-file"),
        pytest.param("dir.gguf", {}, "does not exist", id="directory"),
        pytest.param("m.gguf", {"n_ctxx": 1}, "unknown llamacpp arg 'n_ctxx'", id="typo"),
        pytest.param("m.gguf", {"port": 1}, "unknown llamacpp arg 'port'", id="owned-by-us"),
        pytest.param("m.gguf", {"n_ctx": "4096"}, "'n_ctx' must be an integer", id="str-int"),
        pytest.param("m.gguf", {"n_ctx": True}, "'n_ctx' must be an integer", id="bool-int"),
        pytest.param("m.gguf", {"flash_attn": "yes"}, "must be true or false", id="str-bool"),
        pytest.param("m.gguf", {"tensor_split": []}, "non-empty list", id="empty-list"),
        pytest.param("m.gguf", {"chat_template_kwargs": "x"}, "a mapping", id="str-dict"),
        pytest.param("m.gguf", {"env": "A=1"}, "args.env must be a mapping", id="env-str"),
        pytest.param("m.gguf", {"ready_timeout_s": 0}, "must be > 0", id="zero-timeout"),
    ],
)
def test_bad_deployment_is_a_value_error(
    tmp_path: Path, model: str | None, args: dict[str, Any], message: str
) -> None:
    (tmp_path / "weights.bin").write_bytes(b"x")
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    (tmp_path / "dir.gguf").mkdir()
    with pytest.raises(ValueError, match=message) as info:
        LlamaCppEngine().process(make_dep(model and tmp_path / model, **args), "h", 1)
    assert NAME in str(info.value)


def test_missing_llama_cpp_gives_the_install_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llama_cpp" else real(name, *a),
    )
    with pytest.raises(ValueError, match=r"pip install 'lingyun\[llamacpp\]'"):
        LlamaCppEngine().process(make_dep(tmp_path / "m.gguf"), "h", 1)


# Values that the server's own validation accepts, for args whose kind alone is not enough.
_SAMPLES: dict[str, Any] = {"cache_type": "disk", "kv_overrides": ["x=1"], "tensor_split": [1.0]}
_KIND_SAMPLES: dict[str, Any] = {"int": 1, "float": 1.5, "str": "x", "bool": True, "json": {}}


def test_every_mapped_arg_is_a_server_flag_that_parses() -> None:
    """Guards ARG_KINDS against llama-cpp-python upgrades: the installed server's own parser
    must accept each flag in the form we write it, and give back the value we meant."""
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_args_from_model(parser, Settings)
    args = {k: _SAMPLES.get(k, _KIND_SAMPLES.get(kind)) for k, kind in ARG_KINDS.items()}
    namespace = parser.parse_args(["--model", "m.gguf", *llamacpp.args_to_flags(args)])
    settings = parse_model_from_args(Settings, namespace)
    for key, value in args.items():
        assert getattr(settings, key) == value, key


# --- the GGUF ------------------------------------------------------------------------------


def test_gguf_tokenizes_like_the_hf_tokenizer(tiny_gguf: Path, hf_tokenizer: Any) -> None:
    # verbose=True: the quiet mode leaks /dev/null handles (ResourceWarning, an error here).
    vocab = llama_cpp.Llama(str(tiny_gguf), vocab_only=True, verbose=True)
    for text in TEXTS:
        ids = vocab.tokenize(text.encode(), add_bos=False, special=True)
        assert ids == hf_tokenizer(text, add_special_tokens=False).input_ids, text
        assert vocab.detokenize(ids, special=True).decode() == text
    vocab.close()


def test_gguf_computes_the_hf_logits(
    tiny_gguf: Path, tiny_model_dir: Path, hf_tokenizer: Any
) -> None:
    """Catches a wrong tensor mapping, which would still load and still produce text."""
    import torch
    from transformers import AutoModelForCausalLM

    ids = hf_tokenizer(TEXTS[0] + TEXTS[4], add_special_tokens=False).input_ids
    model = llama_cpp.Llama(str(tiny_gguf), n_ctx=64, logits_all=True, n_threads=1, verbose=True)
    model.eval(ids)
    ours = np.array(model.scores[: len(ids)])
    model.close()
    hf = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    with torch.no_grad():
        theirs = hf(torch.tensor([ids])).logits[0].numpy()
    assert (ours.argmax(-1) == theirs.argmax(-1)).all()
    np.testing.assert_allclose(ours, theirs, atol=0.1, rtol=0)


# --- a real server from the engine's command -----------------------------------------------


@dataclass
class Server:
    base_url: str
    health_path: str
    client: openai.OpenAI


@pytest.fixture(scope="module")
def server(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    port = free_port()
    dep = make_dep(tiny_gguf, n_ctx=512, n_threads=1)
    spec = LlamaCppEngine().process(dep, "127.0.0.1", port)
    log_path = tmp_path_factory.mktemp("llamacpp") / "server.log"
    base_url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            spec.argv, env={**os.environ, **spec.env}, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 30
        while not _answers_200(base_url + spec.health_path):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"llama.cpp server did not start:\n{log_path.read_text()}")
            time.sleep(0.1)
        with openai.OpenAI(
            base_url=f"{base_url}/v1", api_key="-", max_retries=0, timeout=30
        ) as client:
            yield Server(base_url, spec.health_path, client)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _answers_200(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.slow
def test_server_serves_the_deployment_name(server: Server) -> None:
    models = server.client.models.list()
    assert [m.id for m in models.data] == [NAME]


@pytest.mark.slow
def test_chat(server: Server, hf_tokenizer: Any) -> None:
    reply = server.client.chat.completions.create(
        model=NAME, messages=MESSAGES, max_tokens=12, temperature=0
    )
    assert reply.model == NAME
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content
    assert reply.choices[0].finish_reason in ("length", "stop")
    # The GGUF's chat template renders the prompt exactly as the HF one does.
    prompt = hf_tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == len(
        hf_tokenizer(prompt, add_special_tokens=False).input_ids
    )
    assert reply.usage.completion_tokens >= 1


def _is_subsequence(part: str, whole: str) -> bool:
    rest = iter(whole)
    return all(ch in rest for ch in part)


def assert_stream_matches(streamed: str, whole: str) -> None:
    """llama-cpp-python's streams lose characters whose UTF-8 bytes are split across tokens
    (abetlen/llama-cpp-python#372, open): what arrives is the whole text minus some
    non-ASCII characters, never anything extra."""
    assert _is_subsequence(streamed, whole), (streamed, whole)
    missing = list(whole)
    for ch in streamed:
        missing.remove(ch)
    assert all(ord(ch) > 0x7F for ch in missing), missing


@pytest.mark.slow
def test_chat_stream_carries_no_usage(server: Server) -> None:
    """llama-cpp-python ignores ``stream_options``: its streams never carry usage, so the
    gateway has to count tokens of llama.cpp streams itself. If this starts failing because
    usage appears, the gateway's workaround can go."""
    kwargs: dict[str, Any] = {"model": NAME, "messages": MESSAGES, "max_tokens": 40}
    whole = server.client.chat.completions.create(**kwargs, temperature=0)
    chunks = list(
        server.client.chat.completions.create(
            **kwargs, temperature=0, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.model == NAME for c in chunks)
    assert_stream_matches(_text(chunks), whole.choices[0].message.content or "")
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    assert all(c.usage is None for c in chunks)


def _text(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


@pytest.mark.slow
def test_completions(server: Server, hf_tokenizer: Any) -> None:
    prompt = "The quick brown fox 跳过"
    kwargs: dict[str, Any] = {"model": NAME, "prompt": prompt, "max_tokens": 40}
    whole = server.client.completions.create(**kwargs, temperature=0)
    assert whole.model == NAME
    assert whole.choices[0].text
    assert whole.usage is not None
    assert whole.usage.prompt_tokens == len(hf_tokenizer(prompt).input_ids)
    stream = server.client.completions.create(**kwargs, temperature=0, stream=True)
    assert_stream_matches("".join(c.choices[0].text for c in stream), whole.choices[0].text)


@pytest.mark.slow
def test_concurrent_requests_neither_truncate_nor_block_health(
    server: Server, hf_tokenizer: Any
) -> None:
    """With the server's default ``interrupt_requests`` a second request cuts the first
    stream short (``[DONE]`` without a finish_reason); and a probe of ``/v1/models`` would
    wait for the whole generation, long enough to fail health checks under load."""
    kwargs: dict[str, Any] = {"model": NAME, "messages": MESSAGES, "temperature": 0}
    # About a second of generation (no early end-of-turn), so that what follows lands in
    # the middle of it. The call returns at the response headers: the stream's generation
    # has taken the model lock by then.
    no_eos = {str(hf_tokenizer.eos_token_id): -100}
    stream = server.client.chat.completions.create(
        **kwargs, max_tokens=150, logit_bias=no_eos, stream=True
    )
    started = time.monotonic()
    assert httpx.get(server.base_url + server.health_path, timeout=5).status_code == 200
    probe_s = time.monotonic() - started

    other: list[str | None] = []
    waiter = threading.Thread(
        target=lambda: other.append(
            server.client.chat.completions.create(**kwargs, max_tokens=4).choices[0].finish_reason
        )
    )
    waiter.start()
    chunks = list(stream)
    stream_s = time.monotonic() - started
    waiter.join(timeout=30)

    # Relative, so that a loaded CI machine slows both alike; /v1/models takes all of it.
    assert probe_s < stream_s / 2, (probe_s, stream_s)
    assert chunks[-1].choices[0].finish_reason == "length", "the stream was cut short"
    assert other and other[0] in ("length", "stop")
