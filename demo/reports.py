"""verify() for a whole class: each report made once, and each of its steps started in a pause of the
class's writing.

A report depends only on the two models, the prompt and the mistake, and a class asks the same
question many times: each is kept (the last KEPT of them). What the correct load writes after a
prompt (the greedy tokens of both models, the lower precisions, the text) is the same for every
mistake's report on it, and is made once. Before each step, the report waits for the engine to
pause, VERIFY_WAITS_SECONDS at most in all: a report's work shares the CPU with the class and would
slow every student's text while it runs; a teacher's report is still never held back for long.

Every report is made on a thread of its own that ends with it. PyTorch keeps a pool of workers and
buffers for each thread that computes in parallel: on a server's worker thread they would stay for as
long as that thread lives, and while another thread's pool is alive every parallel operation of the
engine's thread takes several times longer (the class through the app, 15-20 % slower). A thread that
ends takes its pool with it.
"""
import contextvars
import copy
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from model.gpt import GPT
from model.memory import release_freed_memory
from model.proof.verify import BROKEN_STEPS, CORRECT_STEPS, GREEDY_TOKENS, STEPS, verify
from model.serving.engine import Engine

KEPT = 64  # reports, and prompts whose writing is kept
VERIFY_WAITS_SECONDS = 10
# The steps whose result is the same for every mistake's report on a prompt: made once per prompt.
SHARED_STEPS = {"their_greedy", "our_greedy", "precision", "correct_text"}


class Kept(OrderedDict):
    """The last `most` values made, by key; the one used least recently is dropped first."""

    def __init__(self, most: int):
        super().__init__()
        self.most = most

    def get_or_make(self, key, make):
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = self[key] = make()
        while len(self) > self.most:
            self.popitem(last=False)
        return value


class Reports:
    """The app's reports, as JSON: `get(prompt, mistake)`."""

    def __init__(self, reference, ours: GPT, lower_precision: dict[str, GPT], engine: Engine | None = None,
                 kept: int = KEPT, waits_seconds: float = VERIFY_WAITS_SECONDS, greedy_tokens: int = GREEDY_TOKENS):
        """lower_precision: our GPT in each lower dtype a report measures (model.proof.verify.PRECISIONS), kept
        for every report; engine: the class's, whose pauses each step waits for (None: no waiting)."""
        self.reference, self.ours, self.lower_precision, self.engine = reference, ours, lower_precision, engine
        self.waits_seconds, self.greedy_tokens = waits_seconds, greedy_tokens
        self._reports, self._shared = Kept(kept), Kept(kept * len(SHARED_STEPS))
        self._lock = threading.Lock()  # one report at a time: a second asker of the same one waits for it

    def get(self, prompt: str, mistake: str | None = None, progress: Callable | None = None) -> dict:
        """The report's dict, a copy for the caller to keep or change.

        progress(fraction, desc=...): told which step is computed, and when one waits (gr.Progress is one).
        """
        with self._lock:
            report = self._reports.get_or_make((prompt, mistake), lambda: on_a_thread_of_its_own(
                lambda: self._make(prompt, mistake, progress)))
            return copy.deepcopy(report)

    def _make(self, prompt: str, mistake: str | None, progress: Callable | None) -> dict:
        steps = CORRECT_STEPS + (BROKEN_STEPS if mistake is not None else [])
        deadline = time.monotonic() + self.waits_seconds

        def step(name: str, make: Callable):
            if name in SHARED_STEPS and (prompt, name) in self._shared:
                return self._shared.get_or_make((prompt, name), make)
            done = steps.index(name) / len(steps)
            left = max(deadline - time.monotonic(), 0)
            if self.engine is not None and left and not self.engine.wait_until_idle(timeout=0):
                _tell(progress, done, f"Waiting for a pause in the class's writing (at most {left:.0f} s)…")
                self.engine.wait_until_idle(timeout=left)
            _tell(progress, done, f"Computing {STEPS[name]}…")
            return self._shared.get_or_make((prompt, name), make) if name in SHARED_STEPS else make()

        report = verify(self.reference, prompt, mistake, self.ours, self.greedy_tokens, self.lower_precision,
                        step).to_dict()
        release_freed_memory()  # the models' activations on the prompt, given back: the app runs for weeks
        return report


def on_a_thread_of_its_own(make: Callable[[], dict]) -> dict:
    """make(), on a thread that ends when it returns (in the caller's context: Gradio's progress finds its event
    there)."""
    with ThreadPoolExecutor(1, thread_name_prefix="report") as thread:
        return thread.submit(contextvars.copy_context().run, make).result()


def _tell(progress: Callable | None, fraction: float, what: str):
    if progress is not None:
        progress(fraction, desc=what)
