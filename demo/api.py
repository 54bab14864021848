"""What a request may ask for and what it gets: the app's endpoints, their bounds, their errors.

`/generate` streams a continuation and `/verify_report` returns the JSON of `python -m model.verify
--json`; the page's tabs call the same methods. Every input is checked here, and a bad one comes back
as an error on the page that names the field, never as a traceback in the server's log.
"""
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import gradio as gr

from demo.board import ClassBoard
from demo.gpu import on_gpu
from demo.state import DemoState
from demo.teacher import address_of
from model.loading.mistakes import DEMONSTRATIONS
from model.proof.board import Judge
from model.proof.verify import DEFAULT_PROMPT
from model.sampling import SamplingSettings
from model.serving.text import Prompt, prepare_prompt, stream_text
from model.tokenizer import encode

# Bounds on what one request may ask for, so no student can hold a slot, the queue or the memory for long.
MAX_NEW_TOKENS = 512  # bounds the time one request holds a slot
# A pasted article is welcome (GPT-2 reads the end that fits its context, and the page says so); a longer one is
# refused, which bounds the time spent tokenizing, even for one 100,000-letter word.
MAX_PROMPT_CHARS = 100_000
# Every HTTP request body, read no further than this: the prompt at its limit, JSON-escaped (up to 12 bytes a
# character), with the chat's history of hundreds of turns. Uploads too: the app accepts no files at all.
MAX_REQUEST_BYTES = 8 * 2**20
# Pieces written within this many seconds go to the browser as one message: each message costs the server's
# event loop about the same whatever it carries, and the loop shares the cores with the engine. A lone stream sends
# a message every STREAM_SECONDS; while many stream, the server sends about MESSAGES_PER_SECOND in all, each
# stream its share (a class of 30: each one every 30 / MESSAGES_PER_SECOND seconds, a few tokens a message), and
# the engine keeps the cores.
STREAM_SECONDS = 0.1
MESSAGES_PER_SECOND = 100
# In a str, a surrogate is always half of a character: JSON's "\ud83d" without its "\ude00" decodes to one.
UNPAIRED_SURROGATE = re.compile("[\ud800-\udfff]")


BOARD_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")  # a submitting client's id: a uuid's hex, or the like


class DemoApi:
    """The app's endpoints; every request reads the same model and brings its own seed."""

    def __init__(self, state: DemoState):
        self.state = state
        self.board = ClassBoard()
        self.streams = StreamCount()
        self._judge: Judge | None = None
        self._judge_made = threading.Lock()

    def generate(self, prompt: str, max_new_tokens: int = 64, temperature: float = 0.8, top_k: int = 50,
                 top_p: float = 1.0, seed: int = 0) -> Iterator[str]:
        """Our GPT's continuation of `prompt`, streamed: each message is the text so far.

        top_k=0 keeps every token; temperature=0 is greedy. The same seed writes the same text.
        """
        prepared, settings = self.prepare(prompt, max_new_tokens, temperature, top_k, top_p, seed)
        yield from self.continuation(prepared, settings)

    def prepare(self, prompt, max_new_tokens, temperature, top_k, top_p, seed) -> tuple[Prompt, SamplingSettings]:
        """The prompt's tokens and the checked settings, or an error on the page naming what is wrong.

        A prompt longer than the model's context keeps its end, and the page says so.
        """
        with shown_to_user():
            settings = SamplingSettings(max_new_tokens=max_new_tokens, temperature=temperature,
                                        top_k=_none_if_zero(top_k), top_p=top_p,
                                        seed=seed).validated(self.state.vocab_size, MAX_NEW_TOKENS)
        prepared = prepare_prompt(self.state.writer, _checked_prompt(prompt), settings.max_new_tokens)
        if prepared.notice:
            gr.Warning(prepared.notice)
        return prepared, settings

    def continuation(self, prompt: Prompt, settings: SamplingSettings) -> Iterator[str]:
        """The continuation so far, its first piece at once and then a message every
        `self.streams.seconds_between_messages()`; whole at the end (even if empty)."""
        text, shown, shown_at = "", None, 0.0
        with self.streams:
            for piece in stream_text(self.state.tokens(prompt.ids, settings)):
                text += piece
                if time.monotonic() - shown_at >= self.streams.seconds_between_messages():
                    yield (shown := text)
                    shown_at = time.monotonic()
            if text != shown:
                yield text

    def verify_report(self, prompt: str = DEFAULT_PROMPT, bug: str = "none") -> dict:
        """Our GPT against the reference on `prompt`; with `bug`, a deliberately broken load too.

        Returns the JSON of `python -m model.verify --json`. bug: "none" or a mistake of the catalogue
        (model.loading.mistakes.DEMONSTRATIONS).
        """
        return self.report(prompt, bug)

    def report(self, prompt: str, bug: str, progress: Callable | None = None) -> dict:
        """verify_report's JSON, each step after a pause in the class's writing (demo/reports.py).

        progress(fraction, desc=...): told what is computed, and what is waited for (gr.Progress is one).
        """
        if bug not in ("none", *DEMONSTRATIONS):
            raise user_error(f"bug must be none or one of {', '.join(DEMONSTRATIONS)}, got {bug!r}")
        prompt = _checked_prompt(prompt)
        with shown_to_user():
            report = self.state.reports.get(prompt, None if bug == "none" else bug, progress)
        kept = report["prompt_tokens"]
        verified = Prompt(prompt, kept, len(encode(prompt)) - len(kept))
        if verified.notice:
            gr.Warning(verified.notice)
        return report


    # --- the class board ----------------------------------------------------------------------------------

    def judge(self) -> Judge:
        """The board's judge, made at its first use (the catalogue's logits on the board's prompt, once)."""
        with self._judge_made:
            if self._judge is None:
                self._judge = on_gpu(Judge)(self.state.reference)
            return self._judge

    def board_question(self) -> dict:
        """What a submission answers: the prompt's tokens, the vocabulary entries to send, the weights' fingerprint."""
        return self.judge().question.to_dict()

    def submit_logits(self, client: str, logits: list, weights: float | None = None,
                      request: gr.Request = None) -> dict:
        """Judge a student's logits on the board question and count the verdict for `client` (its latest counts).

        client: the student's id on the board (model.check keeps one per machine); logits: at every position of
        the question's prompt, its token_ids' logits; weights: the fingerprint of the weights they used.
        """
        if not isinstance(client, str) or not BOARD_ID.fullmatch(client):
            raise user_error("client must be an id of 8 to 64 letters, digits, - or _ (a uuid's hex will do)")
        if weights is not None and (isinstance(weights, bool) or not isinstance(weights, (int, float))
                                    or not math.isfinite(weights)):
            raise user_error(f"weights must be the fingerprint number the check computes, got {weights!r}")
        with shown_to_user():
            verdict = self.judge().judge(logits, weights)
        refused = self.board.record(client, verdict, address_of(request))
        if refused is not None:
            raise user_error(f"not counted: {refused}")
        return verdict.to_dict()

    def class_board(self) -> dict:
        """The board's counts: {"total", "verified", "near_miss": {id: n}, "wrong": {id: n}, "other_weights"}."""
        return self.board.counts()


class StreamCount:
    """How many generations are streaming now, and so how long each waits between two messages."""

    def __init__(self):
        self.now = 0
        self._lock = threading.Lock()

    def __enter__(self):
        with self._lock:
            self.now += 1

    def __exit__(self, *exc):
        with self._lock:
            self.now -= 1

    def seconds_between_messages(self) -> float:
        return max(STREAM_SECONDS, self.now / MESSAGES_PER_SECOND)


def user_error(message: str) -> gr.Error:
    """An error shown to the user who caused it; the server's log stays free of their typos' tracebacks."""
    return gr.Error(message, print_exception=False)


@contextmanager
def shown_to_user():
    """A ValueError from model/ (a bad setting, named with its range) becomes an error on the page."""
    try:
        yield
    except ValueError as error:
        raise user_error(str(error)) from None


def _none_if_zero(top_k):
    """The app's top_k=0 (keep every token) is SamplingSettings' None; any other value is checked there."""
    return None if type(top_k) is int and top_k == 0 else top_k


def _checked_prompt(prompt) -> str:
    """The prompt, if it is text the model can read; emoji, any script, control characters and NUL all are."""
    if not isinstance(prompt, str):
        raise user_error(f"prompt must be text, got {type(prompt).__name__}")
    if not prompt.strip():
        raise user_error("prompt is empty: type the start of a text for GPT-2 to continue")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise user_error(f"prompt is {len(prompt):,} characters long; the limit is {MAX_PROMPT_CHARS:,}: shorten "
                         f"it (of a long prompt, the model reads only the end that fits its context anyway)")
    if surrogate := UNPAIRED_SURROGATE.search(prompt):
        raise user_error(f"prompt holds half a character at position {surrogate.start()} (an unpaired UTF-16 "
                         f"surrogate, U+{ord(surrogate[0]):04X}): it is not text; paste the text again")
    return prompt
