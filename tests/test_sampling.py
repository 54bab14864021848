"""Picking the next token: greedy, temperature, top-k, top-p, each draw from the caller's own generator."""
import math

import pytest
import torch

from model.sampling import SamplingSettings, sample_next_token

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROBS = [0.5, 0.3, 0.15, 0.05]  # exclusive running sums: 0, 0.5, 0.8, 0.95


def draws(logits, n=400, seed=0, **settings):
    generator = torch.Generator().manual_seed(seed)
    return [sample_next_token(logits, SamplingSettings(**settings), generator) for _ in range(n)]


def test_temperature_zero_is_the_most_likely_token():
    logits = torch.randn(1000, generator=torch.Generator().manual_seed(0))
    assert set(draws(logits, n=5, temperature=0, top_k=None)) == {int(logits.argmax())}


def test_top_k_draws_only_among_the_k_most_likely():
    logits = torch.randn(1000, generator=torch.Generator().manual_seed(0))
    assert set(draws(logits, temperature=1.0, top_k=5)) == set(logits.topk(5).indices.tolist())


@pytest.mark.parametrize("top_p, kept", [(0.45, {0}), (0.75, {0, 1}), (0.85, {0, 1, 2}), (1.0, {0, 1, 2, 3})])
def test_top_p_keeps_the_fewest_tokens_whose_probability_reaches_p(top_p, kept):
    logits = torch.tensor([math.log(p) for p in PROBS])
    assert set(draws(logits, temperature=1.0, top_k=None, top_p=top_p)) == kept


def test_low_temperature_sharpens_the_distribution():
    logits = torch.tensor([math.log(p) for p in PROBS])
    assert draws(logits, temperature=0.05, top_k=None).count(0) > draws(logits, temperature=1.0, top_k=None).count(0)


def test_the_same_seed_draws_the_same_tokens_and_another_seed_others():
    logits = torch.zeros(50257)
    assert draws(logits, n=20, seed=7, top_k=None) == draws(logits, n=20, seed=7, top_k=None)
    assert draws(logits, n=20, seed=7, top_k=None) != draws(logits, n=20, seed=8, top_k=None)


def test_sampling_leaves_the_global_rng_alone():
    before = torch.get_rng_state()
    draws(torch.zeros(100), n=50, top_k=None)
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize("field, value", [
    ("max_new_tokens", 0), ("max_new_tokens", 5000), ("max_new_tokens", 2.5),
    ("temperature", -0.1), ("temperature", float("nan")), ("temperature", 11.0),
    ("top_k", 0), ("top_k", 50258), ("top_k", True),
    ("top_p", 0.0), ("top_p", 1.5),
    ("seed", -1), ("seed", "1"),
])
def test_a_setting_out_of_range_is_refused_by_name(field, value):
    with pytest.raises(ValueError, match=f"^{field} must be"):
        SamplingSettings(**{field: value}).validated(vocab_size=50257, max_new_tokens_limit=4096)


def test_settings_in_range_pass_unchanged():
    settings = SamplingSettings(max_new_tokens=4096, temperature=0, top_k=50257, top_p=1.0, seed=2**63 - 1)
    assert settings.validated(vocab_size=50257, max_new_tokens_limit=4096) is settings
