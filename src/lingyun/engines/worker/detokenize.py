"""Incremental detokenization: turn a stream of token ids into text deltas.

Byte-level tokenizers split multi-byte characters across tokens, so decoding one token at a
time would emit broken characters. We decode a small window of tokens (``prefix_offset`` to
the end) and emit only what it adds beyond the window's already-emitted part
(``prefix_offset`` to ``read_offset``), holding text back while it ends in U+FFFD (an
incomplete character), the approach of vLLM and TGI. Window boundaries are always at
character boundaries, so the deltas joined equal ``decode(all_ids)``.
"""

from __future__ import annotations

from typing import Any, Protocol

REPLACEMENT = "\ufffd"


class Decoder(Protocol):
    """The part of a Hugging Face tokenizer we need."""

    def decode(self, token_ids: list[int], **kwargs: Any) -> str: ...


class IncrementalDetokenizer:
    """Feed token ids one at a time with :meth:`add`; call :meth:`flush` at the end."""

    __slots__ = ("_ids", "_prefix_offset", "_read_offset", "_skip_special", "_tokenizer")

    def __init__(self, tokenizer: Decoder, *, skip_special_tokens: bool = True) -> None:
        self._tokenizer = tokenizer
        self._skip_special = skip_special_tokens
        self._ids: list[int] = []
        self._prefix_offset = 0
        self._read_offset = 0

    def _decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(
            ids, skip_special_tokens=self._skip_special, clean_up_tokenization_spaces=False
        )

    def clone(self) -> IncrementalDetokenizer:
        """An independent copy: to try a token without committing to it."""
        other = IncrementalDetokenizer(self._tokenizer, skip_special_tokens=self._skip_special)
        other._ids = list(self._ids)
        other._prefix_offset, other._read_offset = self._prefix_offset, self._read_offset
        return other

    def add(self, token_id: int) -> str:
        """Add one token; return the text that is now complete (possibly empty)."""
        self._ids.append(token_id)
        prefix_text = self._decode(self._ids[self._prefix_offset : self._read_offset])
        new_text = self._decode(self._ids[self._prefix_offset :])
        if len(new_text) > len(prefix_text) and not new_text.endswith(REPLACEMENT):
            delta = new_text[len(prefix_text) :]
            self._prefix_offset = self._read_offset
            self._read_offset = len(self._ids)
            return delta
        return ""

    def flush(self) -> str:
        """The text held back at the end (incomplete characters become U+FFFD, as in decode)."""
        prefix_text = self._decode(self._ids[self._prefix_offset : self._read_offset])
        new_text = self._decode(self._ids[self._prefix_offset :])
        self._prefix_offset = self._read_offset = len(self._ids)
        return new_text[len(prefix_text) :]
