"""A real LoRA adapter for the tiny Qwen2 (tests/support/tiny_model.py), built offline, and
PEFT's own greedy answer with it: the reference an engine serving the adapter must match.

``init_lora_weights=False`` gives random A and B (PEFT's default init makes B zero, a no-op
until trained), so the adapter visibly changes what the model says.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def _quiet() -> Iterator[None]:
    # PEFT 0.21 reads transformers' deprecated ``is_gradient_checkpointing`` (a FutureWarning
    # that the suite would turn into an error); not ours to fix.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


def build_lora_adapter(base_dir: Path, dest: Path, seed: int = 1) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    if (dest / "adapter_config.json").is_file():
        return dest
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    config = LoraConfig(
        r=8, lora_alpha=32, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    with torch.random.fork_rng(devices=[]), _quiet():
        torch.manual_seed(seed)
        model = get_peft_model(base, config)
    model.save_pretrained(str(dest))
    return dest


def peft_greedy(
    base_dir: Path, adapter_dir: Path | None, messages: list[dict[str, Any]], max_tokens: int
) -> str:
    """The chat answer PEFT (or plain transformers, without an adapter) gives greedily."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok: Any = AutoTokenizer.from_pretrained(base_dir)
    model: Any = AutoModelForCausalLM.from_pretrained(base_dir)
    if adapter_dir is not None:
        with _quiet():
            model = PeftModel.from_pretrained(model, str(adapter_dir))
    model.eval()
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
    with torch.inference_mode():
        out = model.generate(input_ids=ids, max_new_tokens=max_tokens, do_sample=False)
    new = [t for t in out[0, ids.shape[1] :].tolist() if t != tok.eos_token_id]
    return str(tok.decode(new, skip_special_tokens=True))  # as the worker streams text
