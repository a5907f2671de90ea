"""``python -m benchmarks.gpu``: tokens/s and TTFT of a Qwen2.5-0.5B-shaped model on a GPU.

Builds a random-weight model with Qwen2.5-0.5B's shape from its config alone (no download):
24 layers, hidden 896, 14 query / 2 key-value heads, MLP 4864, vocabulary 151,936, tied
embeddings. Its tokenizer is a word-level vocabulary of the same size built in memory, so
every token the random model emits decodes to text. The model is served by the
``transformers`` engine (``lingyun worker --backend transformers``), and the same replica is
measured at 1, 8 and 32 concurrent streams straight and through ``lingyun serve`` (key auth
and metering on), in one run. Results: ``benchmarks/results/gpu-<device>.json``.

``--device cpu --tiny`` runs the same script with the tiny test model on CPU, to check the
script itself where no GPU is at hand.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.gateway.procs import Proc, free_port, stop_on_sigterm
from benchmarks.gateway.targets import start_lingyun

RESULTS = Path(__file__).resolve().parents[1] / "results"
SERVED = "qwen2.5-0.5b-shape"
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "[UNK]"]
# Qwen/Qwen2.5-0.5B-Instruct's config.json, less what only matters for real weights.
QWEN25_05B = {
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "vocab_size": 151936,
    "max_position_embeddings": 32768,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
}
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def _word_tokenizer(vocab_size: int) -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    vocab.update({f"w{i}": i for i in range(len(SPECIALS), vocab_size)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(SPECIALS[:3])
    cls: Any = PreTrainedTokenizerFast
    fast = cls(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
               unk_token="[UNK]")  # fmt: skip
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(dest: Path, tiny: bool) -> Path:
    """A model directory: Qwen2.5-0.5B's shape with random weights, or the tiny test model."""
    if tiny:
        from tests.support.tiny_model import build_tiny_chat_model

        return build_tiny_chat_model(dest)
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = _word_tokenizer(int(QWEN25_05B["vocab_size"]))
    tokenizer.save_pretrained(str(dest))
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = Qwen2Config(**QWEN25_05B, bos_token_id=pad, eos_token_id=eos, pad_token_id=pad)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = pad
    model.save_pretrained(str(dest))
    return dest


async def _stream(
    session: aiohttp.ClientSession, url: str, key: str, model: str, max_tokens: int
) -> dict[str, float]:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Write a long story about the sea."}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start = time.perf_counter()
    first = last = None
    tokens = 0
    async with session.post(
        url + "/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
    ) as resp:
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {(await resp.read())[:300]!r}")
        async for line in resp.content:
            if not line.startswith(b"data: {"):
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(f"error event: {chunk['error']}")
            if chunk.get("usage"):
                tokens = int(chunk["usage"]["completion_tokens"])
            if any((c.get("delta") or {}).get("content") for c in chunk.get("choices") or []):
                last = time.perf_counter()
                if first is None:
                    first = last
    end = time.perf_counter()
    ttft = (first or end) - start
    decode = (last or end) - (first or start)
    return {"ttft_s": ttft, "total_s": end - start, "tokens": tokens, "decode_s": decode}


async def measure(
    url: str, key: str, model: str, concurrency: int, rounds: int, max_tokens: int
) -> dict[str, Any]:
    """``concurrency`` streams, each sending ``rounds`` requests back to back."""
    results: list[dict[str, float]] = []
    errors: list[str] = []

    async def worker(session: aiohttp.ClientSession) -> None:
        for _ in range(rounds):
            try:
                results.append(await _stream(session, url, key, model, max_tokens))
            except Exception as exc:  # counted, not fatal
                errors.append(f"{type(exc).__name__}: {exc}"[:300])

    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    tokens = sum(r["tokens"] for r in results)
    ttfts = sorted(r["ttft_s"] * 1000 for r in results)
    per_stream = [
        (r["tokens"] - 1) / r["decode_s"] for r in results if r["decode_s"] > 0 and r["tokens"] > 1
    ]
    return {
        "concurrency": concurrency,
        "requests": len(results),
        "errors": len(errors),
        "error_samples": errors[:3],
        "wall_s": round(wall, 3),
        "completion_tokens": tokens,
        "tokens_per_s": round(tokens / wall, 2) if wall else 0.0,
        "ttft_p50_ms": round(statistics.median(ttfts), 2) if ttfts else None,
        "ttft_max_ms": round(ttfts[-1], 2) if ttfts else None,
        "per_stream_tokens_per_s_p50": round(statistics.median(per_stream), 2)
        if per_stream
        else None,
    }


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    p.add_argument("--dtype", default=None, help="default: bfloat16 on cuda, float32 on cpu")
    p.add_argument("--tiny", action="store_true", help="the tiny test model (check on CPU)")
    p.add_argument("--levels", default="1,8,32")
    p.add_argument("--rounds", type=int, default=2, help="requests per stream and level")
    p.add_argument("--max-tokens", type=int, default=None, help="default 128 (tiny: 16)")
    p.add_argument("--model-dir", type=Path, default=None, help="reuse a built model here")
    p.add_argument("--out", type=Path, default=None)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    stop_on_sigterm()
    args = parse(argv)
    dtype = args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")
    max_tokens = args.max_tokens or (16 if args.tiny else 128)
    levels = [int(x) for x in args.levels.split(",")]
    name = args.device.split(":")[0] + ("-tiny" if args.tiny else "")
    out = args.out or RESULTS / f"gpu-{name}.json"
    procs: list[Proc] = []
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="lingyun-gpu-") as tmp:
        work = Path(tmp)
        try:
            t0 = time.perf_counter()
            model_dir = args.model_dir or work / "model"
            if not (model_dir / "config.json").is_file():
                build_model(model_dir, args.tiny)
            built_s = time.perf_counter() - t0
            port = free_port()
            engine_args = {"device": args.device, "dtype": dtype, "max_batch_size": 32}
            cmd = [
                sys.executable, "-m", "lingyun.cli.main", "worker", "--backend", "transformers",
                "--model", str(model_dir), "--port", str(port), "--served-model-name", SERVED,
                "--args", json.dumps(engine_args), "--log-level", "warning",
            ]  # fmt: skip
            replica = Proc("replica", cmd, work / "replica.log", None)
            procs.append(replica)
            replica.wait_http(f"http://127.0.0.1:{port}/health", 600)
            direct_url = f"http://127.0.0.1:{port}/v1"
            gateway = start_lingyun({SERVED: direct_url}, work, None, served=SERVED)
            assert gateway.proc is not None
            procs.append(gateway.proc)
            targets = {"direct": (direct_url, "none"), "lingyun": (gateway.base_url, gateway.key)}
            # Warm-up: CUDA kernels, allocator, both connection pools.
            for url, key in targets.values():
                asyncio.run(measure(url, key, SERVED, 2, 1, 4))
            for conc in levels:
                for name, (url, key) in targets.items():
                    r = asyncio.run(measure(url, key, SERVED, conc, args.rounds, max_tokens))
                    r["target"] = name
                    runs.append(r)
                    print(
                        f"c={conc:<3} {name:8} {r['tokens_per_s']:9.1f} tok/s  TTFT p50 "
                        f"{r['ttft_p50_ms']} ms  errors {r['errors']}",
                        flush=True,
                    )
        finally:
            for proc in reversed(procs):
                proc.stop()
    summary = []
    for conc in levels:
        d = next(r for r in runs if r["concurrency"] == conc and r["target"] == "direct")
        g = next(r for r in runs if r["concurrency"] == conc and r["target"] == "lingyun")
        summary.append(
            {
                "concurrency": conc,
                "lingyun_over_direct_tokens_per_s": round(g["tokens_per_s"] / d["tokens_per_s"], 4)
                if d["tokens_per_s"]
                else None,
                "added_ttft_p50_ms": round(g["ttft_p50_ms"] - d["ttft_p50_ms"], 2)
                if g["ttft_p50_ms"] is not None and d["ttft_p50_ms"] is not None
                else None,
            }
        )
    doc = {
        "meta": {
            "device": args.device,
            "dtype": dtype,
            "tiny": args.tiny,
            "model": "tiny test model" if args.tiny else "Qwen2.5-0.5B shape, random weights",
            "max_tokens": max_tokens,
            "rounds": args.rounds,
            "model_build_s": round(built_s, 1),
            "python": platform.python_version(),
            "target": "through Lingyun >= 0.98 x the replica's own tokens/s",
        },
        "summary": summary,
        "runs": runs,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1))
    for s in summary:
        print(json.dumps(s))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
