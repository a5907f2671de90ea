"""A tiny random-weight chat model built offline, for tests of engines that load HF models.

The tokenizer is a byte-level BPE trained on mixed Chinese and English text, small enough
that many Chinese characters are split across tokens: that exercises incremental
detokenization (a token may end in the middle of a UTF-8 character). The model is a
2-layer Qwen2 with a large ``initializer_range`` so greedy output is varied text rather than
one repeated token. Everything is seeded: the same call builds the same model.

Other suites (llama.cpp GGUF conversion) call :func:`build_tiny_chat_model`; keep its signature.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
EOS_TOKEN = "<|im_end|>"
PAD_TOKEN = "<|endoftext|>"
VOCAB_SIZE = 600
SEED = 1234

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_CORPUS_LINES = [
    "Hello, how are you today? I am fine, thank you.",
    "The quick brown fox jumps over the lazy dog.",
    "Lingyun is a self-hosted AI cloud that serves models to many tenants.",
    "Please write a short poem about the sea and the sky.",
    "What is the capital of France? The capital of France is Paris.",
    "Streaming responses must join to the same text as non-streaming ones.",
    "你好，今天过得怎么样？我很好，谢谢你。",
    "凌云是一个自托管的人工智能云平台，为多个租户提供模型服务。",
    "请写一首关于大海和天空的短诗。",
    "中国的首都是北京。北京是一座历史悠久的城市。",
    "机器学习和深度学习正在改变世界。",
    "我们在测试增量解码，每个汉字都是三个字节。",
    "天气很好，我们去公园散步吧。",
    "Mixed text: 你好 world, 模型 model, 数据 data, 云 cloud.",
    "Numbers 0 1 2 3 4 5 6 7 8 9 and symbols !?.,;:()[]{}",
    "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。",
    "床前明月光，疑是地上霜。举头望明月，低头思故乡。",
    "The tokenizer is trained on both Chinese and English sentences.",
]


def _is_complete(path: Path) -> bool:
    names = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
    return all((path / n).is_file() for n in names)


def _build_tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS_LINES * 4, trainer=trainer)
    tokenizer_cls: Any = PreTrainedTokenizerFast  # untyped in transformers
    fast = tokenizer_cls(
        tokenizer_object=tok,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=None,
        bos_token=None,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_chat_model(dest: Path) -> Path:
    """Build (or reuse) a tiny chat model directory at ``dest`` and return it.

    No hub access. If ``dest`` already holds a complete model it is returned as is, so a
    session-scoped cache directory makes repeated calls free. Built in a temporary sibling
    directory and renamed into place, so a concurrent caller never sees half a model.
    """
    dest = Path(dest)
    if _is_complete(dest):
        return dest

    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = _build_tokenizer()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        tokenizer.save_pretrained(str(tmp))
        eos_id = tokenizer.convert_tokens_to_ids(EOS_TOKEN)
        pad_id = tokenizer.convert_tokens_to_ids(PAD_TOKEN)
        config = Qwen2Config(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=len(tokenizer),
            max_position_embeddings=2048,
            initializer_range=0.5,
            tie_word_embeddings=True,
            bos_token_id=pad_id,
            eos_token_id=eos_id,
            pad_token_id=pad_id,
        )
        # Seed only a private generator state: do not disturb the caller's global RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(SEED)
            model = Qwen2ForCausalLM(config)
        model.generation_config.eos_token_id = eos_id
        model.generation_config.pad_token_id = pad_id
        model.save_pretrained(str(tmp))
        if _is_complete(dest):  # another process finished first
            return dest
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest
