"""Split-K: one token's matrix-vector products spread over the cores give nn.Linear's numbers, from the
very same weights, and the writing model built on them writes what transformers writes."""
from dataclasses import replace

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from model.fast import load_student
from model.matvec import SplitKLinear, use_split_k
from model.sampling import SamplingSettings
from model.tokenizer import encode
from model.verify import reference_greedy

GREEDY = SamplingSettings(max_new_tokens=48, temperature=0, top_k=None, stop_at_eot=False)
PROMPT = encode("The meaning of life is")


@pytest.fixture
def two_torch_threads():
    """Split-K has one part per thread: two, as on the 2-core machines a free Space gives."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def linear_stored_in_out(in_features, out_features, bias=True, seed=0):
    """An nn.Linear whose weight is a transposed view of (in, out) memory, as GPT-2's weights load."""
    generator = torch.Generator().manual_seed(seed)
    linear = nn.Linear(in_features, out_features, bias=bias, device="meta")
    linear.weight = nn.Parameter(torch.randn(in_features, out_features, generator=generator).t(), requires_grad=False)
    if bias:
        linear.bias = nn.Parameter(torch.randn(out_features, generator=generator), requires_grad=False)
    return linear


@pytest.mark.parametrize("in_features, out_features, bias", [
    (768, 2304, True), (768, 768, True), (768, 3072, True), (3072, 768, True), (768, 50257, False)],
    ids=["c_attn", "attn.c_proj", "c_fc", "mlp.c_proj", "lm_head"])
@pytest.mark.parametrize("parts", [2, 3, 4])
def test_one_token_gets_nn_linears_numbers_to_float32_rounding(in_features, out_features, bias, parts):
    linear = linear_stored_in_out(in_features, out_features, bias)
    x = torch.randn(1, 1, in_features, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = F.linear(x, linear.weight, linear.bias)
        got = SplitKLinear(linear, parts)(x)
    assert got.shape == expected.shape == (1, 1, out_features)
    # The same products, summed in another order: float32's last digits may differ, nothing more.
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())


def test_many_tokens_take_nn_linears_path_unchanged():
    linear = linear_stored_in_out(64, 96)
    x = torch.randn(1, 7, 64)
    with torch.no_grad():
        assert torch.equal(SplitKLinear(linear, 2)(x), F.linear(x, linear.weight, linear.bias))


def test_split_k_holds_the_linears_own_parameters_not_copies():
    model = nn.Sequential(linear_stored_in_out(64, 96), nn.GELU(), linear_stored_in_out(96, 32))
    before = model.state_dict(keep_vars=True)
    use_split_k(model, threads=2)
    assert [type(layer) for layer in model] == [SplitKLinear, nn.GELU, SplitKLinear]
    after = model.state_dict(keep_vars=True)
    assert list(after) == list(before)  # the checkpoint's names are unchanged
    assert all(after[name] is before[name] for name in before)


def test_each_layer_takes_the_most_parts_that_divide_its_inputs():
    model = nn.Sequential(linear_stored_in_out(768, 66), linear_stored_in_out(66, 770))
    use_split_k(model, threads=5)
    assert [layer.parts for layer in model] == [4, 3]  # 768 = 4 * 192 and 66 = 3 * 22: neither splits in 5


def test_one_thread_leaves_every_nn_linear_in_place():
    model = nn.Sequential(linear_stored_in_out(64, 96))
    use_split_k(model, threads=1)
    assert type(model[0]) is nn.Linear


def test_a_weight_stored_out_in_is_refused_with_the_reason():
    with pytest.raises(ValueError, match=r"split-K needs the weight stored \(in, out\)"):
        SplitKLinear(nn.Linear(64, 96), 2)


# --- the writing model ---------------------------------------------------------------------------

@pytest.mark.usefixtures("two_torch_threads")
@pytest.mark.parametrize("name", ["tiny", "trained", "gpt2"])
def test_the_writing_model_writes_token_for_token_what_reference_generate_writes(request, name):
    reference = request.getfixturevalue(f"{name}_reference")
    writer = load_student(reference)
    assert isinstance(writer.transformer.h[0].mlp.c_fc, SplitKLinear) and isinstance(writer.lm_head, SplitKLinear)
    n = min(GREEDY.max_new_tokens, reference.config.n_positions - len(PROMPT))  # within the tiny ones' context
    assert writer.generate(PROMPT, replace(GREEDY, max_new_tokens=n)) == reference_greedy(reference, PROMPT, n)


@pytest.mark.usefixtures("two_torch_threads")
def test_the_writing_model_shares_every_block_matrix_with_the_reference(gpt2_reference):
    writer = load_student(gpt2_reference).state_dict(keep_vars=True)
    theirs = gpt2_reference.state_dict()
    blocks = [name for name in writer if name.startswith("transformer.h.")]
    assert len(blocks) == 12 * 12
    assert all(writer[name].data_ptr() == theirs[name].data_ptr() for name in blocks)
    # The tied matrix is the one copy, stored (n_embd, vocab) for split-K, and still one tensor.
    assert writer["lm_head.weight"].t().is_contiguous() and writer["lm_head.weight"] is writer["transformer.wte.weight"]
    torch.testing.assert_close(writer["lm_head.weight"], theirs["transformer.wte.weight"], rtol=0, atol=0)


def test_a_half_precision_writer_keeps_each_matrix_in_nn_linears_own_layout(tiny_reference):
    writer = load_student(tiny_reference, "bfloat16")
    assert {(p.dtype, p.is_contiguous()) for p in writer.parameters()} == {(torch.bfloat16, True)}
    assert writer.lm_head.weight is writer.transformer.wte.weight
    assert type(writer.transformer.h[0].mlp.c_fc) is nn.Linear
