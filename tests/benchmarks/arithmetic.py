"""The arithmetic floor of a class: its matrix products' work at the fastest float32 rate this CPU reaches.

A lone stream reads every weight for one row, so memory bounds it (ceiling.py). A class of many rows reads each
weight once for all of them and is then arithmetic: every row's token is multiplied by every matrix. So no float32
engine writes a class in less time than its products' floating-point operations take at the fastest rate the CPU
multiplies float32, and no engine is faster than another by more than that other's time over this floor.

The rate is the better of two measured in the same run, each the best of many short calls: our products of the
class's rows by each of a layer's matrices, and the BLAS's sgemm of two 2048 × 2048 matrices, the best-known rate
of a CPU. Over a whole step our products fall short of it: they read the weights from memory, and a shared
machine's neighbours take cycles by the millisecond. So the rate of a whole written step of our products (every
matrix once for the class's rows, the best of a few steps) gives a second figure: the class's time if our engine
did nothing but its products. Both change from hour to hour, so they are measured just before and just after the
class's runs, the better kept.
"""
import time

import torch
from torch import nn

from model.serving.products import RowInvariantLinear

SGEMM_SIZE = 2048
REPEATS = 20  # the best of as many calls: a rate is what the CPU can do, not what a neighbour left it
STEP_REPEATS = 5  # a step's products are 50 calls and tens of milliseconds: fewer suffice


def class_gflop(model, prompts: list[list[int]], n: int) -> float:
    """GFLOP of a class's matrix products: every prompt position through every layer and the lm_head on each
    prompt's last position (all that sampling reads), then n - 1 written tokens a row through both (the first
    token comes from the prompt). A multiply-add is two operations; the attention's few are left out."""
    layers, head = _macs(model.transformer.h), _macs(model.lm_head)
    positions = sum(len(ids) for ids in prompts)
    total = positions * layers + len(prompts) * head + len(prompts) * (n - 1) * (layers + head)
    return 2 * total / 1e9


@torch.inference_mode()
def float32_rate(model, rows: int) -> dict:
    """GFLOP/s: our products of `rows` rows by each matrix of the first layer and the BLAS's sgemm of SGEMM_SIZE²
    matrices, each the best of REPEATS calls (`best`: the better of the two); and a written step's products, every
    matrix of `model` once for `rows` rows, the best of STEP_REPEATS steps."""
    ours = max(_best_gflop_s(lambda m=m, x=torch.randn(rows, m.in_features): m(x), 2 * rows * _macs(m), REPEATS)
               for m in _products(model.transformer.h[0]))
    a, b = torch.randn(SGEMM_SIZE, SGEMM_SIZE), torch.randn(SGEMM_SIZE, SGEMM_SIZE)
    sgemm = _best_gflop_s(lambda: torch.mm(a, b), 2 * SGEMM_SIZE ** 3, REPEATS)
    every = [(m, torch.randn(rows, m.in_features)) for m in _products(model)]  # the model's order, lm_head last

    def step():
        for m, x in every:
            m(x)
    return {"ours_gflop_s": ours, "sgemm_gflop_s": sgemm, "best": max(ours, sgemm),
            "step_gflop_s": _best_gflop_s(step, 2 * rows * _macs(model), STEP_REPEATS)}


def floor(gflop: float, before: dict, after: dict) -> dict:
    """The class's floor in seconds at the better rate measured around it, and at the better step's rate."""
    best, step = max(before["best"], after["best"]), max(before["step_gflop_s"], after["step_gflop_s"])
    return {"gflop": gflop, "gflop_s": best, "seconds": gflop / best, "step_gflop_s": step,
            "step_seconds": gflop / step, "before": before, "after": after}


def _products(module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, (nn.Linear, RowInvariantLinear))]


def _macs(module) -> int:
    """Multiply-adds of one row through every product of `module`."""
    return sum(m.in_features * m.out_features for m in _products(module))


def _best_gflop_s(fn, flop: float, repeats: int) -> float:
    fn()  # a first call packs, allocates and warms the cache
    fastest = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        fastest = min(fastest, time.perf_counter() - start)
    return flop / fastest / 1e9
