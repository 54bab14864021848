"""model/anatomy.py: where a GPT's parameters live, and the three totals quoted for one model."""
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from model.lesson.anatomy import parameter_anatomy
from model.gpt import GPT, GPTConfig
from model.loading.reference import HUB_SHAPES
from tests.checkpoints import (
    GPT2_NON_EMBEDDING_PARAMETERS,
    GPT2_PARAMETERS,
    GPT2_UNTIED_PARAMETERS,
    ODD,
    TINY,
)

SHAPES = {"odd": ODD, "tiny": TINY, **{name: shape for name, shape in HUB_SHAPES.items()}}


def test_gpt2s_three_totals_are_the_published_ones(gpt2_ours):
    anatomy = parameter_anatomy(gpt2_ours)  # loaded from a gpt2-shaped checkpoint
    assert anatomy.tied == GPT2_PARAMETERS
    assert anatomy.untied == GPT2_UNTIED_PARAMETERS
    assert anatomy.without_embeddings == GPT2_NON_EMBEDDING_PARAMETERS


def test_gpt2s_parameters_split_as_the_lesson_says(gpt2_ours):
    """The lesson's table: embeddings ~31 %, attention ~23 %, MLP ~46 %."""
    anatomy = parameter_anatomy(gpt2_ours)
    shares = {group: round(100 * anatomy.share(group)) for group in anatomy.groups}
    assert shares == {"token_embedding": 31, "position_embedding": 1, "attention": 23, "mlp": 46, "layernorms": 0}


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_the_groups_add_up_to_the_references_count_for_any_shape(shape):
    with torch.device("meta"):  # shapes only: gpt2-xl costs nothing
        reference = GPT2LMHeadModel(GPT2Config(**shape))
        model = GPT(GPTConfig.from_hf(reference.config))
    anatomy = parameter_anatomy(model)
    assert sum(anatomy.groups.values()) == anatomy.tied == sum(p.numel() for p in reference.parameters())
    by_name = {part: sum(p.numel() for name, p in model.named_parameters() if part in name)
               for part in (".wte.", ".wpe.", ".attn.", ".mlp.", ".ln_")}
    assert list(anatomy.groups.values()) == list(by_name.values())
    wte, wpe = by_name[".wte."], by_name[".wpe."]
    assert anatomy.untied == anatomy.tied + wte  # lm_head: the same tensor, counted again
    assert anatomy.without_embeddings == anatomy.tied - wte - wpe
    assert anatomy.to_dict()["without_embeddings"] == anatomy.without_embeddings
