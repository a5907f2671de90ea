"""Write a GGUF file from the tiny HF Qwen2 model, with the ``gguf`` package and nothing else.

Why not llama.cpp's ``convert_hf_to_gguf.py``: it ships only in the llama-cpp-python sdist
(a 77 MB download on every CI run) and refuses a freshly trained tokenizer unless its
pre-tokenizer detection is patched. The tiny model needs a dozen tensors and a handful of
keys, so writing them here is shorter and has no moving parts.

What makes the result equivalent to the HF model:

* Architecture ``qwen2``: same tensor names as llama.cpp's converter, no Q/K permutation
  (that is a ``llama``-arch quirk), F32 everywhere (under 0.5 MB). A tied
  ``lm_head`` is simply left out; llama.cpp's qwen2 loader then reuses ``token_embd``.
* Tokenizer ``gpt2`` (byte-level BPE: tokens, merges) with pre-tokenizer ``qwen2``, not
  ``gpt-2``: transformers 5 loads the tokenizer of any ``qwen2`` model as ``Qwen2Tokenizer``,
  which swaps the trained ``ByteLevel`` regex of ``tokenizer.json`` for Qwen2's split regex
  (one token per digit, ...). That is what the HF engine serves, and llama.cpp's ``qwen2``
  pre-tokenizer is the same regex; ``gpt-2`` would differ on e.g. ``" 12345"``.
* ``eos`` is the chat end token, because llama-cpp-python stops chat completions on the GGUF
  eos id only; ``add_bos_token`` is false, as for Qwen.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import gguf
import numpy as np
from safetensors.numpy import load_file

# HF parameter name (after "model.layers.N.") -> GGUF tensor name (after "blk.N.").
_LAYER_TENSORS = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}
_GLOBAL_TENSORS = {
    "model.embed_tokens": "token_embd",
    "model.norm": "output_norm",
    "lm_head": "output",
}


def build_tiny_gguf(hf_model_dir: Path, dest: Path) -> Path:
    """Convert the HF Qwen2 model in ``hf_model_dir`` to an F32 GGUF at ``dest``; return it.

    Reuses ``dest`` if it exists (callers key the path by the model), and writes through a
    temporary file so a concurrent or interrupted run never leaves half a file behind.
    """
    hf_model_dir, dest = Path(hf_model_dir), Path(dest)
    if dest.is_file():
        return dest
    config = json.loads((hf_model_dir / "config.json").read_text())
    if config.get("model_type") != "qwen2":
        raise ValueError(f"only qwen2 models are supported, got {config.get('model_type')!r}")

    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer = gguf.GGUFWriter(tmp, "qwen2")
        _add_hparams(writer, config, hf_model_dir.name)
        _add_tokenizer(writer, hf_model_dir, config)
        for name, array in _tensors(hf_model_dir):
            writer.add_tensor(name, array)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _add_hparams(writer: gguf.GGUFWriter, config: dict[str, Any], name: str) -> None:
    # transformers 5 moved rope_theta into rope_parameters; 4.x kept it at the top level.
    rope = config.get("rope_parameters") or {}
    rope_theta = rope.get("rope_theta", config.get("rope_theta", 10000.0))
    writer.add_name(name)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_head_count_kv(config.get("num_key_value_heads", config["num_attention_heads"]))
    writer.add_rope_freq_base(float(rope_theta))
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)


def _tensors(hf_model_dir: Path) -> list[tuple[str, np.ndarray[Any, Any]]]:
    weights: dict[str, np.ndarray[Any, Any]] = {}
    for path in sorted(hf_model_dir.glob("*.safetensors")):
        weights.update(load_file(path))
    out = []
    for hf_name, array in weights.items():
        stem, _, kind = hf_name.rpartition(".")  # kind: "weight" or "bias"
        if stem in _GLOBAL_TENSORS:
            name = _GLOBAL_TENSORS[stem]
        elif stem.startswith("model.layers."):
            index, _, rest = stem.removeprefix("model.layers.").partition(".")
            if rest not in _LAYER_TENSORS:
                raise ValueError(f"unexpected tensor {hf_name}")
            name = f"blk.{index}.{_LAYER_TENSORS[rest]}"
        else:
            raise ValueError(f"unexpected tensor {hf_name}")
        out.append((f"{name}.{kind}", np.ascontiguousarray(array, dtype=np.float32)))
    return out


def _add_tokenizer(writer: gguf.GGUFWriter, hf_model_dir: Path, config: dict[str, Any]) -> None:
    tokenizer = json.loads((hf_model_dir / "tokenizer.json").read_text())
    decoder = tokenizer.get("decoder") or {}
    if tokenizer["model"]["type"] != "BPE" or decoder.get("type") != "ByteLevel":
        raise ValueError("only a byte-level BPE tokenizer (GPT-2/Qwen2 style) can be converted")

    by_id: dict[int, str] = {i: t for t, i in tokenizer["model"]["vocab"].items()}
    special = {t["id"]: t["content"] for t in tokenizer.get("added_tokens", []) if t["special"]}
    by_id.update(special)
    vocab_size = max(config["vocab_size"], max(by_id) + 1)
    tokens, types = [], []
    for i in range(vocab_size):
        if i in special:
            tokens.append(special[i])
            types.append(gguf.TokenType.CONTROL)
        elif i in by_id:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.NORMAL)
        else:  # embedding rows beyond the tokenizer, as llama.cpp's converter pads them
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
    # tokenizers >= 0.20 stores merges as pairs; older files as "a b" strings.
    merges = [m if isinstance(m, str) else " ".join(m) for m in tokenizer["model"]["merges"]]

    tok_config = json.loads((hf_model_dir / "tokenizer_config.json").read_text())
    ids = {t: i for i, t in by_id.items()}
    eos = tok_config.get("eos_token")
    pad = tok_config.get("pad_token")
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")  # see the module docstring
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    if eos in ids:
        writer.add_eos_token_id(ids[eos])
    if pad in ids:
        writer.add_pad_token_id(ids[pad])
    if config.get("bos_token_id") is not None:
        writer.add_bos_token_id(config["bos_token_id"])
    writer.add_add_bos_token(False)
    template = _chat_template(hf_model_dir, tok_config)
    if template:
        writer.add_chat_template(template)


def _chat_template(hf_model_dir: Path, tok_config: dict[str, Any]) -> str | None:
    # transformers 5 saves the template beside the config; 4.x inside tokenizer_config.json.
    jinja = hf_model_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text()
    template = tok_config.get("chat_template")
    return template if isinstance(template, str) else None
