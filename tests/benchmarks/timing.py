"""Timing on a shared machine: wait for quiet, time one call, redo a disturbed one, and pair two rivals.

On a 2-core machine another process on one core stalls every multi-threaded step of ours: such a run
measures the neighbour, not the model. So before each timed run we wait (up to --quiet-wait seconds)
for other processes to leave the CPU, redo a run they disturbed (--busy-threshold, --busy-retries),
and record how busy they kept it.
"""
import os
import statistics
import time

import psutil
import torch


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
        mine = sum(self.me.cpu_times()[:4])  # user, system, and those of children that have ended
        for child in self.me.children(recursive=True):  # a peer measured in a process of its own, still running
            try:
                mine += sum(child.cpu_times()[:2])
            except psutil.NoSuchProcess:
                pass
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


def synchronize(device: torch.device):
    """Wait for the device's queued work: a GPU returns from a call before it has computed it."""
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
    """timed(fn) after waiting for quiet, redone (at most --busy-retries times) while other processes
    took more than --busy-threshold cores during it. Returns (seconds, result, other cores, retries)."""
    for retry in range(args.busy_retries + 1):
        wait_for_quiet(args.quiet_wait)
        seconds, result, cores = timed(fn, device)
        if cores <= args.busy_threshold:
            break
    return seconds, result, cores, retry


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


def load_record(dtypes: dict, load_before: list[float]) -> dict:
    """How busy other processes kept the machine over a whole run: load averages before and after,
    the median and most cores they took during the timed pairs, and how many runs were redone."""
    pairs = [pair for r in dtypes.values() for group in ("generation", "first_token") for pair in r[group].values()]
    loads = [cores for pair in pairs for cores in pair["other_load_cores"]]
    return {"before": load_before, "after": load_average(),
            "other_cores_median": statistics.median(loads), "other_cores_max": max(loads),
            "busy_runs_redone": sum(pair["busy_runs_redone"] for pair in pairs)}


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]
