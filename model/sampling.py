"""How the next token is picked from the logits, and the settings that control it.

Every request brings its own `torch.Generator`: the app serves a whole class at once, and the
global RNG would let one student's request change what another one's seed produces.
"""
import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

MAX_SEED = 2**63 - 1
MAX_TEMPERATURE = 10.0


@dataclass(frozen=True)
class SamplingSettings:
    max_new_tokens: int = 64
    temperature: float = 0.8  # 0 means greedy: always the most likely token
    top_k: int | None = 50  # keep only the k most likely tokens; None keeps all
    top_p: float = 1.0  # keep the smallest set of tokens whose probability adds up to top_p
    seed: int = 0
    stop_at_eot: bool = True  # stop when the model writes <|endoftext|>

    def validated(self, vocab_size: int, max_new_tokens_limit: int) -> "SamplingSettings":
        """These settings with their types checked, or a ValueError naming the field and its range."""
        _check_int("max_new_tokens", self.max_new_tokens, 1, max_new_tokens_limit)
        _check_number("temperature", self.temperature, 0.0, MAX_TEMPERATURE)
        if self.top_k is not None:
            _check_int("top_k", self.top_k, 1, vocab_size)
        _check_number("top_p", self.top_p, 0.0, 1.0, low_open=True)
        _check_int("seed", self.seed, 0, MAX_SEED)
        return self


def _check_int(name, value, low, high):
    # bool is an int in Python, but `top_k=True` is a mistake, not a 1.
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be a whole number from {low} to {high}, got {value!r}")


def _check_number(name, value, low, high, low_open=False):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (low < value if low_open else low <= value) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must be a number in {bracket}{low}, {high}], got {value!r}")


def sample_next_token(logits: torch.Tensor, settings: SamplingSettings,
                      generator: torch.Generator) -> int:
    """Pick one token id from the logits of one position (a 1-D tensor over the vocabulary).

    Sampling happens on the CPU with a CPU generator, so a seed writes the same text on any device.
    """
    logits = logits.float().cpu()  # exact for half precision, and argmax over bfloat16 is slow on a CPU
    if settings.temperature == 0:
        # The first largest, as torch.argmax picks it; NumPy's argmax reads a vocabulary many times faster.
        return int(logits.numpy().argmax())
    logits = logits / settings.temperature
    # The candidates, likeliest first: the top k, or every token. Drawing among them alone is the same
    # distribution as masking all the others, and far cheaper than a draw over the whole vocabulary.
    if settings.top_k is not None and settings.top_k < logits.size(-1):
        candidates, ids = torch.topk(logits, settings.top_k)
    elif settings.top_p < 1.0:
        candidates, ids = torch.sort(logits, descending=True)
    else:
        candidates, ids = logits, None
    probs = F.softmax(candidates, dim=-1)
    if settings.top_p < 1.0:
        # Drop a token when the ones ranked above it already reach top_p (the first always stays).
        probs = probs.masked_fill(torch.cumsum(probs, dim=-1) - probs >= settings.top_p, 0.0)
    choice = int(torch.multinomial(probs, num_samples=1, generator=generator))
    return choice if ids is None else int(ids[choice])
