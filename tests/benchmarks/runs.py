"""What is timed: greedy generation by our GPT and by transformers' `generate`, from the same prompt."""
import torch

from model.sampling import SamplingSettings
from model.serving.sequence import generate, stream
from model.tokenizer import encode

TEXT = ("The history of the printing press begins in the fifteenth century, when a goldsmith in Mainz "
        "combined movable metal type, oil-based ink and a wooden press adapted from those used for wine. ")


def prompt(length: int) -> list[int]:
    """`length` tokens of English, TEXT repeated as often as it takes."""
    ids = encode(TEXT)
    return (ids * (length // len(ids) + 1))[:length]


def ours(model, ids, n, use_cache=True):
    """Our model writing n tokens, greedily, never stopping early (so every run writes the same count)."""
    settings = SamplingSettings(max_new_tokens=n, temperature=0, top_k=None, stop_at_eot=False)
    return lambda: generate(model, ids, settings, use_cache=use_cache)


def ours_first_token(model, ids):
    settings = SamplingSettings(max_new_tokens=1, temperature=0, top_k=None, stop_at_eot=False)
    return lambda: [next(iter(stream(model, ids, settings)))]


def theirs(reference, ids, n):
    """transformers' `generate` writing n tokens greedily: min_new_tokens and no eos, as ours."""
    idx = torch.tensor([ids], device=reference.device)

    @torch.inference_mode()
    def run():
        out = reference.generate(idx, attention_mask=torch.ones_like(idx), do_sample=False, max_new_tokens=n,
                                 min_new_tokens=n, eos_token_id=None, pad_token_id=0)
        return out[0, len(ids):].tolist()
    return run
