"""The writer's attention for a written token (row_attention.cpp), in float32 and bfloat16: the course's numbers,
the same bits for a row alone or among others, and the course's attention where the kernel is not used."""
import copy

import pytest
import torch

from model.gpt import CausalSelfAttention, GPTConfig, KVCache
from model.serving.attention import NewPositionAttention, row_attention_kernel, use_row_attention
from model.serving.products import use_row_invariant_products
from model.serving.writer import in_dtype, load_writer

GPT2_HEADS = GPTConfig(n_layer=2, n_head=12, n_embd=768)
ODD_HEADS = GPTConfig(n_layer=2, n_head=3, n_embd=60)  # heads of 20: not a whole number of vectors


@pytest.fixture(autouse=True)
def kernel():
    if row_attention_kernel() is None:
        pytest.skip(f"row_attention.cpp cannot run or be built here ({torch.backends.cpu.get_cpu_capability()}; "
                    f"stderr says why)")


def attention_pair(config: GPTConfig, seed: int = 0, dtype=torch.float32) -> tuple[CausalSelfAttention,
                                                                                    NewPositionAttention]:
    """The course's attention for the last layer, and the same module computed by our kernel; both with the
    writer's products (a row's bits the same alone or among others), so that only attention differs."""
    torch.manual_seed(seed)
    course = CausalSelfAttention(config, layer=config.n_layer - 1).eval().to(dtype)
    course = use_row_invariant_products(course)
    ours = copy.deepcopy(course)
    ours.__class__ = NewPositionAttention
    return course, ours


def caches_holding(config: GPTConfig, pasts: list[int], seed: int = 1, dtype=torch.float32) -> list[KVCache]:
    """A cache per row, each holding `past` random positions in every layer, with room for more."""
    generator = torch.Generator().manual_seed(seed)
    caches = []
    for past in pasts:
        cache = KVCache(config, "cpu", dtype, past + 4)
        cache.keys.copy_(torch.randn(cache.keys.shape, generator=generator))
        cache.values.copy_(torch.randn(cache.values.shape, generator=generator))
        cache.length = past
        caches.append(cache)
    return caches


def new_positions(config: GPTConfig, rows: int, seed: int = 2, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(rows, 1, config.n_embd, generator=torch.Generator().manual_seed(seed)).to(dtype)


@pytest.mark.parametrize("config", [GPT2_HEADS, ODD_HEADS], ids=["gpt2's heads", "odd heads"])
@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)],
                         ids=["float32", "bfloat16"])
@torch.inference_mode()
def test_a_written_token_gets_the_courses_attention_to_its_types_rounding(config, dtype, tolerance):
    """In bfloat16 both round the attention's output (and the course its scores too): a few of bfloat16's steps."""
    course, ours = attention_pair(config, dtype=dtype)
    pasts = [0, 1, 7, 40]  # a row's first position, a short past, and longer ones, side by side
    course_caches, our_caches = caches_holding(config, pasts, dtype=dtype), caches_holding(config, pasts, dtype=dtype)
    x = new_positions(config, len(pasts), dtype=dtype)
    expected, got = course(x, course_caches), ours(x, our_caches)
    assert got.shape == expected.shape == (len(pasts), 1, config.n_embd) and got.dtype == dtype
    torch.testing.assert_close(got, expected, rtol=tolerance, atol=tolerance * expected.abs().max().item())
    for theirs, mine, past in zip(course_caches, our_caches, pasts):
        assert mine.length == theirs.length == past + 1
        assert torch.equal(mine.keys, theirs.keys) and torch.equal(mine.values, theirs.values)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
@torch.inference_mode()
def test_a_row_gets_the_same_bits_alone_and_among_any_number_of_others(dtype):
    _, ours = attention_pair(GPT2_HEADS, dtype=dtype)
    past = 13
    row = new_positions(GPT2_HEADS, 1, seed=3, dtype=dtype)
    alone = ours(row, caches_holding(GPT2_HEADS, [past], seed=4, dtype=dtype))
    for rows in (2, 5, 30):
        pasts = [(5 * i) % 37 for i in range(rows)]  # the others at other places of their own caches
        for where in (0, rows // 2, rows - 1):
            caches = caches_holding(GPT2_HEADS, pasts, seed=5, dtype=dtype)
            caches[where] = caches_holding(GPT2_HEADS, [past], seed=4, dtype=dtype)[0]
            batch = new_positions(GPT2_HEADS, rows, seed=6, dtype=dtype) * 10
            batch[where] = row[0]
            assert torch.equal(ours(batch, caches)[where], alone[0]), f"row {where} of {rows}"


@torch.inference_mode()
def test_its_bits_do_not_depend_on_the_number_of_cores():
    _, ours = attention_pair(GPT2_HEADS)
    pasts = [3, 30, 60]
    x = new_positions(GPT2_HEADS, len(pasts))
    every_core = ours(x, caches_holding(GPT2_HEADS, pasts))
    cores = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one_core = ours(x, caches_holding(GPT2_HEADS, pasts))
    finally:
        torch.set_num_threads(cores)
    assert torch.equal(one_core, every_core)


@torch.inference_mode()
def test_a_full_cache_is_an_error_that_says_so():
    _, ours = attention_pair(GPT2_HEADS)
    cache = caches_holding(GPT2_HEADS, [2])[0]
    cache.length = cache.capacity
    with pytest.raises(RuntimeError, match=f"{cache.capacity + 1} positions do not fit this cache of {cache.capacity}"):
        ours(new_positions(GPT2_HEADS, 1), [cache])


@torch.inference_mode()
def test_a_prompts_chunk_is_read_by_the_courses_attention():
    """Several new positions at once (a prompt's chunk) take the course's code, the same bits."""
    course, ours = attention_pair(GPT2_HEADS)
    x = torch.randn(2, 3, GPT2_HEADS.n_embd, generator=torch.Generator().manual_seed(7))
    course_caches, our_caches = caches_holding(GPT2_HEADS, [0, 9]), caches_holding(GPT2_HEADS, [0, 9])
    assert torch.equal(ours(x, our_caches), course(x, course_caches))
    assert torch.equal(ours(x), course(x))


def test_the_float32_and_bfloat16_writers_attend_with_our_kernel_and_a_half_precision_gpt_with_the_courses(
        tiny_reference, tiny_ours):
    for dtype in ("float32", "bfloat16"):
        writer = load_writer(tiny_reference, dtype)
        assert {type(block.attn) for block in writer.transformer.h} == {NewPositionAttention}, dtype
    float16 = use_row_attention(in_dtype(copy.deepcopy(tiny_ours), "float16"))  # not a type our kernel reads
    assert {type(block.attn) for block in float16.transformer.h} == {CausalSelfAttention}
