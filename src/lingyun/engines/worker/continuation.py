"""Continuing a partial assistant reply (vLLM's ``continue_final_message``), exactly.

The gateway resends a conversation whose stream broke with the text its client already has
as the final assistant message (``gateway/resume.py``). For the continued text to equal an
uninterrupted run, the engine must resume from the *tokens* that produced that text, not
from a re-tokenization of it: a model's greedy output is rarely the tokenizer's canonical
split ("h" + "ello" where the tokenizer says "hello"), and the continuation would diverge.

``greedy_tokens`` recovers them, speculative-decoding style: guess the canonical split of
what is left, score the whole guess in one forward pass, and keep the model's own greedy
token at each position while its text stays on the reply (one pass when the guess is right,
one token per pass at worst). Where the model's choice leaves the reply, the reply was not
this model's greedy output (sampling, another model): the rest is taken as the tokenizer
splits it, which is as exact as any engine can be. The last token may straddle the end of
the reply (a stop-string tail held back from the client): its remaining text is emitted
first, and it is not counted again (the client was already charged for it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from lingyun.engines.worker.backend import GenerationBackend, Prompt
from lingyun.engines.worker.detokenize import IncrementalDetokenizer
from lingyun.errors import InvalidRequestError
from lingyun.protocol.wire import ChatCompletionRequest

logger = logging.getLogger(__name__)


def chat_prompt(gen: GenerationBackend, req: ChatCompletionRequest) -> Prompt:
    """The request's prompt; with ``continue_final_message`` the last (assistant) message
    is the beginning of the reply to continue, and no new assistant turn is opened."""
    extra = req.model_extra or {}
    if not extra.get("continue_final_message"):
        return gen.chat_prompt(req.messages)
    if len(req.messages) < 2 or req.messages[-1].role != "assistant":
        raise InvalidRequestError(
            "continue_final_message needs the last message to be the assistant's partial "
            "reply, after at least one other message.",
            param="messages",
        )
    if extra.get("add_generation_prompt", True) is not False:
        raise InvalidRequestError(
            "continue_final_message needs add_generation_prompt: false.",
            param="add_generation_prompt",
        )
    if req.n != 1:
        raise InvalidRequestError("continue_final_message continues one reply: n=1.", param="n")
    return gen.continued(gen.chat_prompt(req.messages[:-1]), req.messages[-1].text())


@dataclass
class Resumed:
    """Where generation resumes: the tokens that produced the reply (to prefill after the
    prompt), the detokenizer primed with them, and text of a straddling token still due."""

    tokens: list[int]
    detok: IncrementalDetokenizer
    due: str = ""


def greedy_tokens(
    reply: str,
    predict: Callable[[list[int]], list[int]],
    encode: Callable[[str], list[int]],
    detok: IncrementalDetokenizer,
    stop_ids: set[int],
) -> Resumed:
    """The token path that produced ``reply`` (see the module docstring).

    ``predict(guess)`` answers the model's greedy token after the prompt, the tokens kept
    so far and each prefix of ``guess``: ``len(guess) + 1`` ids."""
    kept: list[int] = []
    rest = reply
    bound = 4 * len(encode(reply)) + 16  # tokens that emit nothing cannot loop for ever
    on_path = True
    while rest and on_path and len(kept) < bound:
        guess = encode(rest)
        for i, token in enumerate(predict(kept + guess)[len(kept) :]):
            trial = detok.clone()
            text = "" if token in stop_ids else trial.add(token)
            on_path = token not in stop_ids and (
                rest.startswith(text) or (bool(text) and text.startswith(rest))
            )
            if not on_path:
                break
            kept.append(token)
            detok = trial
            if len(text) > len(rest):  # straddles the end of the reply
                return Resumed(kept, detok, text[len(rest) :])
            rest = rest[len(text) :]
            if not rest or i >= len(guess) or token != guess[i]:
                break  # done, or later predictions assumed the guess: score again
    if rest:
        logger.info("the reply is not this model's greedy output; continuing its own split")
        for t in encode(rest):
            detok.add(t)
            kept.append(t)
    return Resumed(kept, detok)
