"""A written token's step (written_token.cpp), in float32 and bfloat16: the course's Block's numbers, the same bits
for a row alone or among others, and the course's code where the kernel is not used."""
import copy
import threading
import time

import pytest
import torch
from torch import nn

from model.gpt import Block, CausalSelfAttention, GPTConfig, KVCache
from model.serving.kernels import writer_kernels
from model.serving.products import gelu_in_products, use_row_invariant_products
from model.serving.writer import in_dtype, load_writer
from model.serving.written_token import WrittenTokenBlock, use_written_token_step, written_token_block

GPT2_HEADS = GPTConfig(n_layer=2, n_head=12, n_embd=768)
ODD_HEADS = GPTConfig(n_layer=2, n_head=3, n_embd=60)  # heads of 20: not a whole number of vectors
TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 2e-2}  # bfloat16: the two round in different places


@pytest.fixture(autouse=True)
def kernel():
    if writer_kernels() is None:
        pytest.skip(f"our kernels cannot run or be built here ({torch.backends.cpu.get_cpu_capability()}; "
                    f"stderr says why)")


def block_pair(config: GPTConfig, dtype=torch.float32, seed: int = 0) -> tuple[Block, WrittenTokenBlock]:
    """The course's Block for the last layer, with the writer's products (GELU at the end of c_fc), and the same
    module computed by our kernel: only the step differs."""
    torch.manual_seed(seed)
    course = Block(config, layer=config.n_layer - 1).eval().to(dtype)
    for norm in (course.ln_1, course.ln_2):  # not nn.LayerNorm's ones and zeros: a mix-up would show
        nn.init.normal_(norm.weight, 1.0, 0.2)
        nn.init.normal_(norm.bias, 0.0, 0.2)
    course = gelu_in_products(use_row_invariant_products(course))
    ours = written_token_block(copy.deepcopy(course))
    assert type(ours) is WrittenTokenBlock
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
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
@torch.inference_mode()
def test_a_written_token_gets_the_courses_block_to_its_types_rounding(config, dtype):
    course, ours = block_pair(config, dtype)
    pasts = [0, 1, 7, 40]  # a row's first position, a short past, and longer ones, side by side
    course_caches, our_caches = caches_holding(config, pasts, dtype=dtype), caches_holding(config, pasts, dtype=dtype)
    x = new_positions(config, len(pasts), dtype=dtype)
    expected, got = course(x, course_caches), ours(x, our_caches)
    assert got.shape == expected.shape == (len(pasts), 1, config.n_embd) and got.dtype == dtype
    tolerance = TOLERANCE[dtype]
    torch.testing.assert_close(got, expected, rtol=tolerance, atol=tolerance * expected.abs().max().item())
    for theirs, mine, past in zip(course_caches, our_caches, pasts):
        assert mine.length == theirs.length == past + 1
        torch.testing.assert_close(mine.keys, theirs.keys, rtol=tolerance, atol=tolerance)
        torch.testing.assert_close(mine.values, theirs.values, rtol=tolerance, atol=tolerance)


class Given(nn.Module):
    """A layer that gives back the same tensor whatever it is given."""

    def __init__(self, output: torch.Tensor):
        super().__init__()
        self.output = output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
@torch.inference_mode()
def test_its_attention_alone_gets_the_courses_attention(dtype):
    """The kernel's attention on the same queries, keys and values as the course's: a mistake there shows here."""
    attention = CausalSelfAttention(GPT2_HEADS, layer=1).eval().to(dtype)
    pasts = [0, 5, 40]
    course_caches, our_caches = caches_holding(GPT2_HEADS, pasts, dtype=dtype), caches_holding(GPT2_HEADS, pasts,
                                                                                               dtype=dtype)
    qkv = torch.randn(len(pasts), 1, 3 * GPT2_HEADS.n_embd, generator=torch.Generator().manual_seed(3)).to(dtype)
    got = writer_kernels().attend_new_positions(qkv, [c.keys for c in our_caches], [c.values for c in our_caches], 1,
                                                pasts, GPT2_HEADS.n_head)
    attention.c_attn, attention.c_proj = Given(qkv), nn.Identity()  # the course's attention, from the same qkv
    expected = attention(torch.zeros(len(pasts), 1, GPT2_HEADS.n_embd, dtype=dtype), course_caches)
    tolerance = TOLERANCE[dtype]
    torch.testing.assert_close(got, expected, rtol=tolerance, atol=tolerance)
    assert all(torch.equal(mine.keys, theirs.keys) for mine, theirs in zip(our_caches, course_caches))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
@torch.inference_mode()
def test_a_row_gets_the_same_bits_alone_and_among_any_number_of_others(dtype):
    _, ours = block_pair(GPT2_HEADS, dtype)
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
    """The cores take chunks of the work in turn (work_sharing.h): any number of them, taking any chunks, gives the
    same bits."""
    _, ours = block_pair(GPT2_HEADS)
    pasts = [(7 * i) % 61 for i in range(30)]  # a class's rows, their caches of many lengths
    x = new_positions(GPT2_HEADS, len(pasts))
    every_core = ours(x, caches_holding(GPT2_HEADS, pasts))
    cores = torch.get_num_threads()
    for threads in (1, 3):
        torch.set_num_threads(threads)
        try:
            assert torch.equal(ours(x, caches_holding(GPT2_HEADS, pasts)), every_core), f"{threads} threads"
        finally:
            torch.set_num_threads(cores)


@torch.inference_mode()
def test_a_full_cache_is_an_error_that_says_so():
    _, ours = block_pair(GPT2_HEADS)
    cache = caches_holding(GPT2_HEADS, [2])[0]
    cache.length = cache.capacity
    with pytest.raises(RuntimeError, match=f"{cache.capacity + 1} positions do not fit this cache of {cache.capacity}"):
        ours(new_positions(GPT2_HEADS, 1), [cache])


@torch.inference_mode()
def test_a_prompts_chunk_is_read_by_the_courses_block():
    """Several new positions at once (a prompt's chunk) take the course's code, the same bits."""
    course, ours = block_pair(GPT2_HEADS)
    x = torch.randn(2, 3, GPT2_HEADS.n_embd, generator=torch.Generator().manual_seed(7))
    course_caches, our_caches = caches_holding(GPT2_HEADS, [0, 9]), caches_holding(GPT2_HEADS, [0, 9])
    assert torch.equal(ours(x, our_caches), course(x, course_caches))
    assert torch.equal(ours(x), course(x))


def test_the_float32_and_bfloat16_writers_take_the_step_where_their_products_are_ours(tiny_reference,
                                                                                       cpu_writes_bfloat16):
    for dtype in ("float32", "bfloat16"):
        writer = load_writer(tiny_reference, dtype)
        ours = writer.transformer.h[0].mlp.c_fc.kernel == "row_products"  # bfloat16 on AVX-512: oneDNN's
        expected = WrittenTokenBlock if ours else Block
        assert {type(block) for block in writer.transformer.h} == {expected}, dtype


def test_a_block_the_kernel_does_not_compute_keeps_the_courses_code(tiny_ours):
    """A variant (the exact GELU, say), nn.Linear's own products, or float16: the course's Block."""
    model = gelu_in_products(use_row_invariant_products(copy.deepcopy(tiny_ours)))
    model.transformer.h[0].mlp.gelu, model.transformer.h[0].mlp.c_fc.gelu = nn.GELU(), False
    use_written_token_step(model)
    assert [type(block) for block in model.transformer.h] == [Block, WrittenTokenBlock]
    plain = use_written_token_step(copy.deepcopy(tiny_ours))  # products not packed for our kernel
    assert {type(block) for block in plain.transformer.h} == {Block}
    float16 = use_written_token_step(in_dtype(copy.deepcopy(tiny_ours), "float16"))
    assert {type(block) for block in float16.transformer.h} == {Block}


def another_thread_ran_within(call, fraction: float = 0.75) -> bool:
    """Whether another Python thread ran within the first `fraction` of `call`'s time: none can while the call holds
    the GIL. It is woken just before the call and needs the GIL to note the time."""
    woken, ran_at = threading.Event(), []
    thread = threading.Thread(target=lambda: (woken.wait(), ran_at.append(time.perf_counter())))
    thread.start()
    woken.set()
    started = time.perf_counter()
    call()
    returned = time.perf_counter()
    thread.join()
    return ran_at[0] < started + fraction * (returned - started)


@torch.inference_mode()
def test_the_kernels_let_other_python_threads_run_while_they_compute():
    """As PyTorch's own operations do. In the app, the server's event loop takes students' requests and sends their
    text while the engine computes, rather than waiting for each layer's call to end."""
    kernels, (_, ours) = writer_kernels(), block_pair(GPT2_HEADS)
    rows = 256  # each call takes 10 ms or more: a woken thread has time to run within it
    caches, x = caches_holding(GPT2_HEADS, [128] * rows), new_positions(GPT2_HEADS, rows)
    keys, values, lengths = [c.keys for c in caches], [c.values for c in caches], [c.length for c in caches]
    head = kernels.pack(torch.randn(16384, GPT2_HEADS.n_embd))  # (out, in) -> packed, as the writer's lm_head
    qkv = torch.randn(rows, 1, 3 * GPT2_HEADS.n_embd)
    calls = {
        "linear": lambda: kernels.linear(x.view(rows, -1), head, None, 16384, False, None),
        "attend_new_positions": lambda: kernels.attend_new_positions(qkv, keys, values, 1, lengths, GPT2_HEADS.n_head),
        "written_token_layer": lambda: kernels.written_token_layer(x, ours.kernel_params, ours.ln_1.eps, keys, values,
                                                                   ours.attn.layer, lengths, GPT2_HEADS.n_head),
    }
    held = [name for name, call in calls.items() if not another_thread_ran_within(call)]
    assert not held, f"these hold the GIL while they compute: {held}"
