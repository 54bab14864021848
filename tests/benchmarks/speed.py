"""Speed and memory of our GPT next to transformers' GPT2LMHeadModel: one process, same weights.

    python -m tests.benchmarks.speed                          # a gpt2-shaped checkpoint, built locally
    python -m tests.benchmarks.speed --model ./gpt2-local     # any save_pretrained folder or hub id
    python -m tests.benchmarks.speed --out benchmark-results/speed.json --repeats 5

Run by hand (pytest does not collect it). It prints a table and writes the numbers as JSON:
- tokens/s of greedy generation, ours vs `generate`, for 128 and 512 new tokens: runs taken in pairs
  (the order alternating), the ratio computed pair by pair, and the medians; ours without the KV
  cache as well (one run at 128 tokens, at 512 an estimate from timed full-context steps);
- time to first token for a 16- and a 900-token prompt;
- the bandwidth ceiling: weight bytes read per token ÷ the memory bandwidth measured in this run, and
  how much of a generation's time its matrix-vector products alone take (what is left of the gap to
  the ceiling if the rest of the model were free), and a sum over the same weights (what is left if the
  products also read as fast as the simplest read can);
- start-up time (load reference + map + verify) and resident memory, measured in a fresh process;
- the same for bfloat16 (and float16 on a GPU), then which of issue 4's goals are met.

Timings on a shared machine are noisy: before each timed run the script waits (up to --quiet-wait
seconds) for other processes to leave the CPU, redoes a run they disturbed (--busy-threshold), and
records how busy they kept it.
"""
import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import psutil  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from model.matvec import SplitKLinear, use_split_k  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from model.bugs import BUGS  # noqa: E402
from model.fast import load_student  # noqa: E402
from model.gpt import GPT  # noqa: E402
from model.reference import load_reference  # noqa: E402
from model.sampling import SamplingSettings  # noqa: E402
from model.tokenizer import encode  # noqa: E402

TEXT = ("The history of the printing press begins in the fifteenth century, when a goldsmith in Mainz "
        "combined movable metal type, oil-based ink and a wooden press adapted from those used for wine. ")
GOALS = {"speedup_float32": 1.0, "bandwidth_fraction": 0.85, "speedup_half": 1.25, "app_rss_gb": 1.3}
GB = 1e9


# --- the machine ---------------------------------------------------------------------------------

def machine(device: torch.device) -> dict:
    info = {
        "cpu": _cpu_name(), "cores": psutil.cpu_count(logical=True), "memory_gb": psutil.virtual_memory().total / GB,
        "torch_threads": torch.get_num_threads(), "python": platform.python_version(), "torch": torch.__version__,
        "transformers": transformers.__version__, "blas": _blas(), "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _blas() -> str:
    parts = ["MKL" if torch.backends.mkl.is_available() else "no MKL",
             "oneDNN" if torch.backends.mkldnn.is_available() else "no oneDNN"]
    return ", ".join(parts)


class OtherLoad:
    """How many cores other processes kept busy while a measurement ran."""

    def __init__(self):
        self.me = psutil.Process()

    def __enter__(self):
        self.start = self._snapshot()
        return self

    def __exit__(self, *exc):
        self.cores = self._since(self.start)

    def _snapshot(self):
        cpu = psutil.cpu_times()
        busy = sum(getattr(cpu, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq", "steal"))
        mine = sum(self.me.cpu_times()[:4])  # user, system, children's user and system
        return time.perf_counter(), busy, mine

    def _since(self, start) -> float:
        wall, busy, mine = (b - a for a, b in zip(start, self._snapshot()))
        return max(0.0, (busy - mine) / wall) if wall > 0 else 0.0


def wait_for_quiet(max_wait: float, threshold: float = 0.25) -> float:
    """Wait until other processes use less than `threshold` cores (at most max_wait s); return the wait."""
    start = time.perf_counter()
    while time.perf_counter() - start < max_wait:
        with OtherLoad() as load:
            time.sleep(0.3)
        if load.cores < threshold:
            break
    return time.perf_counter() - start


# --- timing --------------------------------------------------------------------------------------

def synchronize(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def timed(fn, device):
    """(seconds, result, other processes' cores) of one call of fn."""
    synchronize(device)
    with OtherLoad() as load:
        start = time.perf_counter()
        result = fn()
        synchronize(device)
        seconds = time.perf_counter() - start
    return seconds, result, load.cores


def quiet_run(fn, device, args):
    """timed(fn), redone (at most --busy-retries times) while other processes took the CPU during it.

    On a 2-core machine another process on one core stalls every multi-threaded step of ours: such
    a run measures the neighbour, not the model. Returns (seconds, result, other cores, retries)."""
    for retry in range(args.busy_retries + 1):
        wait_for_quiet(args.quiet_wait)
        seconds, result, cores = timed(fn, device)
        if cores <= args.busy_threshold:
            break
    return seconds, result, cores, retry


def ours(model, ids, n, use_cache=True):
    settings = SamplingSettings(max_new_tokens=n, temperature=0, top_k=None, stop_at_eot=False)
    return lambda: model.generate(ids, settings, use_cache=use_cache)


def ours_first_token(model, ids):
    settings = SamplingSettings(max_new_tokens=1, temperature=0, top_k=None, stop_at_eot=False)
    return lambda: [next(iter(model.stream(ids, settings)))]


def theirs(reference, ids, n):
    idx = torch.tensor([ids], device=reference.device)

    @torch.inference_mode()
    def run():
        out = reference.generate(idx, attention_mask=torch.ones_like(idx), do_sample=False, max_new_tokens=n,
                                 min_new_tokens=n, eos_token_id=None, pad_token_id=0)
        return out[0, len(ids):].tolist()
    return run


def paired(a, b, repeats, device, args, scale=1.0) -> dict:
    """Run a and b `repeats` times each, in pairs, alternating which goes first.

    Returns per-run seconds of both, the ratio time_b / time_a pair by pair (>1: a is faster), the
    medians, whether every pair produced the same tokens, and how busy other processes kept the CPU.
    """
    a_s, b_s, ratios, same, load, retries = [], [], [], [], [], 0
    for i in range(repeats):
        order = [(a, a_s), (b, b_s)] if i % 2 == 0 else [(b, b_s), (a, a_s)]
        tokens = {}
        for fn, into in order:
            seconds, out, cores, retried = quiet_run(fn, device, args)
            into.append(seconds)
            tokens[id(into)] = out
            load.append(cores)
            retries += retried
        ratios.append(b_s[-1] / a_s[-1])
        same.append(tokens[id(a_s)] == tokens[id(b_s)])
        agree = next((k for k, (x, y) in enumerate(zip(tokens[id(a_s)], tokens[id(b_s)])) if x != y),
                     len(tokens[id(a_s)]))
    return {"ours_s": a_s, "reference_s": b_s, "ratio": ratios, "median_ratio": statistics.median(ratios),
            "ours_median_s": statistics.median(a_s), "reference_median_s": statistics.median(b_s),
            "ours_per_s": scale / statistics.median(a_s), "reference_per_s": scale / statistics.median(b_s),
            "identical": all(same), "tokens_agree_last_pair": agree, "other_load_cores": load,
            "busy_runs_redone": retries}


# --- the ceiling ---------------------------------------------------------------------------------

def memory_bandwidth(device: torch.device, args, mib: int = 512, repeats: int = 7) -> dict:
    """GB/s of three ways to read the same bytes, each the best of `repeats`: the simplest streaming read
    (a sum over a buffer far larger than any cache, on every thread), and a float32 matrix-vector product
    over it stored (n_embd, vocab)-like, once as F.linear computes it (BLAS) and once as our model does
    (split-K on the CPU: what a model bound by its matrix-vector products could hope for)."""
    n_embd = 768
    buffer = torch.ones(n_embd, mib * 2**20 // 4 // n_embd, device=device)
    x = torch.ones(1, n_embd, device=device)
    linear = nn.Linear(n_embd, buffer.size(1), bias=False, device="meta")
    linear.weight = nn.Parameter(buffer.t(), requires_grad=False)  # (out, in) over (in, out) memory, as ours
    ours = use_split_k(nn.Sequential(linear)) if device.type == "cpu" else linear
    flat = buffer.view(-1)  # a 1-D sum: torch's fastest reduction (a 2-D one reads at ~2/3 of the speed here)
    results = {}
    for name, fn in {"read": lambda: flat.sum(), "blas_gemv": lambda: F.linear(x, buffer.t()),
                     "ours_gemv": lambda: ours(x)}.items():
        fn()
        fastest = min(quiet_run(fn, device, args)[0] for _ in range(repeats))  # a ceiling: the best seen
        results[f"{name}_gb_s"] = buffer.numel() * 4 / fastest / GB
    results["buffer_mib"] = mib
    return results


def matrix_products_share(model, prompt, n, device, args) -> dict:
    """How much of a generation's time its matrix-vector products take, run alone and back to back.

    One generation of n tokens; the same n tokens' worth of products (every nn.Linear of the model
    once per token, in the model's order, on a vector of the right width); and the same weights read
    by a sum over each, the simplest read there is: what a perfect matrix-vector kernel could do.
    --repeats rounds, the order rotating; each share is taken round by round, so all three see the
    same memory bandwidth. The rest of a generation's time is attention, layer norms, GELU, sampling
    and Python."""
    linears = [m for m in model.modules() if isinstance(m, (nn.Linear, SplitKLinear))]
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


def weight_bytes_per_token(model) -> int:
    """Bytes of weights one new token reads: every parameter once (the tied wte/lm_head counts once,
    read whole by the lm_head), except the position embedding, of which it reads one row."""
    wpe = model.transformer.wpe.weight
    return sum(p.numel() * p.element_size() for p in model.parameters()) - (wpe.numel() - wpe.size(1)) * wpe.element_size()


# --- no cache: one run, or an estimate from timed steps ------------------------------------------

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


# --- start-up and resident memory, in a fresh process --------------------------------------------

def startup_probe(model_dir: str, device: str, dtype: str) -> dict:
    """What the app does at start-up, timed, with the process's resident memory after each step.

    The app: load the reference, build the float32 verifier (sharing the reference's memory) and the
    generation model (`load_student` in `dtype`), verify once, then a Verify tab run with every bug.
    """
    process = psutil.Process()
    rss = lambda: process.memory_info().rss / GB  # noqa: E731
    from model.verify import verify
    out = {"rss_after_imports_gb": rss()}
    start = time.perf_counter()
    reference = load_reference(model_dir, device)
    out["load_reference_s"] = time.perf_counter() - start
    t = time.perf_counter()
    verifier = GPT.from_hf(reference)
    student = load_student(reference, dtype)
    out["map_s"] = time.perf_counter() - t
    t = time.perf_counter()
    report = verify(reference, student=verifier)
    out["verify_s"] = time.perf_counter() - t
    out["startup_s"] = time.perf_counter() - start
    out["verified"] = report.verified
    out["rss_after_startup_gb"] = rss()
    caught = []
    for bug in BUGS:
        caught.append(verify(reference, bug=bug, student=verifier).verified)
    out["every_bug_caught"] = all(caught)
    out["rss_after_every_bug_gb"] = rss()
    t = time.perf_counter()
    try:
        import gradio  # noqa: F401 - the app imports it; what it adds to the resident memory counts
        out["gradio_import_s"], out["rss_app_gb"] = time.perf_counter() - t, rss()
    except ImportError:  # a machine with the model's requirements only: the app's figure is not measured
        out["gradio_import_s"], out["rss_app_gb"] = None, None
    out["peak_rss_gb"] = _peak_rss_gb()
    if reference.device.type == "cuda":
        out["cuda_allocated_gb"] = torch.cuda.memory_allocated() / GB
    del student
    return out


def _peak_rss_gb() -> float | None:
    """The process's high-water mark (Linux; ru_maxrss would carry the parent's over from the fork)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / GB
    except OSError:
        pass
    return None


def run_probe(model_dir: str, device: str, dtype: str) -> dict:
    command = [sys.executable, "-m", "tests.benchmarks.speed", "--probe", dtype, "--model", model_dir, "--device", device]
    done = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
    if done.returncode:
        raise RuntimeError(f"start-up probe failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- the benchmark -------------------------------------------------------------------------------

def bench_dtype(reference, dtype: str, args, device) -> dict:
    """Every speed figure for one dtype: ours (load_student) vs the reference in the same dtype."""
    model = load_student(reference, dtype)
    theirs_model = reference if dtype == "float32" else copy.deepcopy(reference).to(getattr(torch, dtype))
    prompt = _prompt(args.prompt_lengths[0])
    ours(model, prompt, 8)(), theirs(theirs_model, prompt, 8)()  # warm up both
    result = {"weight_bytes_per_token": weight_bytes_per_token(model), "generation": {}, "first_token": {}}
    for n in args.new_tokens:
        repeats = max(1, args.repeats if n == args.new_tokens[0] else args.repeats_long)
        result["generation"][n] = paired(ours(model, prompt, n), theirs(theirs_model, prompt, n), repeats, device,
                                         args, scale=n)
        print(f"  {dtype} {n} new tokens: {_pair_line(result['generation'][n], 'tok/s')}", flush=True)
    result["matrix_products"] = matrix_products_share(model, prompt, args.new_tokens[0], device, args)
    print(f"  {dtype} matrix-vector products alone: {result['matrix_products']['share']:.0%} of a generation's time, "
          f"a sum over the same weights {result['matrix_products']['sum_share']:.0%}", flush=True)
    for length in args.prompt_lengths:
        ids = _prompt(length)
        ours_first_token(model, ids)(), theirs(theirs_model, ids, 1)()
        result["first_token"][length] = paired(ours_first_token(model, ids), theirs(theirs_model, ids, 1),
                                               args.repeats, device, args)
        print(f"  {dtype} first token, {length}-token prompt: ours {result['first_token'][length]['ours_median_s']*1e3:.0f} ms, "
              f"reference {result['first_token'][length]['reference_median_s']*1e3:.0f} ms", flush=True)
    if dtype == "float32" or args.no_cache_all_dtypes:
        result["no_cache"] = no_cache(model, prompt, args, device)
    del theirs_model
    return result


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


def _prompt(length: int) -> list[int]:
    ids = encode(TEXT)
    return (ids * (length // len(ids) + 1))[:length]


def _pair_line(pair: dict, unit: str) -> str:
    return (f"ours {pair['ours_per_s']:.1f} {unit}, reference {pair['reference_per_s']:.1f} {unit}, "
            f"ratio {pair['median_ratio']:.2f}x (pairs: {', '.join(f'{r:.2f}' for r in pair['ratio'])}), "
            f"identical: {pair['identical']}")


def dtypes_for(device: torch.device, asked: list[str] | None) -> list[str]:
    if asked:
        return asked
    if device.type == "cuda":
        return ["float32"] + (["bfloat16"] if torch.cuda.is_bf16_supported() else []) + ["float16"]
    return ["float32", "bfloat16"]


def goals(results: dict) -> list[dict]:
    """Issue 4's goals, each with what was measured."""
    rows = []
    f32 = results["dtypes"]["float32"]
    gen = f32["generation"]
    ratio = min(gen[n]["median_ratio"] for n in gen)
    identical = all(gen[n]["identical"] for n in gen)
    rows.append(_goal("float32 tokens/s >= 1.0x generate, identical tokens",
                      f"{ratio:.2f}x (lower of {_lengths(gen)}), identical: {identical}",
                      ratio >= GOALS["speedup_float32"] and identical))
    fraction = f32["ceiling"]["fraction_of_read_ceiling"]
    alone, sum_pace = f32["ceiling"]["fraction_if_only_matrix_products"], f32["ceiling"]["fraction_with_sum_pace_products"]
    rows.append(_goal(">= 85% of the memory-bandwidth ceiling (float32)",
                      f"{fraction:.0%} ({alone:.0%} if only the matrix-vector products took time, "
                      f"{sum_pace:.0%} if they read as fast as a sum)",
                      fraction >= GOALS["bandwidth_fraction"]))
    for dtype in ("bfloat16", "float16"):
        if dtype in results["dtypes"]:
            gen = results["dtypes"][dtype]["generation"]
            ratio = min(gen[n]["median_ratio"] for n in gen)
            rows.append(_goal(f"{dtype} tokens/s >= 1.25x generate in {dtype}", f"{ratio:.2f}x (lower of {_lengths(gen)})",
                              ratio >= GOALS["speedup_half"]))
    longest = max(f32["first_token"])
    first = f32["first_token"][longest]
    rows.append(_goal(f"first token, {longest}-token prompt, no slower than the reference (float32)",
                      f"ours {first['ours_median_s']*1e3:.0f} ms vs {first['reference_median_s']*1e3:.0f} ms "
                      f"({first['median_ratio']:.2f}x)", first["median_ratio"] >= 1.0))
    probe = results["startup"].get("float32")
    if probe and probe["rss_app_gb"] is None:
        rows.append(_goal("app resident memory <= 1.3 GB (start-up, every bug verified, gradio imported)",
                          f"not measured: gradio is not installed here ({probe['rss_after_every_bug_gb']:.2f} GB "
                          "without it)", None))
    elif probe:
        rows.append(_goal("app resident memory <= 1.3 GB (start-up, every bug verified, gradio imported)",
                          f"{probe['rss_app_gb']:.2f} GB", probe["rss_app_gb"] <= GOALS["app_rss_gb"]))
    return rows


def _lengths(generation: dict) -> str:
    return "/".join(str(n) for n in generation)


def _goal(goal, measured, met: bool | None):
    """met is None where the goal could not be measured on this machine."""
    return {"goal": goal, "measured": measured, "met": None if met is None else bool(met)}


# --- the table -----------------------------------------------------------------------------------

def table(results: dict) -> str:
    m = results["machine"]
    lines = [f"{m['cpu']}, {m['cores']} cores, {m['memory_gb']:.0f} GB; torch {m['torch']} ({m['blas']}, "
             f"{m['torch_threads']} threads), transformers {m['transformers']}; device {m['device']}"
             + (f" ({m['gpu']})" if "gpu" in m else ""),
             f"load average {results['load']['before']} -> {results['load']['after']}; other processes used "
             f"{results['load']['other_cores_median']:.2f} cores (median over timed runs), "
             f"{results['load']['other_cores_max']:.2f} at most; {results['load']['busy_runs_redone']} busy runs redone", ""]
    bw = results["bandwidth"]
    lines.append(f"memory bandwidth: {bw['read_gb_s']:.1f} GB/s streaming read (best of start and end: "
                 f"{bw['first']['read_gb_s']:.1f} and {bw['last']['read_gb_s']:.1f}); float32 matrix-vector product "
                 f"{bw['ours_gemv_gb_s']:.1f} GB/s ours, {bw['blas_gemv_gb_s']:.1f} GB/s F.linear ({bw['buffer_mib']} MiB buffer)")
    for dtype, r in results["dtypes"].items():
        lines += ["", f"== {dtype} ==", f"{'':34}{'ours':>10}{'reference':>12}{'ours/ref':>10}  runs  identical"]
        for n, pair in r["generation"].items():
            lines.append(f"{'tokens/s, ' + str(n) + ' new tokens':34}{pair['ours_per_s']:>10.1f}"
                         f"{pair['reference_per_s']:>12.1f}{pair['median_ratio']:>9.2f}x  {len(pair['ratio']):>4}  "
                         f"{'yes' if pair['identical'] else 'no (agree ' + str(pair['tokens_agree_last_pair']) + ')'}")
        for n, row in r.get("no_cache", {}).items():
            note = "1 run" if row["measured_s"] is not None else "estimated"
            lines.append(f"{'tokens/s, ' + str(n) + ', ours without cache':34}{row['tokens_per_s']:>10.2f}"
                         f"{'':>12}{'':>10}  {note}")
        for length, pair in r["first_token"].items():
            lines.append(f"{'first token, ' + str(length) + '-token prompt (ms)':34}{pair['ours_median_s']*1e3:>10.0f}"
                         f"{pair['reference_median_s']*1e3:>12.0f}{pair['median_ratio']:>9.2f}x  {len(pair['ratio']):>4}")
        c = r["ceiling"]
        lines.append(f"ceiling: {c['weight_mb_per_token']:.0f} MB of weights per token / {bw['read_gb_s']:.1f} GB/s = "
                     f"{c['read_ceiling_tokens_per_s']:.0f} tok/s; ours {c['fraction_of_read_ceiling']:.0%} of it"
                     + (f" ({c['fraction_of_gemv_ceiling']:.0%} of the ceiling of our float32 matrix-vector product, "
                        f"{c['gemv_ceiling_tokens_per_s']:.0f} tok/s)" if dtype == "float32" else ""))
        products = r["matrix_products"]
        lines.append(f"  of a generation's time, its {products['matrices']} matrix-vector products alone take "
                     f"{products['share']:.0%} (pairs: {', '.join(f'{s:.2f}' for s in products['share_pairs'])}); "
                     f"with the rest free, ours would be {c['fraction_if_only_matrix_products']:.0%} of the ceiling")
        lines.append(f"  a sum over the same weights (the simplest read, {products['sum_gb_s']:.1f} GB/s) takes "
                     f"{products['sum_share']:.0%} (rounds: {', '.join(f'{s:.2f}' for s in products['sum_share_rounds'])}): "
                     f"products that fast would bring ours to {c['fraction_with_sum_pace_products']:.0%} of the ceiling "
                     f"({c['fraction_if_only_sums']:.0%} with nothing else taking time)")
    lines += ["", f"{'start-up (fresh process)':34}{'load':>8}{'map':>8}{'verify':>8}{'total':>8}"
                  f"{'RSS':>8}{'+bugs':>8}{'+gradio':>9}{'peak':>8}"]
    for dtype, p in results["startup"].items():
        lines.append(f"{'app generating in ' + dtype:34}{p['load_reference_s']:>7.1f}s{p['map_s']:>7.2f}s"
                     f"{p['verify_s']:>7.1f}s{p['startup_s']:>7.1f}s{p['rss_after_startup_gb']:>6.2f}GB"
                     f"{p['rss_after_every_bug_gb']:>6.2f}GB{_gb(p['rss_app_gb']):>9}{_gb(p['peak_rss_gb']):>8}"
                     + (f"  GPU {p['cuda_allocated_gb']:.2f}GB" if "cuda_allocated_gb" in p else "")
                     + ("" if p["verified"] and p["every_bug_caught"] else "  NOT VERIFIED, or a bug missed"))
    lines += ["", "goals:"]
    verdicts = {True: "MET    ", False: "NOT MET", None: "N/A    "}
    lines += [f"  {verdicts[g['met']]} {g['goal']}: {g['measured']}" for g in results["goals"]]
    return "\n".join(lines)


def _gb(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}GB"


# --- main ----------------------------------------------------------------------------------------

def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.speed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a save_pretrained folder or hub id (default: build a gpt2-shaped "
                                        "checkpoint with random weights in a temporary folder)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    parser.add_argument("--dtype", action="append", choices=["float32", "bfloat16", "float16"],
                        help="dtypes to measure (repeatable; default float32 and bfloat16, and float16 on CUDA)")
    parser.add_argument("--repeats", type=int, default=5, help="pairs of runs at 128 new tokens and per prompt")
    parser.add_argument("--repeats-long", type=int, default=3, help="pairs of runs at the longest generation")
    parser.add_argument("--new-tokens", type=int, nargs="+", default=[128, 512], help="generation lengths")
    parser.add_argument("--prompt-lengths", type=int, nargs="+", default=[16, 900],
                        help="prompt lengths for the time to first token (the first also starts every generation)")
    parser.add_argument("--full-no-cache", action="store_true",
                        help="really run the 512-token no-cache generation (minutes) instead of estimating it")
    parser.add_argument("--no-cache-all-dtypes", action="store_true", help="the no-cache rows for every dtype")
    parser.add_argument("--quiet-wait", type=float, default=20.0,
                        help="seconds to wait, at most, for other processes to go idle before each timed run")
    parser.add_argument("--busy-threshold", type=float, default=0.15,
                        help="a run during which other processes used more cores than this is redone")
    parser.add_argument("--busy-retries", type=int, default=3, help="how often a busy run is redone, at most")
    parser.add_argument("--out", default="benchmark-results/speed.json", help="where to write the JSON")
    parser.add_argument("--probe", help=argparse.SUPPRESS)  # internal: the start-up probe, in a fresh process
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.probe:
        print(json.dumps(startup_probe(args.model, args.device, args.probe)))
        return 0
    torch.set_grad_enabled(False)
    started = time.perf_counter()
    load_before = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = args.model
        if model_dir is None:
            from tests.checkpoints import GPT2_SMALL, build_checkpoint
            print("building a gpt2-shaped checkpoint (random weights) ...", flush=True)
            model_dir = str(build_checkpoint(Path(scratch) / "gpt2", seed=0, **GPT2_SMALL))
        reference = load_reference(model_dir, args.device)
        device = reference.device
        results = {"command": " ".join(["python -m tests.benchmarks.speed"] + (argv or sys.argv[1:])),
                   "model": args.model or "gpt2-shaped checkpoint, random weights (tests.checkpoints.GPT2_SMALL, seed 0)",
                   "machine": machine(device), "settings": vars(args)}
        print("measuring memory bandwidth ...", flush=True)
        first = memory_bandwidth(device, args)
        results["dtypes"] = {}
        for dtype in dtypes_for(device, args.dtype):
            print(f"{dtype}:", flush=True)
            results["dtypes"][dtype] = bench_dtype(reference, dtype, args, device)
        # Measured before and after the rest: a neighbour on the host shares the memory bus unseen.
        last = memory_bandwidth(device, args)
        results["bandwidth"] = {key: max(first[key], last[key]) for key in first} | {"first": first, "last": last}
        for dtype, r in results["dtypes"].items():
            tokens_per_s = r["generation"][args.new_tokens[0]]["ours_per_s"]
            per_token = r["weight_bytes_per_token"]
            r["ceiling"] = {
                "weight_mb_per_token": per_token / 1e6,
                "read_ceiling_tokens_per_s": results["bandwidth"]["read_gb_s"] * GB / per_token,
                "gemv_ceiling_tokens_per_s": results["bandwidth"]["ours_gemv_gb_s"] * GB / per_token,
            }
            r["ceiling"]["fraction_of_read_ceiling"] = tokens_per_s / r["ceiling"]["read_ceiling_tokens_per_s"]
            r["ceiling"]["fraction_of_gemv_ceiling"] = tokens_per_s / r["ceiling"]["gemv_ceiling_tokens_per_s"]
            # What the fraction would be if everything but the matrix-vector products took no time.
            r["ceiling"]["fraction_if_only_matrix_products"] = (
                r["ceiling"]["fraction_of_read_ceiling"] / r["matrix_products"]["share"])
            # If the products read their weights as fast as a sum does (the best a kernel could do), with the
            # rest of the model as it is, and with nothing else taking time.
            products = r["matrix_products"]
            r["ceiling"]["fraction_with_sum_pace_products"] = (
                r["ceiling"]["fraction_of_read_ceiling"] / (products["sum_share"] + 1 - products["share"]))
            r["ceiling"]["fraction_if_only_sums"] = r["ceiling"]["fraction_of_read_ceiling"] / products["sum_share"]
        del reference
        print("start-up and memory, in a fresh process ...", flush=True)
        results["startup"] = {dtype: run_probe(model_dir, args.device, dtype)
                              for dtype in ["float32"] + [d for d in results["dtypes"] if d != "float32"][:1]}
    loads = [c for r in results["dtypes"].values() for group in ("generation", "first_token")
             for pair in r[group].values() for c in pair["other_load_cores"]]
    redone = sum(pair["busy_runs_redone"] for r in results["dtypes"].values() for group in ("generation", "first_token")
                 for pair in r[group].values())
    results["load"] = {"before": load_before, "after": [round(x, 2) for x in os.getloadavg()],
                       "other_cores_median": statistics.median(loads), "other_cores_max": max(loads),
                       "busy_runs_redone": redone}
    results["goals"] = goals(results)
    results["seconds"] = time.perf_counter() - started
    print("\n" + table(results))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nwrote {out} ({results['seconds'] / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
