"""A stand-in for an engine's prefix (KV) cache, for the simulator: routing quality becomes
measurable on a laptop.

Like vLLM's automatic prefix caching, a prompt is cut into fixed-size blocks of tokens, each
block named by a hash chained over every block before it (so a block is only reused after the
same whole prefix), and a prompt's hit is the run of leading blocks already cached. Blocks
live in one LRU bounded by ``capacity_tokens``; a prompt's own blocks go in when it is
prefilled, touching the ones it reused, and a finished sequence's blocks (prompt and reply)
when it ends. Only full blocks are cached, as engines do.

Not a model of memory layout, eviction under running sequences or copy-on-write: a hit count
that responds to routing the way a real engine's does, and nothing more.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence

DEFAULT_BLOCK_TOKENS = 16


def block_hashes(tokens: Sequence[str], block_tokens: int) -> list[bytes]:
    """Chained hashes of the full blocks of ``tokens``: block i's hash covers blocks 0..i."""
    hashes: list[bytes] = []
    parent = b""
    for start in range(0, len(tokens) - block_tokens + 1, block_tokens):
        h = hashlib.blake2b(parent, digest_size=16)
        for token in tokens[start : start + block_tokens]:
            h.update(token.encode())
            h.update(b"\x00")
        parent = h.digest()
        hashes.append(parent)
    return hashes


class PrefixCache:
    """LRU of prompt blocks; ``admit`` returns how many leading tokens were already cached."""

    def __init__(self, capacity_tokens: int, block_tokens: int = DEFAULT_BLOCK_TOKENS) -> None:
        if capacity_tokens < 0 or block_tokens < 1:
            raise ValueError("prefix_cache_tokens must be >= 0 and prefix_block_tokens >= 1.")
        self.block_tokens = block_tokens
        self.capacity_blocks = capacity_tokens // block_tokens
        self._blocks: OrderedDict[bytes, None] = OrderedDict()
        self.queries = 0  # prompt tokens looked up
        self.hits = 0  # of which found cached

    @property
    def enabled(self) -> bool:
        return self.capacity_blocks > 0

    def __len__(self) -> int:
        return len(self._blocks)

    def admit(self, tokens: Sequence[str]) -> int:
        """Look ``tokens`` up and insert its blocks; the number of leading tokens cached."""
        if not self.enabled:
            return 0
        hashes = block_hashes(tokens, self.block_tokens)
        matched = 0
        for h in hashes:
            if h not in self._blocks:
                break
            matched += 1
        self._insert(hashes)
        # An engine computes at least the last prompt token, to sample from it.
        cached = min(matched * self.block_tokens, max(len(tokens) - 1, 0))
        self.queries += len(tokens)
        self.hits += cached
        return cached

    def insert(self, tokens: Sequence[str]) -> None:
        """Cache a finished sequence (prompt and generated tokens), as engines keep the
        blocks of decoded tokens too: the next turn of a conversation reuses the reply."""
        if self.enabled:
            self._insert(block_hashes(tokens, self.block_tokens))

    def _insert(self, hashes: Sequence[bytes]) -> None:
        for h in hashes:
            if h in self._blocks:
                self._blocks.move_to_end(h)
            else:
                self._blocks[h] = None
        while len(self._blocks) > self.capacity_blocks:
            self._blocks.popitem(last=False)
