"""How long a student's check takes at gpt2's size, and how much memory it holds: each layout of the zoo.

    python -m tests.benchmarks.check                 # a gpt2-shaped checkpoint built here, every layout
    python -m tests.benchmarks.check --model ./gpt2-local --out benchmark-results/check.json

Each check runs as a student runs it, `python -m model.check FILE --model ...`, in a process of its own:
its wall time and its peak resident memory are the student's.
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from tests.benchmarks.machine import machine
from tests.checkpoints import GPT2_SMALL, build_checkpoint
from tests.students.zoo import LAYOUTS, write_student

# A correct check of each layout (loaded by the check, or by the student's loader), and one that names a mistake:
# naming runs the catalogue's variants too.
CASES = [(layout, None, None) for layout in LAYOUTS] + [
    ("scratch_book", None, "load_weights_into_gpt"), ("lecture", "relu", None), ("scratch_book", "not_transposed",
                                                                                  "load_weights_into_gpt")]
PEAK = "import resource, runpy, sys; sys.argv = sys.argv[1:]; code = 0\n" \
       "try:\n    runpy.run_module('model.check', run_name='__main__')\nexcept SystemExit as exit:\n    code = exit.code\n" \
       "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(code)"


def measure(path: Path, model: str, loader: str | None) -> dict:
    """One check in a fresh process: its exit status, wall time, peak resident memory and verdict."""
    args = [sys.executable, "-c", PEAK, "model.check", str(path), "--model", model, "--json",
            *(["--loader", loader] if loader else [])]
    start = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    report = json.loads(done.stdout) if done.stdout else {}
    return {"exit": done.returncode, "seconds": round(seconds, 1),
            "peak_rss_gb": round(int(done.stderr.strip().splitlines()[-1]) / 2**20, 2),
            "verified": report.get("verified"),
            "named": [d["id"] for d in report.get("diagnoses", []) if not d["note"]][:1]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.check", description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a hub id or save_pretrained folder (default: gpt2's shape, built here)")
    parser.add_argument("--out", default="benchmark-results/check.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        model = args.model or str(build_checkpoint(Path(scratch) / "gpt2", seed=0, **GPT2_SMALL))
        rows = []
        for layout, mistake, loader in CASES:
            path, _ = write_student(Path(scratch), layout, mistake)
            row = {"layout": layout, "mistake": mistake, "loader": loader, **measure(path, model, loader)}
            rows.append(row)
            print(f"{layout:14} {mistake or 'correct':15} {'loader' if loader else 'the check':10} exit {row['exit']}  "
                  f"{row['seconds']:5.1f} s  peak {row['peak_rss_gb']:.2f} GB  named {row['named']}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"machine": machine(torch.device("cpu")), "model": args.model or "gpt2-shaped, random",
                                          "checks": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
