"""Continuous batching for the transformers backend: one decode step for all active sequences.

A dedicated thread owns the model. Each iteration it drops sequences whose client went away
(or hit a stop string), prefills newly arrived ones one at a time, and runs one decode step
for the whole batch. The batch keeps one KV cache, left-padded: a new sequence's cache is
padded on the left to the batch's length (or the batch's to its) and concatenated along the
batch dimension, with an attention mask marking the padding and explicit position ids per row,
so every row computes exactly what it would alone. Finished rows are removed with an index
select, and columns that became all padding are trimmed.

Thread -> event loop: each sequence's deltas go to its asyncio queue with
``call_soon_threadsafe``. Event loop -> thread: ``Sequence.cancelled`` (a plain bool) is read
at the start of every step, so a cancelled sequence stops at the next token.

Imports torch: only the transformers backend imports this module.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from lingyun.engines.worker.backend import Delta, SamplingParams
from lingyun.engines.worker.continuation import greedy_tokens
from lingyun.engines.worker.detokenize import IncrementalDetokenizer
from lingyun.engines.worker.lora import LoraAdapters
from lingyun.errors import LingyunError

logger = logging.getLogger(__name__)


class Sequence:
    """One choice being generated; owned by the scheduler thread once submitted."""

    __slots__ = (
        "cancelled",
        "continues",
        "detok",
        "generated",
        "generator",
        "last_token",
        "loop",
        "max_new",
        "params",
        "position",
        "prompt_ids",
        "queue",
    )

    def __init__(
        self,
        prompt_ids: list[int],
        params: SamplingParams,
        max_new: int,
        detok: IncrementalDetokenizer,
        generator: torch.Generator | None,
        continues: str | None = None,
    ) -> None:
        self.prompt_ids = prompt_ids
        # A partial reply to resume after the prompt (continuation.py), found at prefill.
        self.continues = continues
        self.params = params
        self.max_new = max_new
        self.detok = detok
        self.generator = generator
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[Delta | Exception] = asyncio.Queue()
        self.cancelled = False
        self.generated = 0
        self.last_token = -1
        self.position = len(prompt_ids)

    def emit(self, item: Delta | Exception) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the event loop is gone: shutting down
            self.cancelled = True


def output_cache(out: Any) -> Any:
    """The KV cache of a forward's output, under either transformers name."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def _left_pad(t: torch.Tensor, length: int, dim: int) -> torch.Tensor:
    missing = length - t.shape[dim]
    if missing <= 0:
        return t
    pad = [0, 0] * (t.dim() - 1 - dim % t.dim()) + [missing, 0]
    return F.pad(t, pad)


class BatchScheduler:
    """Runs the generation loop in its own thread; see the module docstring."""

    def __init__(
        self,
        model: Any,
        device: torch.device,
        eos_ids: set[int],
        max_batch_size: int,
        adapters: LoraAdapters | None = None,
        *,
        encode: Callable[[str], list[int]],
    ) -> None:
        self.model = model
        # The tokenizer's split of a text: where a continued reply leaves the greedy path.
        self.encode = encode
        self.adapters = adapters
        # transformers 5.x renamed forward's ``past_key_values`` to ``cache``; accept both.
        params = inspect.signature(model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self.device = device
        self.eos_ids = eos_ids
        self.max_batch_size = max_batch_size
        self._cv = threading.Condition()
        self._pending: deque[Sequence] = deque()
        self._stopping = False
        self.rows: list[Sequence] = []
        self._cache: Any = None
        self._mask: torch.Tensor | None = None
        self.steps = 0
        self.peak_batch = 0  # the largest batch decoded so far: shows batching happens
        self._thread = threading.Thread(target=self._run, name="lingyun-generate", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify()
        self._thread.join(timeout=10)

    def submit(self, seq: Sequence) -> None:
        with self._cv:
            self._pending.append(seq)
            self._cv.notify()

    def stats(self) -> dict[str, int]:
        return {
            "active": len(self.rows),
            "pending": len(self._pending),
            "steps": self.steps,
            "peak_batch": self.peak_batch,
        }

    # -- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        with torch.inference_mode():
            while True:
                with self._cv:
                    while not self._stopping and not self._pending and not self.rows:
                        self._cv.wait()
                    if self._stopping:
                        return
                try:
                    self._step()
                except Exception as exc:
                    logger.exception("generation step failed; failing the batch")
                    self._fail_all(exc)

    def _fail_all(self, exc: Exception) -> None:
        err = LingyunError(f"The engine failed while generating: {type(exc).__name__}.")
        for seq in self.rows:
            seq.emit(err)
        self.rows, self._cache, self._mask = [], None, None

    def _step(self) -> None:
        live = [i for i, s in enumerate(self.rows) if not s.cancelled]
        if len(live) < len(self.rows):
            self._select(live)
        while len(self.rows) < self.max_batch_size:
            with self._cv:
                if not self._pending:
                    break
                seq = self._pending.popleft()
            if not seq.cancelled:
                try:
                    self._prefill(seq)
                except Exception as exc:
                    logger.exception("prefill failed")
                    seq.emit(
                        LingyunError(f"The engine failed on this prompt: {type(exc).__name__}.")
                    )
        if self.rows:
            self._decode()
        self.steps += 1

    def _adapter_kwargs(self, rows: list[Sequence]) -> dict[str, Any]:
        if self.adapters is None:
            return {}
        return self.adapters.forward_kwargs([s.params.adapter for s in rows])

    def _prefill(self, seq: Sequence) -> None:
        if self.adapters is not None and seq.params.adapter is not None:
            in_use = [s.params.adapter for s in self.rows]
            self.model = self.adapters.ensure(self.model, seq.params.adapter, in_use)
        if seq.continues:
            self._resume(seq, seq.continues)
        ids = torch.tensor([seq.prompt_ids], device=self.device)
        out = self.model(
            input_ids=ids, use_cache=True, logits_to_keep=1, **self._adapter_kwargs([seq])
        )
        token = self._sample(out.logits[:, -1, :], [seq])[0]
        if not self._advance(seq, token):
            self._merge(output_cache(out), seq)

    def _resume(self, seq: Sequence, reply: str) -> None:
        """Put the tokens that produced ``reply`` after the prompt (continuation.py)."""
        prompt = seq.prompt_ids

        def predict(after: list[int]) -> list[int]:
            ids = torch.tensor([prompt + after], device=self.device)
            out = self.model(input_ids=ids, use_cache=False, **self._adapter_kwargs([seq]))
            return list(out.logits[0, len(prompt) - 1 :].float().argmax(dim=-1).tolist())

        resumed = greedy_tokens(reply, predict, self.encode, seq.detok, self.eos_ids)
        seq.prompt_ids = prompt + resumed.tokens
        seq.position = len(seq.prompt_ids)
        seq.detok = resumed.detok
        if resumed.due:  # the straddling token's text: counted already, on the first replica
            seq.emit(Delta(resumed.due, 0))

    def _merge(self, cache: Any, seq: Sequence) -> None:
        new_len = int(cache.get_seq_length())
        new_mask = torch.ones((1, new_len), dtype=torch.long, device=self.device)
        if self._cache is None or self._mask is None:
            self._cache, self._mask, self.rows = cache, new_mask, [seq]
            return
        length = max(new_len, self._mask.shape[1])
        for old, new in zip(self._cache.layers, cache.layers, strict=True):
            old.keys = torch.cat([_left_pad(old.keys, length, -2), _left_pad(new.keys, length, -2)])
            old.values = torch.cat(
                [_left_pad(old.values, length, -2), _left_pad(new.values, length, -2)]
            )
        self._mask = torch.cat([_left_pad(self._mask, length, 1), _left_pad(new_mask, length, 1)])
        self.rows.append(seq)

    def _select(self, keep: list[int]) -> None:
        if not keep or self._mask is None:
            self.rows, self._cache, self._mask = [], None, None
            return
        index = torch.tensor(keep, device=self.device)
        mask = self._mask.index_select(0, index)
        # Columns that only the removed rows used are padding for everyone left: trim them.
        first = int(mask.any(dim=0).nonzero()[0].item())
        for layer in self._cache.layers:
            layer.keys = layer.keys.index_select(0, index)[..., first:, :]
            layer.values = layer.values.index_select(0, index)[..., first:, :]
        self._mask = mask[:, first:]
        self.rows = [self.rows[i] for i in keep]

    def _decode(self) -> None:
        if self._mask is None:  # no rows: nothing to decode
            return
        rows = self.rows
        self.peak_batch = max(self.peak_batch, len(rows))
        input_ids = torch.tensor([[s.last_token] for s in rows], device=self.device)
        positions = torch.tensor([[s.position] for s in rows], device=self.device)
        ones = torch.ones((len(rows), 1), dtype=torch.long, device=self.device)
        self._mask = torch.cat([self._mask, ones], dim=1)
        out = self.model(
            input_ids=input_ids,
            attention_mask=self._mask,
            position_ids=positions,
            use_cache=True,
            **{self._cache_kw: self._cache},
            **self._adapter_kwargs(rows),
        )
        self._cache = output_cache(out)
        tokens = self._sample(out.logits[:, -1, :], rows)
        keep = []
        for i, (seq, token) in enumerate(zip(rows, tokens, strict=True)):
            seq.position += 1
            if not self._advance(seq, token):
                keep.append(i)
        if len(keep) < len(rows):
            self._select(keep)

    def _sample(self, logits: torch.Tensor, rows: list[Sequence]) -> list[int]:
        logits = logits.float()
        tokens: list[int] = logits.argmax(dim=-1).tolist()
        for i, seq in enumerate(rows):
            p = seq.params
            if p.temperature <= 0:
                continue
            probs = torch.softmax(logits[i] / p.temperature, dim=-1)
            if p.top_p < 1.0:
                sorted_probs, order = torch.sort(probs, descending=True)
                drop = torch.cumsum(sorted_probs, dim=-1) - sorted_probs > p.top_p
                sorted_probs[drop] = 0.0
                pick = torch.multinomial(sorted_probs, 1, generator=seq.generator)
                tokens[i] = int(order[pick].item())
            else:
                tokens[i] = int(torch.multinomial(probs, 1, generator=seq.generator).item())
        return tokens

    def _advance(self, seq: Sequence, token: int) -> bool:
        """Record one new token and send its text; return whether the sequence finished."""
        seq.generated += 1
        seq.last_token = token
        finish: str | None
        if token in self.eos_ids:
            finish, text = "stop", seq.detok.flush()
        else:
            text = seq.detok.add(token)
            finish = "length" if seq.generated >= seq.max_new else None
            if finish is not None:
                text += seq.detok.flush()
        seq.emit(Delta(text, 1, finish))
        return finish is not None
