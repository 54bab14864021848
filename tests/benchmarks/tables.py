"""A results JSON of the speed benchmark, as markdown tables; and the README section they fill.

    python -m tests.benchmarks.tables tests/benchmarks/results/speed-cpu.json   # rewrites README.md's tables

The tables in tests/benchmarks/README.md sit between two markers and come from here, never by hand:
whoever reads them can check every figure against the committed JSON of the run.
"""
import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = Path(__file__).with_name("README.md")
BEGIN = "<!-- tables: begin. Written by python -m tests.benchmarks.tables from the JSON named below; do not edit -->"
END = "<!-- tables: end -->"


def render(results: dict, source: str | None = None) -> str:
    """Every figure of one run, as markdown: the machine and how busy it was, one table per dtype, the
    start-up in a fresh process, and the goals. `source`: the JSON's path, named above the tables."""
    m, load, bw = results["machine"], results["load"], results["bandwidth"]
    parts = [f"`{results['command']}`" + (f", results in `{source}`" if source else "")
             + f" ({results['seconds'] / 60:.0f} min): {results['model']}.",
             f"Machine: {m['cpu']}{' (' + m['gpu'] + ')' if 'gpu' in m else ''}, {m['cores']} cores, "
             f"{m['memory_gb']:.0f} GB; Python {m['python']}, torch {m['torch']} ({m['blas']}, {m['torch_threads']} "
             f"threads), transformers {m['transformers']}; device {m['device']}.",
             f"Other processes used {load['other_cores_median']:.2f} cores (median over the timed runs), "
             f"{load['other_cores_max']:.2f} at most; {load['busy_runs_redone']} busy runs were redone; load average "
             f"{_joined(load['before'])} before, {_joined(load['after'])} after.",
             f"Memory bandwidth: {bw['read_gb_s']:.1f} GB/s at best for a streaming read (a sum over "
             f"{bw['buffer_mib']} MiB: {bw['first']['read_gb_s']:.1f} GB/s at the start of the run, "
             f"{bw['last']['read_gb_s']:.1f} at its end); a float32 matrix-vector product over the same bytes read "
             f"{bw['ours_gemv_gb_s']:.1f} GB/s as our model computes it and {bw['blas_gemv_gb_s']:.1f} GB/s through "
             "`F.linear`."]
    parts += [dtype_table(dtype, r, bw) for dtype, r in results["dtypes"].items()]
    if results.get("peers") or results.get("bfloat16_over_float32"):
        parts.append(peers_table(results.get("peers"), results.get("bfloat16_over_float32"), m))
    parts += [startup_table(results["startup"]), goals_table(results["goals"])]
    return "\n\n".join(parts) + "\n"


def dtype_table(dtype: str, r: dict, bandwidth: dict) -> str:
    rows = [(f"tokens/s, {n} new tokens", f"{pair['ours_per_s']:.1f}", f"{pair['reference_per_s']:.1f}",
             _times(pair["median_ratio"]), _list(pair["ratio"])) for n, pair in r["generation"].items()]
    rows.append((f"greedy tokens identical to `generate`{'' if dtype == 'float32' else ' in ' + dtype}",
                 _identical(r["generation"])))
    if "no_cache" in r:
        rows.append((f"tokens/s without the KV cache, {_joined(r['no_cache'], ' / ')} new tokens", " / ".join(
            f"{row['tokens_per_s']:.1f} ({'1 run' if row['measured_s'] is not None else 'estimated'})"
            for row in r["no_cache"].values())))
    rows += [(f"time to first token, {length}-token prompt", f"{pair['ours_median_s'] * 1e3:,.0f} ms",
              f"{pair['reference_median_s'] * 1e3:,.0f} ms", _times(pair["median_ratio"]), _list(pair["ratio"]))
             for length, pair in r["first_token"].items()]
    c, products = r["ceiling"], r["matrix_products"]
    rows.append((f"ceiling: {c['weight_mb_per_token']:.0f} MB of weights per token ÷ {bandwidth['read_gb_s']:.1f} GB/s "
                 f"= {c['read_ceiling_tokens_per_s']:,.0f} tokens/s", f"{c['fraction_of_read_ceiling']:.0%} of it"))
    if dtype == "float32":
        rows.append((f"... ÷ our matrix-vector product's {bandwidth['ours_gemv_gb_s']:.1f} GB/s = "
                     f"{c['gemv_ceiling_tokens_per_s']:,.0f} tokens/s", f"{c['fraction_of_gemv_ceiling']:.0%} of it"))
    rows.append((f"share of a generation's time in its {products['matrices']} matrix-vector products, run alone",
                 f"{products['share']:.0%} ({c['fraction_if_only_matrix_products']:.0%} of the ceiling if the rest "
                 "were free)", "", "", _list(products["share_pairs"])))
    rows.append((f"share taken by a sum over the same {products['matrices']} weights, run alone "
                 f"({products['sum_gb_s']:.1f} GB/s)", f"{products['sum_share']:.0%} (products that fast: "
                 f"{c['fraction_with_sum_pace_products']:.0%} of the ceiling; {c['fraction_if_only_sums']:.0%} with "
                 "nothing else)", "", "", _list(products["sum_share_rounds"])))
    title = dtype if dtype == "float32" else f"{dtype} (verification stays float32)"
    return _table([title, "ours", "transformers", "ours / theirs", "pair by pair"], rows, "-:::-")


def peers_table(peers: dict | None, half: dict | None, machine: dict) -> str:
    """Ours beside CTranslate2 (stream and class), and our bfloat16 beside our float32: each row pairs two rivals."""
    rows = []
    if peers:
        n = peers["new_tokens"]
        for quantization, pair in peers["stream"].items():
            rows.append((f"one stream, tokens/s, {n} new tokens: ours float32 / CTranslate2 {quantization}"
                         + ("" if quantization == "float32" else " (other weights: for information)"),
                         f"{pair['ours_per_s']:.1f}", f"{pair['reference_per_s']:.1f}", _times(pair["median_ratio"]),
                         _list(pair["ratio"]), "yes" if pair["identical"] else "no"))
        for rivals, pair in peers["class"].items():
            dtype, quantization = rivals.split(" vs ")
            rows.append((f"a class of {peers['class_size']} × {peers['class_tokens']}, seconds: our engine in "
                         f"{dtype} / CTranslate2's batch in {quantization}", f"{pair['ours_median_s']:.2f}",
                         f"{pair['reference_median_s']:.2f}", _times(pair["median_ratio"]), _list(pair["ratio"]),
                         "yes" if pair["identical"] else "no"))
        if floor := peers.get("class_floor"):  # runs from before it was measured have none
            theirs = peers["class"]["float32 vs float32"]["reference_median_s"]
            rates = {name: max(floor[when][f"{name}_gflop_s"] for when in ("before", "after"))
                     for name in ("ours", "sgemm")}
            rows.append((f"a class of {peers['class_size']} × {peers['class_tokens']}, seconds: the floor, its float32 "
                         f"products alone ({floor['gflop']:.0f} GFLOP) at the fastest rate measured here "
                         f"({floor['gflop_s']:.0f} GFLOP/s; our products {rates['ours']:.0f}, sgemm "
                         f"{rates['sgemm']:.0f}) / CTranslate2's batch in float32: no float32 engine is further ahead",
                         f"{floor['seconds']:.2f}", f"{theirs:.2f}", _times(theirs / floor["seconds"]), "", "-"))
            rows.append((f"... the same products at the rate ours held over a whole step ({floor['step_gflop_s']:.0f} "
                         "GFLOP/s: each matrix once for the class's rows, the best of 5 steps): our engine if it did "
                         "nothing else",
                         f"{floor['step_seconds']:.2f}", f"{theirs:.2f}", _times(theirs / floor["step_seconds"]), "",
                         "-"))
    if half:
        instructions = ", ".join(machine.get("vector_instructions", [])) or "no wide vectors"
        rows.append((f"one stream, tokens/s: our bfloat16 / our float32 (the CPU has {instructions})",
                     f"{half['ours_per_s']:.1f}", f"{half['reference_per_s']:.1f}", _times(half["median_ratio"]),
                     _list(half["ratio"]), "no (half precision)"))
    version = f" (CTranslate2 {peers['ctranslate2']})" if peers else ""
    return _table([f"peers{version}", "ours", "theirs", "ours faster by", "pair by pair", "same greedy tokens"], rows,
                  "-:::--")


def startup_table(startup: dict) -> str:
    rows = []
    for dtype, p in startup.items():
        resident = f"{p['rss_after_startup_gb']:.2f} GB" + (
            f" (GPU {p['cuda_allocated_gb']:.2f} GB)" if "cuda_allocated_gb" in p else "")
        rows.append((f"generating in {dtype}", f"{p['load_reference_s']:.1f} + {p['map_s']:.2f} + "
                     f"{p['verify_s']:.1f} = {p['startup_s']:.1f} s", resident, _gb(p["rss_after_every_bug_gb"]),
                     _gb(p["rss_app_gb"]), _gb(p["peak_rss_gb"]),
                     "yes, every bug caught" if p["verified"] and p["every_bug_caught"] else "NO, or a bug missed"))
    return _table(["start-up, fresh process", "load + map + verify", "resident", "+ every bug verified",
                   "+ gradio imported", "peak", "verified"], rows, "-:::::-")


def goals_table(goals: list[dict]) -> str:
    verdicts = {True: "met", False: "**not met**", None: "not measured here"}
    return _table(["goal", "measured", ""], [(g["goal"], g["measured"], verdicts[g["met"]]) for g in goals], "---")


def _table(header: list[str], rows: list[tuple], align: str) -> str:
    """A markdown table; align holds one character per column, ':' for a right-aligned one."""
    rule = ["---:" if a == ":" else "---" for a in align]
    lines = [header, rule] + [list(row) + [""] * (len(header) - len(row)) for row in rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def _identical(generation: dict) -> str:
    if all(pair["identical"] for pair in generation.values()):
        return "yes, every run"
    return "; ".join(f"{n} new tokens: " + ("yes" if pair["identical"] else
                     f"the first {pair['tokens_agree_last_pair']}, then they part (last pair)")
                     for n, pair in generation.items())


def _times(ratio: float) -> str:
    return f"{ratio:.2f}×"


def _list(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def _joined(values, sep: str = ", ") -> str:
    return sep.join(str(v) for v in values)


def _gb(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} GB"


def with_tables(readme: str, tables: str, name: str = "README.md") -> str:
    """readme with the text between BEGIN and END replaced by tables."""
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{name} has no section for the tables: it needs a line {BEGIN!r} and, below it, {END!r}")
    return readme[:start + len(BEGIN)] + "\n\n" + tables + "\n" + readme[end:]


def source_name(path: Path) -> str:
    """The JSON's path as the README names it: relative to the repository when it lies inside it."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.tables", description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="a JSON written by python -m tests.benchmarks.speed --out")
    parser.add_argument("--readme", type=Path, default=README, help="the markdown file whose marked section to rewrite")
    args = parser.parse_args(argv)
    try:
        tables = render(json.loads(args.results.read_text()), source_name(args.results))
        args.readme.write_text(with_tables(args.readme.read_text(), tables, str(args.readme)))
    except KeyError as missing:
        error = f"{args.results} has no {missing}: is it a JSON written by python -m tests.benchmarks.speed?"
    except (OSError, ValueError) as failure:  # no such file, not JSON, or a README without the markers
        error = str(failure)
    else:
        print(f"rewrote the tables in {args.readme} from {args.results}")
        return 0
    print(f"error: {error}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
