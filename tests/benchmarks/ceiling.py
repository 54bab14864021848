"""The memory-bandwidth ceiling, and where a generation's time goes below it.

Writing a token reads every weight once, so no model can write faster than the machine's memory
bandwidth divided by the bytes of weights per token. How close ours comes is split in two: the share
of a generation's time its matrix-vector products take (what the rest of the model costs), and a sum
over the same weights (how fast the products could read them, at best).
"""
import statistics

import torch
from torch import nn
from torch.nn import functional as F

from model.serving import products
from model.serving.products import RowInvariantLinear, use_row_invariant_products
from tests.benchmarks.machine import GB
from tests.benchmarks.runs import ours
from tests.benchmarks.timing import quiet_run


def memory_bandwidth(device: torch.device, args, mib: int = 512, repeats: int = 7) -> dict:
    """GB/s of three ways to read the same bytes, each the best of `repeats`: the simplest streaming read
    (a sum over a buffer far larger than any cache, on every thread), and a float32 matrix-vector product
    over it stored (n_embd, vocab)-like, once as F.linear computes it (BLAS) and once as our model does
    (oneDNN's packed product on the CPU: what a model bound by its matrix-vector products could hope for)."""
    n_embd = 768
    buffer = torch.ones(n_embd, mib * 2**20 // 4 // n_embd, device=device)
    x = torch.ones(1, n_embd, device=device)
    linear = nn.Linear(n_embd, buffer.size(1), bias=False, device="meta")
    linear.weight = nn.Parameter(buffer.t(), requires_grad=False)  # (out, in) over (in, out) memory, as ours
    cpu = device.type == "cpu" and products.available()
    our_layer = use_row_invariant_products(nn.Sequential(linear)) if cpu else linear
    flat = buffer.view(-1)  # a 1-D sum: torch's fastest reduction (a 2-D one reads slower)
    results = {}
    for name, fn in {"read": lambda: flat.sum(), "blas_gemv": lambda: F.linear(x, buffer.t()),
                     "ours_gemv": lambda: our_layer(x)}.items():
        fn()
        fastest = min(quiet_run(fn, device, args)[0] for _ in range(repeats))  # a ceiling: the best seen
        results[f"{name}_gb_s"] = buffer.numel() * 4 / fastest / GB
    results["buffer_mib"] = mib
    return results


def weight_bytes_per_token(model) -> int:
    """Bytes of weights one new token reads: every parameter once (the tied wte/lm_head counts once,
    read whole by the lm_head), except the position embedding, of which it reads one row."""
    wpe = model.transformer.wpe.weight
    return sum(p.numel() * p.element_size() for p in model.parameters()) - (wpe.numel() - wpe.size(1)) * wpe.element_size()


def matrix_products_share(model, prompt, n, device, args) -> dict:
    """How much of a generation's time its matrix-vector products take, run alone and back to back.

    One generation of n tokens; the same n tokens' worth of products (every nn.Linear of the model
    once per token, in the model's order, on a vector of the right width); and the same weights read
    by a sum over each, the simplest read there is: what a perfect matrix-vector kernel could do.
    --repeats rounds, the order rotating; each share is taken round by round, so all three see the
    same memory bandwidth. The rest of a generation's time is attention, layer norms, GELU, sampling
    and Python."""
    linears = [m for m in model.modules() if isinstance(m, (nn.Linear, RowInvariantLinear))]
    dtype = linears[0].weight.dtype
    inputs = [torch.randn(1, 1, linear.in_features, device=device, dtype=dtype) for linear in linears]
    # Each weight as one flat run of its own memory: a 1-D sum is torch's fastest reduction.
    storage = [(w if w.is_contiguous() else w.t()).view(-1) for w in (linear.weight for linear in linears)]

    @torch.inference_mode()
    def products():
        for _ in range(n):
            for linear, x in zip(linears, inputs):
                linear(x)

    def sums():
        for _ in range(n):
            for weight in storage:
                weight.sum()
    times = {"generation": [], "products": [], "sums": []}
    fns = {"generation": ours(model, prompt, n), "products": products, "sums": sums}
    for fn in fns.values():
        fn()
    order = list(fns)
    for i in range(args.repeats):
        for name in order[i % 3:] + order[:i % 3]:
            times[name].append(quiet_run(fns[name], device, args)[0])
    shares = [p / g for p, g in zip(times["products"], times["generation"])]
    sum_shares = [s / g for s, g in zip(times["sums"], times["generation"])]
    weight_bytes = sum(linear.weight.numel() * linear.weight.element_size() for linear in linears)
    return {"share": statistics.median(shares), "share_pairs": shares, "matrices": len(linears),
            "sum_share": statistics.median(sum_shares), "sum_share_rounds": sum_shares,
            "ms_per_token": statistics.median(times["products"]) / n * 1e3,
            "gb_s": weight_bytes * n / statistics.median(times["products"]) / GB,
            "sum_gb_s": weight_bytes * n / statistics.median(times["sums"]) / GB}


def ceiling(tokens_per_s: float, per_token: int, bandwidth: dict, products: dict) -> dict:
    """Ours (tokens_per_s, per_token bytes of weights) against the ceilings the bandwidth sets."""
    out = {"weight_mb_per_token": per_token / 1e6,
           "read_ceiling_tokens_per_s": bandwidth["read_gb_s"] * GB / per_token,
           "gemv_ceiling_tokens_per_s": bandwidth["ours_gemv_gb_s"] * GB / per_token}
    fraction = out["fraction_of_read_ceiling"] = tokens_per_s / out["read_ceiling_tokens_per_s"]
    out["fraction_of_gemv_ceiling"] = tokens_per_s / out["gemv_ceiling_tokens_per_s"]
    # What the fraction would be if everything but the matrix-vector products took no time.
    out["fraction_if_only_matrix_products"] = fraction / products["share"]
    # If the products read their weights as fast as a sum does (the best a kernel could do), with the
    # rest of the model as it is, and with nothing else taking time.
    out["fraction_with_sum_pace_products"] = fraction / (products["sum_share"] + 1 - products["share"])
    out["fraction_if_only_sums"] = fraction / products["sum_share"]
    return out
