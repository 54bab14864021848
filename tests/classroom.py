"""A whole class at once: students streaming generations from the app, and verifications beside them.

    python -m tests.classroom                                  # 30 students on a gpt2-shaped model, built here
    python -m tests.classroom --students 1                     # one student alone, through the same app
    python -m tests.classroom --own-prompts                    # each student types a prompt of its own length
    python -m tests.classroom --at-limits                      # the app's memory with every row at its limits
    python -m tests.classroom --url http://127.0.0.1:7860/     # ... on an app already running (your laptop)
    python -m tests.classroom --rounds 30                      # the soak: lesson after lesson (tests/soak.py)

Each student is a gradio_client Client of its own (its own session, as a browser tab has), which opens its
session before the class starts, as a page does when it loads; then all send at the same moment, each with
its own seed. The numbers are what a student waits: until the first piece of text, and until the whole text;
the class's tokens per second; the app's resident memory; the CPU the clients themselves took (they share
the machine's cores with the app, where students' phones would not); and, in the same run, how long
transformers' `generate` takes for one student's text, so the table shows how much faster the class is
served than thirty such generations one after another. test_load.py runs the same class on a tiny model and
checks every answer.
"""
import argparse
import math
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from gradio_client import Client

from model.loading.mistakes import DEMONSTRATIONS
from model.tokenizer import encode

PROMPT = "The capital of France is"
# What students type when each types their own (--own-prompts): student i the first 4 + i % 30 words.
OWN_PROMPT_WORDS = ("Once upon a time, in a small village at the edge of a great forest, there lived an old clockmaker "
                    "who mended every clock in the valley, and who never told anyone why the bell in the church "
                    "tower had not rung for forty years.").split()
TEMPERATURE, TOP_K, TOP_P = 0.8, 50, 1.0  # the app's defaults: what a student who changes nothing gets
POLL_SECONDS = 0.02  # how often a student looks for new text (gradio_client's own iterator polls far more often)


@dataclass
class Visit:
    """One request: what came back, and how long its sender waited."""
    seed: int | None  # a generation's seed; None for a verification
    answers: list = field(default_factory=list)  # every message, in order (a verification has one)
    sent: float = math.nan  # time.monotonic() when it was sent
    first_seconds: float = math.nan  # from sending to the first piece of text (a generation's only)
    total_seconds: float = math.nan  # from sending to the last
    error: str | None = None


@dataclass
class Classroom:
    students: list[Visit]
    verifications: list[Visit]
    clients_cpu_seconds: float = math.nan  # the CPU this process (every student's client) took, bell to last answer

    def summary(self) -> dict:
        """The numbers README's "A whole class at once" table shows."""
        first = [v.first_seconds for v in self.students]
        total = [v.total_seconds for v in self.students]
        checks = [v.total_seconds for v in self.verifications]
        tokens = sum(len(encode(v.answers[-1])) for v in self.students if v.answers)  # re-encoded: about what was written
        return {
            "students": len(self.students), "verifications": len(self.verifications),
            "errors": sum(v.error is not None for v in self.students + self.verifications),
            "first text p50 s": percentile(first, 50), "first text p95 s": percentile(first, 95),
            "whole text p50 s": percentile(total, 50), "whole text p95 s": percentile(total, 95),
            "whole class s": span(self.students), "class tokens": tokens,
            "class tokens/s": tokens / span(self.students) if self.students else math.nan,
            "verification p50 s": percentile(checks, 50), "verification max s": percentile(checks, 100),
            "clients' CPU s": self.clients_cpu_seconds,
        }


def span(visits: list[Visit]) -> float:
    """From the first request sent to the last answer complete."""
    if not visits:
        return math.nan
    return max(v.sent + v.total_seconds for v in visits) - min(v.sent for v in visits)


def percentile(values: list[float], p: float) -> float:
    """The nearest-rank percentile: the smallest value that at least p% of the values do not exceed."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(math.ceil(p / 100 * len(ordered)), 1) - 1]


def student_prompt(student: int, own_prompts: bool) -> str:
    """What a student types: the lesson's PROMPT, or a prompt of its own length (4 to 33 words)."""
    return " ".join(OWN_PROMPT_WORDS[:4 + student % 30]) if own_prompts else PROMPT


def connected(url: str) -> Client:
    """A student's tab, open: a client whose session the app has made. A page makes it when it loads (its load
    events are the session's first), so a student's first click does not pay for it; a client's first request
    would. Reading the class board's counts is the cheapest request that makes it."""
    client = Client(url, analytics_enabled=False, verbose=False)
    client.predict(api_name="/class_board")
    return client


def generation(url: str, start: threading.Barrier, seed: int, max_new_tokens: int, seconds: float,
               prompt: str = PROMPT) -> Visit:
    """A student: open the tab, wait for the whole class, then stream a continuation of `prompt`."""
    client = connected(url)
    start.wait(timeout=seconds)
    visit = Visit(seed, sent=time.monotonic())
    job = client.submit(prompt, max_new_tokens, TEMPERATURE, TOP_K, TOP_P, seed, api_name="/generate")
    while not (job.done() or job.outputs()) and time.monotonic() - visit.sent < seconds:
        time.sleep(POLL_SECONDS)
    visit.first_seconds = time.monotonic() - visit.sent
    return _finished(visit, job, seconds)


def verification(url: str, start: threading.Barrier, bug: str, seconds: float) -> Visit:
    """A student on the Verify tab: the report for one bug (or none)."""
    client = connected(url)
    start.wait(timeout=seconds)
    visit = Visit(None, sent=time.monotonic())
    return _finished(visit, client.submit(PROMPT, bug, api_name="/verify_report"), seconds)


def _finished(visit: Visit, job, seconds: float) -> Visit:
    try:
        job.result(timeout=max(seconds - (time.monotonic() - visit.sent), 0.1))
    except Exception as error:  # noqa: BLE001 - the load test counts every kind of failure
        visit.error = f"{type(error).__name__}: {error}"
    visit.total_seconds = time.monotonic() - visit.sent
    visit.answers = job.outputs()
    return visit


def classroom(url: str, students: int = 30, verifications: int = 4, max_new_tokens: int = 32,
              seconds: float = 120, own_prompts: bool = False) -> Classroom:
    """`students` generations (seed i for student i; PROMPT, or each their own with `own_prompts`) and
    `verifications` reports (the bugs in turn, starting with none), all sent at once; every wait ends after
    `seconds`."""
    bell = {}  # when every tab is open: the process's CPU time then
    start = threading.Barrier(students + verifications, action=lambda: bell.update(cpu=time.process_time()))
    bugs = ["none", *DEMONSTRATIONS]
    with ThreadPoolExecutor(students + verifications) as pool:
        futures = [pool.submit(generation, url, start, i, max_new_tokens, seconds, student_prompt(i, own_prompts))
                   for i in range(students)]
        futures += [pool.submit(verification, url, start, bugs[i % len(bugs)], seconds) for i in range(verifications)]
        visits = [future.result(timeout=2 * seconds) for future in futures]
    return Classroom(visits[:students], visits[students:], time.process_time() - bell["cpu"])


# --- the same texts, one after another, by transformers' generate -------------------------------------

def generate_seconds(model: str, max_new_tokens: int, repeats: int = 3) -> float:
    """The median time transformers' `generate` takes to write one student's text (the same sampling
    settings, every token written), in this process, while the app is idle."""
    import statistics

    import torch

    from model.loading.reference import load_reference

    reference = load_reference(model, "cpu")
    idx = torch.tensor([encode(PROMPT)])
    times = []
    for seed in range(repeats):
        torch.manual_seed(seed)
        started = time.perf_counter()
        with torch.inference_mode():
            reference.generate(idx, attention_mask=torch.ones_like(idx), do_sample=True, temperature=TEMPERATURE,
                               top_k=TOP_K, max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens,
                               pad_token_id=0)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


# --- the app's memory -------------------------------------------------------------------------------

class PeakMemory:
    """The largest resident memory a process reaches while the block runs, sampled in a thread."""

    def __init__(self, pid: int, every: float = 0.1):
        self.process, self.every, self.peak_bytes = psutil.Process(pid), every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _sample(self):
        while not self._stop.wait(self.every):
            self.peak_bytes = max(self.peak_bytes, self.process.memory_info().rss)


def at_limits(url: str, requests: int, seconds: float) -> None:
    """Every row at its limits and the queue full: `requests` prompts that fill the context, each asking
    for the most tokens the app allows, left writing for `seconds`, then stopped."""
    from demo.api import MAX_NEW_TOKENS, MAX_PROMPT_CHARS

    long_prompt = (PROMPT + " ") * (MAX_PROMPT_CHARS // (len(PROMPT) + 1))
    client = Client(url, analytics_enabled=False, verbose=False)
    jobs = [client.submit(long_prompt, MAX_NEW_TOKENS, TEMPERATURE, TOP_K, TOP_P, seed, api_name="/generate")
            for seed in range(requests)]
    time.sleep(seconds)
    for job in jobs:
        job.cancel()


# --- python -m tests.classroom ---------------------------------------------------------------------

def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.classroom", description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an app already running; default: start `python -m demo` on --model")
    parser.add_argument("--model", help="for the app started here, and for the generate baseline "
                                        "(default: a gpt2-shaped checkpoint, built now)")
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--verifications", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--own-prompts", action="store_true",
                        help="each student types a prompt of its own length (4 to 33 words), not the lesson's one")
    parser.add_argument("--seconds", type=float, default=600, help="the longest any one request may take")
    parser.add_argument("--rounds", type=int, help="instead of one class: the soak, this many rounds of a lesson "
                                                   "(tests/soak.py), on a small trained checkpoint unless --model")
    parser.add_argument("--pid", type=int, help="with --url and --rounds: the app's process, whose memory to read")
    parser.add_argument("--at-limits", action="store_true",
                        help="instead of a class: fill every row and the queue with the longest requests the app "
                             "takes, and report the app's peak resident memory")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.rounds:
        return _soak(args)
    with tempfile.TemporaryDirectory() as scratch:
        if args.url:
            summary = classroom(args.url, args.students, args.verifications, args.max_new_tokens,
                                args.seconds, args.own_prompts).summary()
        else:
            summary = _with_app_started(Path(scratch), args)
    for name, value in summary.items():
        print(f"| {name} | {value:.2f} |" if isinstance(value, float) else f"| {name} | {value} |")
    return 1 if summary.get("errors") else 0


def _with_app_started(scratch: Path, args) -> dict:
    """`python -m demo` in a process of its own, as in class, on --model or a gpt2-shaped checkpoint
    (offline, with this machine's Hugging Face cache); its peak memory; the generate baseline beside it."""
    from huggingface_hub import constants

    from tests.app_server import command_env, command_serving
    from tests.checkpoints import GPT2_SMALL, build_checkpoint

    model = args.model or str(build_checkpoint(scratch / "gpt2-shaped", **GPT2_SMALL))
    with command_serving(["--model", model], command_env(Path(constants.HF_HOME)), logs=scratch) as (pid, url):
        if args.at_limits:
            with PeakMemory(pid) as memory:
                at_limits(url, requests=32 + 64, seconds=min(args.seconds, 120))  # the engine's rows + the queue
            return {"app peak resident memory GB": memory.peak_bytes / 1e9}
        with PeakMemory(pid) as memory:
            summary = classroom(url, args.students, args.verifications, args.max_new_tokens, args.seconds,
                                args.own_prompts).summary()
    one_generate = generate_seconds(model, args.max_new_tokens)
    one_after_another = args.students * one_generate
    return {**summary, "app peak resident memory GB": memory.peak_bytes / 1e9,
            "transformers generate, one student s": one_generate,
            "students one after another s": one_after_another,
            "one after another / class at once": one_after_another / summary["whole class s"]}


def _soak(args) -> int:
    """The soak against --url (--pid), or against `python -m demo` started here, as in class."""
    from huggingface_hub import constants

    from tests.app_server import command_env, command_serving
    from tests.checkpoints import build_trained_checkpoint
    from tests.soak import print_summary, soak

    if args.url:
        if args.pid is None:
            print("error: --rounds with --url needs --pid, the app's process id, to read its memory", file=sys.stderr)
            return 2
        result = soak(args.url, args.pid, args.rounds, args.seconds)
    else:
        with tempfile.TemporaryDirectory() as scratch:
            model = args.model or str(build_trained_checkpoint(Path(scratch) / "trained"))
            with command_serving(["--model", model], command_env(Path(constants.HF_HOME)), logs=Path(scratch)) as (
                    pid, url):
                result = soak(url, pid, args.rounds, args.seconds)
    print_summary(result)
    return 1 if result["failures"] or not result["fixed request's text unchanged"] else 0


if __name__ == "__main__":
    sys.exit(main())
