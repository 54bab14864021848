"""model/knowledge.py: the same class on random weights knows nothing; the loaded weights are the knowledge."""
import math

import pytest
import torch

from model.gpt import GPT, GPTConfig
from model.lesson.knowledge import INIT_STD, PARAGRAPH, paragraph_losses, random_init
from model.tokenizer import encode
from tests.checkpoints import MEMORISED, ODD

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Measured: GPT-2's initialisation scores the paragraph 10.98-11.03 on gpt2's shape (seeds 0-2, ln 50257 = 10.82),
# and 10.78-10.80 on the trained checkpoint's sentences; a uniform guess would score ln 50257 exactly.
NEAR_A_UNIFORM_GUESS = 0.5
# Measured: the trained checkpoint scores its own sentences 0.007-0.08.
KNOWS_BY_HEART = 0.5


def test_random_init_is_our_gpt_with_gpt2s_initialisation():
    config = GPTConfig(**ODD)
    model = random_init(config)
    assert type(model) is GPT and model.config == config and not model.training
    assert model.lm_head.weight is model.transformer.wte.weight  # tied, as every GPT of ours
    params = dict(model.named_parameters())
    assert params["transformer.wte.weight"].std().item() == pytest.approx(INIT_STD, rel=0.01)  # 3.2M draws
    residual = INIT_STD / math.sqrt(2 * config.n_layer)  # each block's two projections into the residual stream
    assert params["transformer.h.0.mlp.c_proj.weight"].std().item() == pytest.approx(residual, rel=0.05)
    assert all(params[name].eq(0).all() for name in params if name.endswith("bias"))
    assert params["transformer.h.2.ln_2.weight"].eq(1).all()


def test_random_init_is_seeded():
    config = GPTConfig(**ODD)
    first, again, other = random_init(config, seed=3), random_init(config, seed=3), random_init(config, seed=4)
    assert torch.equal(first.transformer.h[1].attn.c_attn.weight, again.transformer.h[1].attn.c_attn.weight)
    assert not torch.equal(first.transformer.h[1].attn.c_attn.weight, other.transformer.h[1].attn.c_attn.weight)


def test_on_gpt2s_shape_ours_scores_as_the_reference_and_random_init_as_a_uniform_guess(gpt2_reference,
                                                                                        gpt2_ours):
    losses = paragraph_losses(gpt2_reference, gpt2_ours, random_init(gpt2_ours.config))
    assert losses.tokens == len(encode(PARAGRAPH)) and losses.vocab_size == 50257
    assert losses.ours_equals_reference, (losses.ours, losses.reference)
    assert abs(losses.random_init.cross_entropy - math.log(50257)) < NEAR_A_UNIFORM_GUESS
    assert losses.random_init.perplexity == pytest.approx(math.exp(losses.random_init.cross_entropy))


@pytest.mark.parametrize("sentence", MEMORISED)
def test_the_trained_weights_know_what_the_same_class_on_random_weights_does_not(trained_reference,
                                                                               trained_ours, sentence):
    losses = paragraph_losses(trained_reference, trained_ours, random_init(trained_ours.config), sentence)
    assert losses.ours_equals_reference
    assert losses.ours.cross_entropy < KNOWS_BY_HEART
    assert abs(losses.random_init.cross_entropy - losses.uniform_guess) < NEAR_A_UNIFORM_GUESS


def test_the_paragraph_is_cut_to_the_models_context(tiny_reference, tiny_ours):
    losses = paragraph_losses(tiny_reference, tiny_ours, random_init(tiny_ours.config))
    assert losses.tokens == tiny_ours.config.n_positions < len(encode(PARAGRAPH))
    assert losses.to_dict()["ours_equals_reference"]


def test_a_text_with_nothing_to_predict_is_refused(tiny_reference, tiny_ours):
    with pytest.raises(ValueError, match="at least two tokens"):
        paragraph_losses(tiny_reference, tiny_ours, random_init(tiny_ours.config), "Hi")
