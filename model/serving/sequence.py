"""One generation in progress, and the loop that writes it alone.

A `Sequence` holds what one generation needs between model calls: its tokens, its KV cache, its
sampler, and what the model reads next. `stream` runs one on its own; the classroom engine
(model/serving/engine.py) runs many side by side. Both read the same chunks in the same order, so a
sequence's arithmetic is the same alone or among others.
"""
from collections.abc import Iterator

import torch

from model.gpt import GPT, KVCache
from model.sampling import SamplingSettings, sample_next_token
from model.tokenizer import EOT_TOKEN

PROMPT_CHUNK = 64  # prompt tokens read per forward pass: a long prompt never holds up a shared step for long


def context_window(ids: list[int], room: int, n_positions: int) -> list[int]:
    """The tail of `ids` that leaves `room` positions to write in (at most half the context).

    The one rule for every crop: a prompt too long to continue, a generation that has filled the
    context, and the prompt verification compares.
    """
    room = min(room, n_positions // 2)
    return ids[-(n_positions - room):]


class Sequence:
    """One generation between model calls: its tokens, its KV cache, its sampler, what to read next."""

    def __init__(self, model: GPT, ids: list[int], settings: SamplingSettings, use_cache: bool = True):
        if not ids:
            raise ValueError("generation needs at least one prompt token")
        self.model, self.settings, self.use_cache = model, settings, use_cache
        self.n_positions = model.config.n_positions
        self.device, self.dtype = model.transformer.wte.weight.device, model.transformer.wte.weight.dtype
        self.generator = torch.Generator().manual_seed(settings.seed)  # its own: no request changes another's
        self.context = context_window(list(ids), settings.max_new_tokens, self.n_positions)
        self.start = 0  # the model reads the window context[start:]
        self.cache: KVCache | None = None
        self.written = 0
        self.finished = False

    def next_chunk(self) -> list[int]:
        """The tokens the model reads next: the prompt PROMPT_CHUNK at a time, then one token a step."""
        if len(self.context) - self.start > self.n_positions:
            # The context is full: keep its tail, with room for what is left to write, and read that afresh.
            kept = context_window(self.context, self.settings.max_new_tokens - self.written, self.n_positions)
            self.start, self.cache = len(self.context) - len(kept), None
        if not self.use_cache:
            return self.context[self.start:]
        if self.cache is None:  # sized for this window and what is left to write, not the whole context
            length = len(self.context) - self.start + self.settings.max_new_tokens - self.written
            self.cache = KVCache(self.model.config, self.device, self.dtype, length)
        read = self.start + self.cache.length
        return self.context[read:read + PROMPT_CHUNK]

    def accept(self, logits: torch.Tensor) -> int | None:
        """After the model read `next_chunk()`: the next token, once nothing is left unread, else None.

        logits: the last position's, a 1-D tensor over the vocabulary.
        """
        if self.use_cache and self.start + self.cache.length < len(self.context):
            return None  # more of the prompt to read first
        token = sample_next_token(logits, self.settings, self.generator)
        self.written += 1
        self.finished = self.written == self.settings.max_new_tokens
        if self.settings.stop_at_eot and token == EOT_TOKEN:
            self.finished = True
            return None
        self.context.append(token)
        return token


@torch.inference_mode()
def stream(model: GPT, ids: list[int], settings: SamplingSettings, use_cache: bool = True) -> Iterator[int]:
    """Yield new token ids one at a time, each as soon as it is chosen.

    With use_cache=False every step re-reads the whole window (how nanoGPT samples): the same
    tokens, far slower; kept to show what the cache buys.
    """
    sequence = Sequence(model, ids, settings, use_cache)
    while not sequence.finished:
        chunk = sequence.next_chunk()
        caches = [sequence.cache] if use_cache else None
        logits = model(torch.tensor([chunk], device=sequence.device), caches, last_only=True)
        if (token := sequence.accept(logits[0, -1])) is not None:
            yield token


def generate(model: GPT, ids: list[int], settings: SamplingSettings, use_cache: bool = True) -> list[int]:
    """All new token ids at once (see `stream`)."""
    return list(stream(model, ids, settings, use_cache))


def write_greedily(model: GPT, ids: list[int], n: int) -> list[int]:
    """The n tokens `model` writes greedily after `ids`, never stopping early (its KV cache and all)."""
    return generate(model, ids, SamplingSettings(max_new_tokens=n, temperature=0, top_k=None, stop_at_eot=False))
