"""The class's floor in the speed benchmark (tests/benchmarks/arithmetic.py) counts the class's own arithmetic."""
import torch
from torch.utils.flop_counter import FlopCounterMode

from model.gpt import GPT, GPTConfig
from tests.benchmarks.arithmetic import class_gflop, float32_rate, floor
from tests.benchmarks.peers import ours_class

MATRIX_PRODUCTS = {"addmm", "mm"}  # nn.Linear's; the attention's are the class's few others


@torch.inference_mode()
def test_the_floor_counts_the_products_the_engine_computes_in_a_class():
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_positions=64, vocab_size=97, n_layer=2, n_head=2, n_embd=32)).eval()  # nn.Linear products
    prompts = [[1, 2, 3], [4, 5, 6, 7, 8], [9] * 11]  # of other lengths, read packed as a class's are
    with FlopCounterMode(display=False) as counter:
        written = ours_class(model, prompts, 6)()
    assert [len(tokens) for tokens in written] == [6, 6, 6]
    counted = sum(flops for op, flops in counter.get_flop_counts()["Global"].items()
                  if op.__name__.split(".")[0] in MATRIX_PRODUCTS)
    assert counted > 0 and round(class_gflop(model, prompts, 6) * 1e9) == counted


@torch.inference_mode()
def test_the_floor_is_the_class_at_the_better_rate_measured_around_it():
    model = GPT(GPTConfig(n_positions=64, vocab_size=97, n_layer=2, n_head=2, n_embd=32)).eval()
    before, after = float32_rate(model, rows=4), float32_rate(model, rows=4)
    for rate in (before, after):
        assert rate["best"] == max(rate["ours_gflop_s"], rate["sgemm_gflop_s"]) > 0 and rate["step_gflop_s"] > 0
    result = floor(10.0, before, after)
    assert result["seconds"] == 10.0 / max(before["best"], after["best"])
    assert result["step_seconds"] == 10.0 / max(before["step_gflop_s"], after["step_gflop_s"])
