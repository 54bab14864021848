"""Ours without the KV cache: what the cache is worth. One run at the shorter length; at the longer one
an estimate from timed full-context steps (a real run takes long: --full-no-cache does it anyway)."""
import torch

from tests.benchmarks.runs import ours
from tests.benchmarks.timing import quiet_run


def no_cache(model, prompt, args, device) -> dict:
    n_short, n_long = args.new_tokens[0], args.new_tokens[-1]
    seconds, _, cores, _ = quiet_run(ours(model, prompt, n_short, use_cache=False), device, args)
    out = {n_short: {"measured_s": seconds, "tokens_per_s": n_short / seconds, "other_load_cores": cores,
                     "estimate": no_cache_estimate(model, prompt, n_short, device, args)}}
    if args.full_no_cache:
        seconds, _, cores, _ = quiet_run(ours(model, prompt, n_long, use_cache=False), device, args)
        out[n_long] = {"measured_s": seconds, "tokens_per_s": n_long / seconds, "other_load_cores": cores}
    else:
        estimate = no_cache_estimate(model, prompt, n_long, device, args)
        out[n_long] = {"measured_s": None, "tokens_per_s": estimate["tokens_per_s"], "estimate": estimate}
    print(f"  no cache: {out[n_short]['tokens_per_s']:.1f} tok/s at {n_short}, "
          f"{out[n_long]['tokens_per_s']:.2f} tok/s at {n_long}{'' if args.full_no_cache else ' (estimated)'}", flush=True)
    return out


def no_cache_estimate(model, prompt_ids, n, device, args, points=5) -> dict:
    """Seconds a no-cache generation of n tokens takes, estimated from full-context forward passes.

    Without the cache, step k reads the whole context of len(prompt) + k tokens; time a few context
    lengths and sum the steps, interpolating linearly between them.
    """
    lengths = sorted({len(prompt_ids) + round(k * (n - 1) / (points - 1)) for k in range(points)})
    step_s = {}
    with torch.inference_mode():
        for length in lengths:
            idx = torch.tensor([(prompt_ids * (length // len(prompt_ids) + 1))[:length]], device=device)
            model(idx, last_only=True)
            step_s[length] = min(quiet_run(lambda: model(idx, last_only=True), device, args)[0] for _ in range(2))
    total = sum(_interpolate(step_s, len(prompt_ids) + k) for k in range(n))
    return {"seconds": total, "tokens_per_s": n / total, "step_s_at_context": step_s,
            "last_token_per_s": 1 / step_s[lengths[-1]]}


def _interpolate(points: dict, x: float) -> float:
    xs = sorted(points)
    for lo, hi in zip(xs, xs[1:]):
        if lo <= x <= hi:
            return points[lo] + (points[hi] - points[lo]) * (x - lo) / (hi - lo)
    return points[xs[-1]]
