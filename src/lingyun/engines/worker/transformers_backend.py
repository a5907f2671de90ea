"""The transformers backend: a local Hugging Face causal LM, on CPU or CUDA.

For small models and tests, and for GPUs without vLLM. The model runs in one thread owned by
:class:`~lingyun.engines.worker.scheduler.BatchScheduler`, which batches concurrent requests
step by step; the event loop only moves deltas. torch and transformers are imported when this
backend is created, never by the gateway.

Arguments (``--args`` JSON): ``device`` (default ``cuda`` when available, else ``cpu``),
``dtype`` (``auto``, ``float32``, ``float16``, ``bfloat16``; default float32 on CPU, the
checkpoint's on CUDA), ``max_batch_size`` (32), ``max_tokens`` (1024: the output limit when a
request sets none), ``trust_remote_code`` (false), ``adapters`` (``{name: PEFT adapter dir}``,
set by the engine from the deployment's ``adapters:``; see ``lora.py``) and ``max_loras`` (4:
adapters kept loaded at once).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

from lingyun.engines.worker.backend import Delta, Prompt, SamplingParams, arg
from lingyun.engines.worker.detokenize import IncrementalDetokenizer
from lingyun.engines.worker.lora import LoraAdapters
from lingyun.errors import InvalidRequestError
from lingyun.protocol.wire import ChatMessage

logger = logging.getLogger(__name__)

INSTALL_HINT = "The transformers backend needs: pip install 'lingyun[transformers]'"


def _context_error(limit: int, prompt: int, wanted: int | None) -> InvalidRequestError:
    detail = f"{prompt} in the prompt" + (f", {wanted} requested for output" if wanted else "")
    return InvalidRequestError(
        f"This model's maximum context length is {limit} tokens ({detail}). "
        "Shorten the prompt or lower max_tokens.",
        param="messages",
        code="context_length_exceeded",
    )


class TransformersBackend:
    """A causal LM with its chat template; see the module docstring."""

    name = "transformers"
    features: frozenset[str] = frozenset()

    def __init__(self, model: str, args: dict[str, Any]) -> None:
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:
            raise ValueError(f"{INSTALL_HINT} ({exc})") from None

        from lingyun.engines.worker.scheduler import BatchScheduler

        device_name = arg(args, "device", str, None)
        if device_name is None:
            device_name = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device_name)
        dtype_name = arg(args, "dtype", str, None)
        if dtype_name is None:
            dtype_name = "float32" if self.device.type == "cpu" else "auto"
        dtypes = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
        if dtype_name != "auto" and dtype_name not in dtypes:
            raise ValueError(f"dtype must be auto or one of {sorted(dtypes)}, not {dtype_name!r}.")
        dtype: Any = dtypes.get(dtype_name, "auto")
        remote = bool(arg(args, "trust_remote_code", bool, False))
        self.default_max_tokens = int(arg(args, "max_tokens", int, 1024))
        max_batch = int(arg(args, "max_batch_size", int, 32))
        adapter_paths = arg(args, "adapters", dict, {})
        self.lora = (
            LoraAdapters(adapter_paths, int(arg(args, "max_loras", int, 4)))
            if adapter_paths
            else None
        )
        self.adapters: dict[str, str] = dict(adapter_paths)
        if not Path(model).is_dir():
            raise ValueError(f"--model must be a local Hugging Face model directory: {model!r}")

        logger.info("loading %s on %s (%s)", model, self.device, dtype_name)
        self.tokenizer: Any = AutoTokenizer.from_pretrained(model, trust_remote_code=remote)
        self.model: Any = cast(
            Any, AutoModelForCausalLM.from_pretrained(model, dtype=dtype, trust_remote_code=remote)
        )
        self.model.to(self.device).eval()
        config = self.model.config
        self.context_length = int(
            getattr(config, "max_position_embeddings", None)
            or min(self.tokenizer.model_max_length, 1 << 20)
        )
        self.vocab_size = int(config.vocab_size)
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            eos_ids.add(int(self.tokenizer.eos_token_id))
        if not self._cache_is_batchable():
            logger.warning("this model's KV cache cannot be batched; serving one at a time")
            max_batch = 1
        self.scheduler = BatchScheduler(
            self.model, self.device, eos_ids, max_batch, self.lora, encode=self._encode
        )
        self.scheduler.start()

    def _cache_is_batchable(self) -> bool:
        """Our batching edits plain dynamic KV caches; anything else runs unbatched."""
        import torch
        from transformers.cache_utils import DynamicLayer

        from lingyun.engines.worker.scheduler import output_cache

        with torch.inference_mode():
            ids = torch.tensor([[0]], device=self.device)
            out = self.model(input_ids=ids, use_cache=True, logits_to_keep=1)
        layers = getattr(output_cache(out), "layers", None)
        if not layers:
            return False
        return all(type(layer) is DynamicLayer for layer in layers)

    def health(self) -> dict[str, Any]:
        lora = self.lora.stats() if self.lora is not None else {}
        return {"device": str(self.device), **self.scheduler.stats(), **lora}

    async def aclose(self) -> None:
        self.scheduler.stop()

    def chat_prompt(self, messages: list[ChatMessage]) -> Prompt:
        if not getattr(self.tokenizer, "chat_template", None):
            raise InvalidRequestError(
                "This model has no chat template; use /v1/completions.",
                code="model_not_supported",
            )
        # Chat templates predate the "developer" role; it means "system" to them.
        rendered = [
            {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
            for m in messages
        ]
        try:
            text = self.tokenizer.apply_chat_template(
                rendered, tokenize=False, add_generation_prompt=True
            )
        except Exception as exc:  # jinja raises for conversations the template rejects
            raise InvalidRequestError(
                f"The model's chat template rejected these messages: {exc}", param="messages"
            ) from None
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return Prompt(text, list(ids), len(ids))

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def continued(self, prompt: Prompt, reply: str) -> Prompt:
        """``prompt`` with ``reply`` to continue: resumed from the tokens that produced it,
        found at prefill (continuation.py); counted here by the tokenizer's own split."""
        return replace(
            prompt, continues=reply, num_tokens=prompt.num_tokens + len(self._encode(reply))
        )

    def completion_prompt(self, prompt: str | list[int]) -> Prompt:
        if isinstance(prompt, str):
            ids = list(self.tokenizer(prompt)["input_ids"])
            return Prompt(prompt, ids, len(ids))
        if any(t < 0 or t >= self.vocab_size for t in prompt):
            raise InvalidRequestError(
                f"Token ids must be in [0, {self.vocab_size}).", param="prompt"
            )
        return Prompt(None, list(prompt), len(prompt))

    def _max_new(self, prompt: Prompt, params: SamplingParams) -> int:
        room = self.context_length - prompt.num_tokens
        if room < 1:
            raise _context_error(self.context_length, prompt.num_tokens, None)
        if params.max_tokens is None:
            return min(self.default_max_tokens, room)
        if params.max_tokens > room:
            raise _context_error(self.context_length, prompt.num_tokens, params.max_tokens)
        return params.max_tokens

    async def generate(self, prompt: Prompt, params: SamplingParams) -> AsyncIterator[Delta]:
        import torch

        from lingyun.engines.worker.scheduler import Sequence

        if not prompt.token_ids:
            raise InvalidRequestError("The prompt must not be empty.", param="prompt")
        max_new = self._max_new(prompt, params)
        generator = None
        if params.seed is not None and params.temperature > 0:
            generator = torch.Generator(device=self.device).manual_seed(params.seed)
        detok = IncrementalDetokenizer(self.tokenizer)
        seq = Sequence(prompt.token_ids, params, max_new, detok, generator, prompt.continues)
        self.scheduler.submit(seq)
        try:
            while True:
                item = await seq.queue.get()
                if isinstance(item, Exception):
                    raise item
                yield item
                if item.finish_reason is not None:
                    return
        finally:
            seq.cancelled = True  # the scheduler drops it before its next step


def create(model: str | None, args: dict[str, Any]) -> TransformersBackend:
    if not model:
        raise ValueError("The transformers backend needs --model (a local model directory).")
    return TransformersBackend(model, args)
