"""A whole class at once: students streaming generations from the app, and verifications beside them.

    python -m tests.classroom                                  # 30 students on a gpt2-shaped model, built here
    python -m tests.classroom --url http://127.0.0.1:7860/     # ... on an app already running (your laptop)

Each student is a gradio_client Client of its own (its own session, as a browser tab has), and all send
at the same moment. The numbers are what a student waits: until the first piece of text, and until the
whole text. test_load.py runs the same class on a tiny model and checks every answer.
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

from gradio_client import Client

from model.bugs import BUGS

PROMPT = "The capital of France is"
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

    def summary(self) -> dict:
        """The numbers README's "A whole class at once" table shows."""
        visits = self.students + self.verifications
        first = [v.first_seconds for v in self.students]
        total = [v.total_seconds for v in self.students]
        checks = [v.total_seconds for v in self.verifications]
        whole_class = max(v.sent + v.total_seconds for v in visits) - min(v.sent for v in visits)
        return {
            "students": len(self.students), "verifications": len(self.verifications),
            "errors": sum(v.error is not None for v in visits),
            "first text p50 s": percentile(first, 50), "first text p95 s": percentile(first, 95),
            "whole text p50 s": percentile(total, 50), "whole text p95 s": percentile(total, 95),
            "whole text max s": percentile(total, 100), "verification p50 s": percentile(checks, 50),
            "verification max s": percentile(checks, 100), "whole class s": whole_class,
        }


def percentile(values: list[float], p: float) -> float:
    """The nearest-rank percentile: the smallest value that at least p% of the values do not exceed."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(math.ceil(p / 100 * len(ordered)), 1) - 1]


def generation(url: str, start: threading.Barrier, seed: int, max_new_tokens: int, seconds: float) -> Visit:
    """A student: connect, wait for the whole class, then stream a continuation of PROMPT."""
    client = Client(url, analytics_enabled=False, verbose=False)
    start.wait(timeout=seconds)
    visit = Visit(seed, sent=time.monotonic())
    job = client.submit(PROMPT, max_new_tokens, 1.0, 0, 1.0, seed, api_name="/generate")
    while not (job.done() or job.outputs()) and time.monotonic() - visit.sent < seconds:
        time.sleep(POLL_SECONDS)
    visit.first_seconds = time.monotonic() - visit.sent
    return _finished(visit, job, seconds)


def verification(url: str, start: threading.Barrier, bug: str, seconds: float) -> Visit:
    """A student on the Verify tab: the report for one bug (or none)."""
    client = Client(url, analytics_enabled=False, verbose=False)
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
              seconds: float = 120) -> Classroom:
    """`students` generations (seeds 0-9, so several students share each) and `verifications` reports
    (the bugs in turn, starting with none), all sent at once; every wait ends after `seconds`."""
    start = threading.Barrier(students + verifications)
    bugs = ["none", *BUGS]
    with ThreadPoolExecutor(students + verifications) as pool:
        futures = [pool.submit(generation, url, start, i % 10, max_new_tokens, seconds) for i in range(students)]
        futures += [pool.submit(verification, url, start, bugs[i % len(bugs)], seconds) for i in range(verifications)]
        visits = [future.result(timeout=2 * seconds) for future in futures]
    return Classroom(visits[:students], visits[students:])


# --- python -m tests.classroom ---------------------------------------------------------------------

def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.classroom", description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an app already running; default: start `python -m demo` on --model")
    parser.add_argument("--model", help="for the app started here (default: a gpt2-shaped checkpoint, built now)")
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--verifications", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=600, help="the longest any one request may take")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.url:
        load = classroom(args.url, args.students, args.verifications, args.max_new_tokens, args.seconds)
    else:
        with tempfile.TemporaryDirectory() as scratch:
            load = _with_app_started(Path(scratch), args)
    summary = load.summary()
    for name, value in summary.items():
        print(f"| {name} | {value:.2f} |" if isinstance(value, float) else f"| {name} | {value} |")
    return 1 if summary["errors"] else 0


def _with_app_started(scratch: Path, args) -> Classroom:
    """`python -m demo` in a process of its own, as in class, on --model or a gpt2-shaped checkpoint
    (offline, with this machine's Hugging Face cache)."""
    from huggingface_hub import constants

    from tests.app_server import command_env, command_serving
    from tests.checkpoints import GPT2_SMALL, build_checkpoint

    model = args.model or str(build_checkpoint(scratch / "gpt2-shaped", **GPT2_SMALL))
    with command_serving(["--model", model], command_env(Path(constants.HF_HOME)), logs=scratch) as (_, url):
        return classroom(url, args.students, args.verifications, args.max_new_tokens, args.seconds)


if __name__ == "__main__":
    sys.exit(main())
