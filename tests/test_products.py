"""The writing model's products: nn.Linear's numbers, and the same bits for a row alone or among others."""
import copy
import multiprocessing
import os
import random
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import psutil
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from model.loading.mapping import load_gpt
from model.loading.reference import load_reference
from model.memory import release_freed_memory
from model.proof.evidence import reference_greedy
from model.sampling import SamplingSettings
from model.serving import products
from model.serving.kernels import writer_kernels
from model.serving.products import RowInvariantLinear, build_kernels, rows_computed, use_row_invariant_products
from model.serving.sequence import generate
from model.serving.writer import load_writer
from model.tokenizer import encode

GREEDY = SamplingSettings(max_new_tokens=48, temperature=0, top_k=None, stop_at_eot=False)
PROMPT = encode("The meaning of life is")
GPT2_MATRICES = [(768, 2304, True), (768, 768, True), (768, 3072, True), (3072, 768, True), (768, 50257, False)]
GPT2_MATRIX_NAMES = ["c_attn", "attn.c_proj", "c_fc", "mlp.c_proj", "lm_head"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(params=products.KERNELS)
def kernel(request):
    """Each float32 kernel: ours (row_products.cpp) where this machine can build it, and oneDNN's."""
    if request.param == "row_products" and writer_kernels() is None:
        pytest.skip(f"row_products.cpp cannot run or be built here ({torch.backends.cpu.get_cpu_capability()}; "
                    f"stderr says why)")
    return request.param


def linear_stored_in_out(in_features, out_features, bias=True, seed=0):
    """An nn.Linear whose weight is a transposed view of (in, out) memory, as GPT-2's weights load."""
    generator = torch.Generator().manual_seed(seed)
    linear = nn.Linear(in_features, out_features, bias=bias, device="meta")
    linear.weight = nn.Parameter(torch.randn(in_features, out_features, generator=generator).t(), requires_grad=False)
    if bias:
        linear.bias = nn.Parameter(torch.randn(out_features, generator=generator), requires_grad=False)
    return linear


@pytest.mark.parametrize("in_features, out_features, bias", GPT2_MATRICES, ids=GPT2_MATRIX_NAMES)
def test_rows_get_nn_linears_numbers_to_float32_rounding(in_features, out_features, bias, kernel):
    linear = linear_stored_in_out(in_features, out_features, bias)
    x = torch.randn(3, 5, in_features, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = F.linear(x, linear.weight, linear.bias)
        got = RowInvariantLinear(linear, kernel)(x)
    assert got.shape == expected.shape == (3, 5, out_features)
    # The same products, summed in another order: float32's last digits may differ, nothing more.
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())


def onednn_packs_bfloat16() -> bool:
    """Whether oneDNN multiplies bfloat16 on this CPU: AVX-512 or AVX-NE-CONVERT, not AVX2 alone."""
    try:
        torch.ops.mkldnn._reorder_linear_weight(torch.ones(8, 8, dtype=torch.bfloat16), None)
        return True
    except RuntimeError:  # "bf16 path needs the cpu support avx_ne_convert or avx512bw, avx512vl and avx512dq"
        return False


@pytest.mark.parametrize("in_features, out_features, bias", GPT2_MATRICES, ids=GPT2_MATRIX_NAMES)
@pytest.mark.parametrize("gelu", [False, True], ids=["", "then GELU"])
def test_bfloat16_rows_get_their_exact_products_rounded_to_bfloat16(in_features, out_features, bias, gelu):
    """Ours in bfloat16: float32 sums of the bfloat16 weights and inputs, rounded once, as a bfloat16 nn.Linear
    does: within one step of bfloat16 of the exact product (float64 here), never more."""
    if writer_kernels() is None:
        pytest.skip("row_products.cpp cannot run or be built here (stderr says why)")
    linear = linear_stored_in_out(in_features, out_features, bias).to(torch.bfloat16)
    x = torch.randn(4, in_features, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    layer = RowInvariantLinear(linear, "row_products")
    layer.gelu = gelu
    with torch.no_grad():
        exact = F.linear(x.double(), linear.weight.double(), None if linear.bias is None else linear.bias.double())
        exact = F.gelu(exact, approximate="tanh") if gelu else exact
        got = layer(x)
    assert got.dtype == torch.bfloat16 and got.shape == (4, out_features)
    # a bfloat16 step is 2⁻⁷ of the number's power of two: at most 2⁻⁸ relative off, once rounded to nearest
    assert ((got.double() - exact).abs() <= exact.abs() * 2**-8 + 1e-4).all()


@pytest.mark.parametrize("in_features, out_features", [(768, 3072), (80, 70)], ids=["c_fc", "odd"])
def test_our_kernel_applies_gelu_to_float32_rounding(in_features, out_features):
    if writer_kernels() is None:
        pytest.skip("row_products.cpp cannot run or be built here (stderr says why)")
    linear = linear_stored_in_out(in_features, out_features)
    x = torch.randn(3, in_features, generator=torch.Generator().manual_seed(1))
    layer = RowInvariantLinear(linear, "row_products")
    with torch.no_grad():
        product = layer(x)
        layer.gelu = True
        got = layer(x)
    torch.testing.assert_close(got, F.gelu(product, approximate="tanh"), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype, kernel_name", [(torch.float32, "row_products"), (torch.float32, "onednn"),
                                                (torch.bfloat16, "row_products"), (torch.bfloat16, "onednn")],
                         ids=["float32-ours", "float32-onednn", "bfloat16-ours", "bfloat16-onednn"])
@pytest.mark.parametrize("in_features, out_features, bias", GPT2_MATRICES + [(32, 96, True), (80, 64, True)],
                         ids=GPT2_MATRIX_NAMES + ["tiny", "odd"])
def test_a_row_gets_the_same_bits_alone_and_among_any_number_of_others(in_features, out_features, bias, dtype,
                                                                        kernel_name):
    if kernel_name == "row_products" and writer_kernels() is None:
        pytest.skip("row_products.cpp cannot run or be built here (stderr says why)")
    if (dtype, kernel_name) == (torch.bfloat16, "onednn") and not onednn_packs_bfloat16():
        pytest.skip(f"oneDNN cannot multiply bfloat16 on this CPU ({torch.backends.cpu.get_cpu_capability()})")
    layer = RowInvariantLinear(linear_stored_in_out(in_features, out_features, bias).to(dtype), kernel_name)
    generator = torch.Generator().manual_seed(2)
    row = torch.randn(1, in_features, generator=generator).to(dtype)
    with torch.no_grad():
        alone = layer(row)
        for rows in (2, 3, 4, 7, 31, 32, 33, 100):  # past 32, padded with rows of zeros
            others = (torch.randn(rows, in_features, generator=generator) * 10).to(dtype)
            for where in (0, rows // 2, rows - 1):
                batch = others.clone()
                batch[where] = row[0]
                assert torch.equal(layer(batch)[where], alone[0]), f"row {where} of {rows}"


def test_our_kernels_bits_do_not_depend_on_the_number_of_cores():
    """Ours shares out blocks of outputs between the cores, never a sum: one core or all give the same bits."""
    if writer_kernels() is None:
        pytest.skip("row_products.cpp cannot run or be built here (stderr says why)")
    layer = RowInvariantLinear(linear_stored_in_out(3072, 768), "row_products")
    rows = torch.randn(5, 3072, generator=torch.Generator().manual_seed(3))
    cores = torch.get_num_threads()
    with torch.no_grad():
        every_core = layer(rows)
        torch.set_num_threads(1)
        try:
            one_core = layer(rows)
        finally:
            torch.set_num_threads(cores)
    assert torch.equal(one_core, every_core)


def test_the_float32_writer_multiplies_with_our_kernel_where_it_can_be_built(tiny_reference):
    writer = load_writer(tiny_reference)
    expected = "row_products" if writer_kernels() is not None else "onednn"
    assert {layer.kernel for layer in writer.modules() if isinstance(layer, RowInvariantLinear)} == {expected}


@pytest.mark.parametrize("compiler, why", [("no-such-compiler", "no C++ compiler ('no-such-compiler' is not on PATH)"),
                                           ("false", "the build failed")], ids=["no compiler", "the build fails"])
def test_without_a_working_compiler_the_writer_says_why_and_uses_pytorchs_own_operations(tmp_path, compiler, why,
                                                                                         tiny_dir):
    """A teacher's laptop or a Space without a C++ compiler still writes, a line on stderr saying why it is slower:
    oneDNN multiplies, the course's Block computes each layer."""
    if torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
        pytest.skip("this CPU never builds our kernels: the fallback is the only path here")
    script = ("import sys, torch; from model.loading.reference import load_reference; "
              "from model.serving.writer import load_writer; from model.serving.sequence import write_greedily; "
              "from model.serving.products import default_kernel; "
              "writer = load_writer(load_reference(sys.argv[1], device='cpu')); "
              "print(default_kernel(torch.float32), default_kernel(torch.bfloat16)); "
              "print(type(writer.transformer.h[0]).__name__, len(write_greedily(writer, [1, 2, 3], 5)))")
    env = dict(os.environ, CXX=compiler, TORCH_EXTENSIONS_DIR=str(tmp_path))  # an empty build cache
    done = subprocess.run([sys.executable, "-c", script, str(tiny_dir)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["onednn", "onednn", "Block", "5"]
    assert done.stderr.count("note: the writer multiplies with oneDNN and attends with PyTorch's attention, not with "
                             f"its own kernels (model/serving/*.cpp): {why}") == 1
    assert "Traceback" not in done.stderr


def test_once_the_kernels_are_built_no_number_of_rows_takes_more_memory(trained_dir, kernel):
    """oneDNN keeps a kernel for each number of rows it meets: without a bound a server grows with every new
    group size a class makes (about half a MB each here, for each shape of matrix); ours keeps nothing. Measured
    in a process of its own: this one holds every other test's threads and gigabytes, which move its resident
    memory too."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as fresh:
        assert fresh.submit(growth_after_building_kernels, str(trained_dir), kernel).result() < 8 * 2**20


def growth_after_building_kernels(model_dir: str, kernel: str) -> int:
    """Bytes of resident memory that products of 120 row counts from 1 to 256 add once the kernels are built."""
    writer = use_row_invariant_products(load_gpt(load_reference(model_dir, device="cpu")), kernel)
    layers = [layer for layer in writer.modules() if isinstance(layer, RowInvariantLinear)]
    assert build_kernels(writer, 256) == len({rows_computed(n) for n in range(1, 257)}) == 32 + 7
    release_freed_memory()
    before = psutil.Process().memory_info().rss
    with torch.inference_mode():
        for n in random.Random(0).sample(range(1, 257), 120):
            for layer in layers:
                layer(torch.zeros(n, layer.in_features))
    release_freed_memory()
    return psutil.Process().memory_info().rss - before


def test_the_weight_and_bias_are_the_linears_own_parameters():
    model = nn.Sequential(linear_stored_in_out(64, 96), nn.GELU(), linear_stored_in_out(96, 32))
    before = model.state_dict(keep_vars=True)
    use_row_invariant_products(model)
    assert [type(layer) for layer in model] == [RowInvariantLinear, nn.GELU, RowInvariantLinear]
    after = model.state_dict(keep_vars=True)
    assert list(after) == list(before) and all(after[name] is before[name] for name in before)


def test_the_writing_model_keeps_the_tie_and_shares_the_references_memory(gpt2_reference):
    writer = load_writer(gpt2_reference).state_dict(keep_vars=True)
    theirs = gpt2_reference.state_dict()
    assert writer["lm_head.weight"] is writer["transformer.wte.weight"]
    assert all(writer[name].data_ptr() == theirs[name].data_ptr() for name in theirs)


# --- the writing model ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["tiny", "trained", pytest.param("gpt2", marks=pytest.mark.slow)])
def test_the_writing_model_writes_token_for_token_what_reference_generate_writes(request, name):
    reference = request.getfixturevalue(f"{name}_reference")
    writer = load_writer(reference)
    assert isinstance(writer.transformer.h[0].mlp.c_fc, RowInvariantLinear) and isinstance(writer.lm_head,
                                                                                         RowInvariantLinear)
    n = min(GREEDY.max_new_tokens, reference.config.n_positions - len(PROMPT))  # within the tiny ones' context
    assert generate(writer, PROMPT, replace(GREEDY, max_new_tokens=n)) == reference_greedy(reference, PROMPT, n)


def test_a_bfloat16_writer_multiplies_packed_bfloat16_and_keeps_the_tie(tiny_reference, cpu_writes_bfloat16):
    writer = load_writer(tiny_reference, "bfloat16")
    assert {(p.dtype, p.is_contiguous()) for p in writer.parameters()} == {(torch.bfloat16, True)}
    assert writer.lm_head.weight is writer.transformer.wte.weight
    assert isinstance(writer.transformer.h[0].mlp.c_fc, RowInvariantLinear)
    assert writer.transformer.h[0].mlp.c_fc.packed_weight.dtype == torch.bfloat16  # half the bytes to read


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_writers_mlp_computes_gelu_in_its_first_product_where_that_is_ours(tiny_reference, dtype, request):
    if dtype == "bfloat16":
        request.getfixturevalue("cpu_writes_bfloat16")
    mlp = load_writer(tiny_reference, dtype).transformer.h[0].mlp
    if mlp.c_fc.kernel == "row_products":
        assert mlp.c_fc.gelu and type(mlp.gelu) is nn.Identity  # GELU once, at the end of c_fc
    else:
        assert not mlp.c_fc.gelu and type(mlp.gelu) is nn.GELU


def test_gelu_moves_into_the_product_only_for_gpt2s_own_gelu(tiny_ours):
    """A variant with another activation (the exact GELU, say) keeps it: the kernel computes the tanh one only."""
    if writer_kernels() is None:
        pytest.skip("row_products.cpp cannot run or be built here (stderr says why)")
    model = copy.deepcopy(tiny_ours)
    model.transformer.h[0].mlp.gelu = nn.GELU()
    products.gelu_in_products(use_row_invariant_products(model))
    first, second = model.transformer.h[0].mlp, model.transformer.h[1].mlp
    assert (first.c_fc.gelu, type(first.gelu)) == (False, nn.GELU)
    assert (second.c_fc.gelu, type(second.gelu)) == (True, nn.Identity)


def test_the_writer_writes_bfloat16_with_onednn_where_it_can_and_with_ours_elsewhere():
    assert products.onednn_multiplies_bfloat16() == onednn_packs_bfloat16()
    assert products.bfloat16_available() == (writer_kernels() is not None or onednn_packs_bfloat16())
    if onednn_packs_bfloat16():  # AVX-512: oneDNN's bfloat16 instructions
        assert products.default_kernel(torch.bfloat16) == "onednn"
    elif writer_kernels() is not None:  # AVX2 only: ours, no bfloat16 instructions needed
        assert products.default_kernel(torch.bfloat16) == "row_products"


def test_a_cpu_that_cannot_write_bfloat16_is_told_to_use_float32(tiny_reference, monkeypatch):
    monkeypatch.setattr(products, "bfloat16_available", lambda: False)  # AVX2 only, and no compiler
    with pytest.raises(ValueError, match="this CPU cannot write in bfloat16: .* use --dtype float32"):
        load_writer(tiny_reference, "bfloat16")
    with pytest.raises(ValueError, match="float16 is for GPUs; on the CPU use --dtype float32"):
        load_writer(tiny_reference, "float16")
    assert load_writer(tiny_reference).lm_head.weight.dtype == torch.float32  # float32 writes on any CPU
