"""The course's GPT has GPT-2's architecture, shaped by the reference's config, never by constants."""
import pytest
import torch
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.activations import ACT2FN
from transformers.pytorch_utils import Conv1D

from model.gpt import GPT, GPTConfig, KVCache
from model.loading.mapping import load_gpt
from model.loading.reference import HUB_SHAPES, load_reference
from model.proof.tolerance import TOLERANCE
from model.proof.verify import verify
from model.tokenizer import encode
from tests.checkpoints import ODD, TINY, build_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def on_meta(build):
    """Shapes without memory: even gpt2-xl's 1.5 billion parameters cost nothing here."""
    with torch.device("meta"):
        return build()


@pytest.mark.parametrize("name", HUB_SHAPES)
def test_every_hub_size_loads_with_the_references_parameter_count(name):
    reference = on_meta(lambda: GPT2LMHeadModel(GPT2Config(**HUB_SHAPES[name])))
    ours = load_gpt(reference)  # the real mapping, shape checks and all
    assert ours.num_parameters() == sum(p.numel() for p in reference.parameters())


def test_config_is_read_from_the_reference_config():
    config = GPTConfig.from_hf(GPT2Config(**ODD))
    assert {field: getattr(config, field) for field in ODD} == ODD


def test_config_without_n_inner_means_four_times_n_embd():
    assert GPTConfig.from_hf(GPT2Config(**TINY)).n_inner == 4 * TINY["n_embd"]


def test_layers_take_their_sizes_and_epsilon_from_the_config():
    config = GPTConfig.from_hf(GPT2Config(**ODD))
    model = on_meta(lambda: GPT(config))
    block = model.transformer.h[0]
    assert len(model.transformer.h) == ODD["n_layer"]
    assert model.transformer.wpe.num_embeddings == ODD["n_positions"]
    assert block.mlp.c_fc.out_features == ODD["n_inner"]
    assert {ln.eps for ln in (block.ln_1, block.ln_2, model.transformer.ln_f)} == {ODD["layer_norm_epsilon"]}


def test_attention_computes_query_key_value_in_one_linear():
    model = on_meta(lambda: GPT(GPTConfig(**ODD)))
    attn = model.transformer.h[0].attn
    assert (attn.c_attn.in_features, attn.c_attn.out_features) == (ODD["n_embd"], 3 * ODD["n_embd"])
    assert (attn.c_proj.in_features, attn.c_proj.out_features) == (ODD["n_embd"], ODD["n_embd"])


def test_every_matrix_is_an_nn_linear_and_none_a_conv1d():
    model = on_meta(lambda: GPT(GPTConfig(**ODD)))
    with_matrix = {type(m) for m in model.modules() if getattr(m, "weight", None) is not None and m.weight.dim() == 2}
    assert with_matrix == {nn.Linear, nn.Embedding}
    assert not any(isinstance(m, Conv1D) for m in model.modules())


def test_mlp_is_gpt2s_tanh_gelu_between_c_fc_and_c_proj():
    torch.manual_seed(0)
    mlp = GPT(GPTConfig(**ODD)).transformer.h[0].mlp
    x = torch.randn(2, 5, ODD["n_embd"])
    gelu_new = ACT2FN["gelu_new"]  # the activation transformers runs for GPT-2
    assert torch.allclose(mlp(x), mlp.c_proj(gelu_new(mlp.c_fc(x))), atol=1e-6)


def test_lm_head_and_wte_are_one_tensor_with_two_names():
    model = on_meta(lambda: GPT(GPTConfig(**ODD)))
    assert model.lm_head.weight is model.transformer.wte.weight
    assert {"lm_head.weight", "transformer.wte.weight"} <= model.state_dict().keys()


def test_parameters_count_the_tied_matrix_once():
    model = on_meta(lambda: GPT(GPTConfig(**ODD)))
    distinct = {id(p): p.numel() for module in model.modules() for p in module.parameters(recurse=False)}
    assert model.num_parameters() == sum(distinct.values())


@pytest.mark.parametrize("shape", [ODD, dict(TINY, layer_norm_epsilon=0.5), dict(TINY, n_inner=40)],
                         ids=["odd-shape", "large-epsilon", "narrow-mlp"])
def test_any_gpt2_shaped_checkpoint_computes_the_references_function(tmp_path, shape):
    reference = load_reference(str(build_checkpoint(tmp_path, seed=1, initializer_range=0.2, **shape)), "cpu")
    report = verify(reference, greedy_tokens=8)
    assert report.allclose and report.layers_allclose, report.max_abs_logit_diff


# --- the KV cache ------------------------------------------------------------------------------

@pytest.mark.parametrize("chunk", [1, 3], ids=["token-by-token", "three-at-a-time"])
def test_cached_logits_equal_full_recompute(trained_ours, chunk):
    ids = torch.tensor([encode("Once upon a time in a land far away there lived a wise old owl.")])
    cache = KVCache(trained_ours.config, "cpu", torch.float32)
    with torch.inference_mode():
        full = trained_ours(ids)
        pieces = [trained_ours(ids[:, i:i + chunk], [cache]) for i in range(0, ids.size(1), chunk)]
    assert torch.allclose(torch.cat(pieces, dim=1), full, **TOLERANCE)


def test_forward_refuses_more_positions_than_the_context(tiny_ours):
    too_long = torch.zeros(1, tiny_ours.config.n_positions + 1, dtype=torch.long)
    with pytest.raises(ValueError, match="do not fit the context"):
        tiny_ours(too_long)
