"""Speed and memory of our GPT next to transformers' GPT2LMHeadModel: one process, same weights.

    python -m tests.benchmarks.speed                          # a gpt2-shaped checkpoint, built locally
    python -m tests.benchmarks.speed --model ./gpt2-local     # any save_pretrained folder or hub id
    python -m tests.benchmarks.speed --out benchmark-results/speed.json --repeats 5

Run by hand (pytest does not collect it). It prints markdown tables (tables.py) and writes the numbers
as JSON:
- tokens/s of greedy generation, ours vs `generate`, for 128 and 512 new tokens: runs taken in pairs
  (the order alternating), the ratio computed pair by pair, and the medians (timing.py); ours without
  the KV cache as well (no_cache.py);
- time to first token for a 16- and a 900-token prompt (the 16 alone in bfloat16 on a CPU without bfloat16
  instructions, where transformers takes minutes over 900);
- the bandwidth ceiling: weight bytes read per token ÷ the memory bandwidth measured in this run, and
  where a generation's time goes below it (ceiling.py);
- start-up time (load reference + map + verify) and resident memory, in a fresh process (startup.py);
- the same for bfloat16 (and float16 on a GPU), then which of issue 4's goals are met (goals.py).

Timings on a shared machine are noisy: before each timed run the script waits (up to --quiet-wait
seconds) for other processes to leave the CPU, redoes a run they disturbed (--busy-threshold), and
records how busy they kept it.
"""
import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from model.serving import products
from model.serving.writer import check_dtype, load_writer
from model.loading.reference import load_reference
from tests.benchmarks.ceiling import (
    ceiling,
    matrix_products_share,
    memory_bandwidth,
    weight_bytes_per_token,
)
from tests.benchmarks.goals import goals
from tests.benchmarks.machine import bfloat16_instructions, machine
from tests.benchmarks.no_cache import no_cache
from tests.benchmarks.peers import peers
from tests.benchmarks.runs import ours, ours_first_token, prompt, theirs
from tests.benchmarks.startup import run_probe, startup_probe
from tests.benchmarks.tables import render, source_name
from tests.benchmarks.timing import load_average, load_record, paired


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.probe:  # the fresh process that startup.run_probe starts
        print(json.dumps(startup_probe(args.model, args.device, args.probe)))
        return 0
    torch.set_grad_enabled(False)
    started = time.perf_counter()
    load_before = load_average()
    with tempfile.TemporaryDirectory() as scratch:
        results = measure(args.model or gpt2_shaped_checkpoint(scratch), args, argv, scratch)
    results["load"] = load_record(results["dtypes"], load_before)
    results["goals"] = goals(results)
    results["seconds"] = time.perf_counter() - started
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2, default=str) + "\n"
    out.write_text(text)
    print("\n" + render(json.loads(text), source_name(out)))
    print(f"wrote {out} ({results['seconds'] / 60:.1f} min)")
    return 0


def gpt2_shaped_checkpoint(scratch: str) -> str:
    """OpenAI's gpt2 tensors with random weights: the same speed, and nothing to download."""
    from tests.checkpoints import GPT2_SMALL, build_checkpoint
    print("building a gpt2-shaped checkpoint (random weights) ...", flush=True)
    return str(build_checkpoint(Path(scratch) / "gpt2", seed=0, **GPT2_SMALL))


def measure(model_dir: str, args, argv, scratch: str) -> dict:
    """Every figure but the load record and the goals, which summarise these."""
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
        results["dtypes"][dtype] = bench_dtype(reference, dtype, args, device,
                                               reference_emulated(dtype, device, results["machine"]))
    if "bfloat16" in results["dtypes"]:
        results["bfloat16_over_float32"] = half_over_full(reference, args, device)
    results["peers"] = peers(model_dir, reference, [d for d in ("float32", "bfloat16") if d in results["dtypes"]],
                             args, device, scratch)
    # Measured before and after the rest: a neighbour on the host shares the memory bus unseen.
    last = memory_bandwidth(device, args)
    results["bandwidth"] = {key: max(first[key], last[key]) for key in first} | {"first": first, "last": last}
    for r in results["dtypes"].values():
        r["ceiling"] = ceiling(r["generation"][args.new_tokens[0]]["ours_per_s"], r["weight_bytes_per_token"],
                               results["bandwidth"], r["matrix_products"])
    del reference  # its memory is free before the fresh process loads its own
    print("start-up and memory, in a fresh process ...", flush=True)
    results["startup"] = {dtype: run_probe(model_dir, args.device, dtype)
                          for dtype in ["float32"] + [d for d in results["dtypes"] if d != "float32"][:1]}
    return results


def reference_emulated(dtype: str, device, machine_info: dict) -> bool:
    """Whether transformers computes `dtype` without the CPU's own instructions for it: bfloat16 on a CPU without
    bfloat16 instructions (AVX2 only) writes about 4 tokens/s, and reads a 900-token prompt in minutes."""
    return device.type == "cpu" and dtype == "bfloat16" and not bfloat16_instructions(machine_info)


def bench_dtype(reference, dtype: str, args, device, emulated: bool = False) -> dict:
    """Every speed figure for one dtype: ours (load_writer) vs the reference in the same dtype. Where the reference
    is `emulated` (see `reference_emulated`), only the first prompt's first token is timed: the longer ones
    would take most of the run."""
    model = load_writer(reference, dtype)
    theirs_model = reference if dtype == "float32" else copy.deepcopy(reference).to(getattr(torch, dtype))
    ids = prompt(args.prompt_lengths[0])
    ours(model, ids, 8)(), theirs(theirs_model, ids, 8)()  # warm up both
    result = {"weight_bytes_per_token": weight_bytes_per_token(model), "generation": {}, "first_token": {}}
    for n in args.new_tokens:
        repeats = max(1, args.repeats if n == args.new_tokens[0] else args.repeats_long)
        result["generation"][n] = paired(ours(model, ids, n), theirs(theirs_model, ids, n), repeats, device,
                                         args, scale=n)
        print(f"  {dtype} {n} new tokens: {_pair_line(result['generation'][n], 'tok/s')}", flush=True)
    result["matrix_products"] = matrix_products_share(model, ids, args.new_tokens[0], device, args)
    print(f"  {dtype} matrix-vector products alone: {result['matrix_products']['share']:.0%} of a generation's time, "
          f"a sum over the same weights {result['matrix_products']['sum_share']:.0%}", flush=True)
    lengths = args.prompt_lengths[:1] if emulated else args.prompt_lengths
    if lengths != args.prompt_lengths:
        print(f"  {dtype} first token, {', '.join(map(str, args.prompt_lengths[1:]))}-token prompts: skipped, "
              f"transformers' {dtype} has no instructions of its own on this CPU", flush=True)
    for length in lengths:
        long_ids = prompt(length)
        ours_first_token(model, long_ids)(), theirs(theirs_model, long_ids, 1)()
        first = result["first_token"][length] = paired(ours_first_token(model, long_ids),
                                                       theirs(theirs_model, long_ids, 1), args.repeats, device, args)
        print(f"  {dtype} first token, {length}-token prompt: ours {first['ours_median_s'] * 1e3:.0f} ms, "
              f"reference {first['reference_median_s'] * 1e3:.0f} ms", flush=True)
    if dtype == "float32" or args.no_cache_all_dtypes:
        result["no_cache"] = no_cache(model, ids, args, device)
    del theirs_model
    return result


def half_over_full(reference, args, device) -> dict:
    """Our bfloat16 writer against our float32 one, in pairs: one stream's speed-up from reading half the bytes."""
    n, ids = args.new_tokens[0], prompt(args.prompt_lengths[0])
    pair = paired(ours(load_writer(reference, "bfloat16"), ids, n), ours(load_writer(reference, "float32"), ids, n),
                  args.repeats, device, args, scale=n)
    print(f"  bfloat16 / float32, one stream of {n} tokens: {pair['median_ratio']:.2f}x", flush=True)
    return pair


def dtypes_for(device: torch.device, asked: list[str] | None) -> list[str]:
    if asked:
        for dtype in asked:
            check_dtype(dtype, device)
        return asked
    if device.type == "cuda":
        return ["float32"] + (["bfloat16"] if torch.cuda.is_bf16_supported() else []) + ["float16"]
    if not products.bfloat16_available():
        print(f"this CPU ({torch.backends.cpu.get_cpu_capability()}) cannot write in bfloat16: float32 only", flush=True)
        return ["float32"]
    return ["float32", "bfloat16"]


def _pair_line(pair: dict, unit: str) -> str:
    return (f"ours {pair['ours_per_s']:.1f} {unit}, reference {pair['reference_per_s']:.1f} {unit}, "
            f"ratio {pair['median_ratio']:.2f}x (pairs: {', '.join(f'{r:.2f}' for r in pair['ratio'])}), "
            f"identical: {pair['identical']}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.speed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a save_pretrained folder or hub id (default: build a gpt2-shaped "
                                        "checkpoint with random weights in a temporary folder)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    parser.add_argument("--dtype", action="append", choices=["float32", "bfloat16", "float16"],
                        help="dtypes to measure (repeatable; default float32 and bfloat16, and float16 on CUDA)")
    parser.add_argument("--repeats", type=int, default=5, help="pairs of runs at 128 new tokens and per prompt")
    parser.add_argument("--repeats-long", type=int, default=3, help="pairs of runs at the longest generation")
    parser.add_argument("--class-repeats", type=int, default=3, help="pairs of runs of a class, ours against a peer")
    parser.add_argument("--new-tokens", type=int, nargs="+", default=[128, 512], help="generation lengths")
    parser.add_argument("--prompt-lengths", type=int, nargs="+", default=[16, 900],
                        help="prompt lengths for the time to first token (the first also starts every generation)")
    parser.add_argument("--full-no-cache", action="store_true",
                        help="really run the 512-token no-cache generation (slow) instead of estimating it")
    parser.add_argument("--no-cache-all-dtypes", action="store_true", help="the no-cache rows for every dtype")
    parser.add_argument("--quiet-wait", type=float, default=20.0,
                        help="seconds to wait, at most, for other processes to go idle before each timed run")
    parser.add_argument("--busy-threshold", type=float, default=0.15,
                        help="a run during which other processes used more cores than this is redone")
    parser.add_argument("--busy-retries", type=int, default=3, help="how often a busy run is redone, at most")
    parser.add_argument("--out", default="benchmark-results/speed.json", help="where to write the JSON")
    parser.add_argument("--probe", help=argparse.SUPPRESS)  # internal: the start-up probe, in a fresh process
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
