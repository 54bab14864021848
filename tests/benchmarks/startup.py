"""Start-up time and resident memory, measured in a fresh process that does what the app does.

A process of its own: the benchmark's process already holds both models and torch's caches, so its
memory says nothing about the app's. `run_probe` starts one (`python -m tests.benchmarks.speed --probe`).
"""
import json
import subprocess
import sys
import time
from pathlib import Path

import psutil
import torch

from model.loading.mapping import load_gpt
from model.loading.mistakes import DEMONSTRATIONS
from model.loading.reference import load_reference
from model.serving.engine import Engine
from model.serving.writer import load_writer
from tests.benchmarks.machine import GB


def startup_probe(model_dir: str, device: str, dtype: str) -> dict:
    """What the app does at start-up, timed, with the process's resident memory after each step.

    The app: load the reference, build our float32 GPT (sharing the reference's memory), the
    writing model (`load_writer` in `dtype`) and the engine's kernels, verify once, then a Verify tab
    run with every mistake.
    """
    process = psutil.Process()
    rss = lambda: process.memory_info().rss / GB  # noqa: E731
    from model.proof.verify import verify
    out = {"rss_after_imports_gb": rss()}
    start = time.perf_counter()
    reference = load_reference(model_dir, device)
    out["load_reference_s"] = time.perf_counter() - start
    t = time.perf_counter()
    ours = load_gpt(reference)
    writer = load_writer(reference, dtype)  # the app's writer: held, as the app holds it
    Engine(writer, thread=False).close()  # the app's engine builds oneDNN's kernels (bfloat16) for every number of rows
    out["map_s"] = time.perf_counter() - t
    t = time.perf_counter()
    report = verify(reference, ours=ours)
    out["verify_s"] = time.perf_counter() - t
    out["startup_s"] = time.perf_counter() - start
    out["verified"] = report.verified
    out["rss_after_startup_gb"] = rss()
    out["every_bug_caught"] = all([verify(reference, mistake=mistake, ours=ours).verified for mistake in DEMONSTRATIONS])
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
    del writer  # held until every figure above was taken
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
    """startup_probe in a fresh process; its last line of output is the JSON."""
    command = [sys.executable, "-m", "tests.benchmarks.speed", "--probe", dtype, "--model", model_dir, "--device", device]
    done = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
    if done.returncode:
        raise RuntimeError(f"start-up probe failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
