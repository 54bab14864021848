"""The demo app, served in-process on a free local port (or as the real command), and ways to watch it.

Everything listens on 127.0.0.1 only, and every wait has a deadline.
"""
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import gradio as gr
import httpx

import demo.api
from demo.server import launch
from model.sampling import SamplingSettings
from model.serving.text import complete, stream_text

REPO_ROOT = Path(__file__).resolve().parents[1]


def written_alone(state, prompt, max_new_tokens, temperature, top_k, top_p, seed) -> str:
    """What the model writes for the /generate arguments, called directly: no server, no other request."""
    settings = SamplingSettings(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k or None,
                                top_p=top_p, seed=seed)
    return complete(state.writer, prompt, settings)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def serving(app: gr.Blocks) -> Iterator[str]:
    """The app's local URL while the block runs; the server stops after it."""
    _, url, _ = launch(app, prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True)
    try:
        yield url
    finally:
        app.close()


def app_state(folder):
    """The app's shared state (demo.state.DemoState) on the checkpoint in `folder`, on the CPU."""
    from demo.state import load_state
    return load_state(str(folder), device="cpu")


TEACHER_KEY = "the teacher's key, in tests"


def served(state) -> Iterator[str]:
    """The app of `state` (demo.state.DemoState), built with TEACHER_KEY and served: its URL while the block runs."""
    from demo.app import build_app
    from demo.teacher import TeacherKey
    return serving(build_app(state, teacher_key=TeacherKey(TEACHER_KEY)))


def wait_until(condition: Callable[[], bool], seconds: float, what: str):
    """Return as soon as `condition()` holds; fail, saying `what` did not happen, after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(0.02)


# --- the model, watched from the server's side -----------------------------------------------------

class WatchedModel:
    """Stands in for demo.api.stream_text, and counts what the server's model does: the generations
    running now and the pieces of text written so far. `gate` (open unless a test closes it) holds every
    generation before its first piece; `seconds_per_piece` slows the tiny model to a watchable pace."""

    GATE_SECONDS = 60  # a test that closes the gate opens it again well before this

    def __init__(self, seconds_per_piece: float = 0.0):
        self.seconds_per_piece = seconds_per_piece
        self.gate = threading.Event()
        self.gate.set()
        self.running = 0
        self.pieces = 0
        self._lock = threading.Lock()

    def stream_text(self, tokens):
        self._add(running=1)
        try:
            if not self.gate.wait(self.GATE_SECONDS):
                raise TimeoutError("the test never opened the gate")
            for piece in stream_text(tokens):
                time.sleep(self.seconds_per_piece)
                self._add(pieces=1)
                yield piece
        finally:  # also when the app closes the stream early: Stop, or a client gone
            self._add(running=-1)

    def _add(self, running: int = 0, pieces: int = 0):
        with self._lock:
            self.running += running
            self.pieces += pieces


@contextmanager
def watched_model(monkeypatch, seconds_per_piece: float = 0.0) -> Iterator[WatchedModel]:
    watched = WatchedModel(seconds_per_piece)
    monkeypatch.setattr(demo.api, "stream_text", watched.stream_text)
    try:
        yield watched
    finally:
        watched.gate.set()  # never leave a generation waiting on a failed test


# --- raw HTTP, as any script (or curl) can talk to the app ------------------------------------------

def raw_call(url: str, endpoint: str, body: bytes) -> tuple[str, object]:
    """POST a JSON body, as bytes, to Gradio's /call/<endpoint> route and read the answer to its end.

    Returns ("complete", outputs), ("error", the error's payload), or ("http <status>", the response text)
    when the request is refused before it reaches the app. Bytes, not objects: JSON that Python's client
    would not send (NaN, a lone surrogate) is what these tests are about.
    """
    posted = httpx.post(f"{url}gradio_api/call/{endpoint}", content=body,
                        headers={"content-type": "application/json"}, timeout=30)
    if posted.status_code != 200:
        return f"http {posted.status_code}", posted.text
    event_id = posted.json()["event_id"]
    with httpx.stream("GET", f"{url}gradio_api/call/{endpoint}/{event_id}", timeout=30) as stream:
        lines = [line for line in stream.iter_lines() if line]
    event, data = lines[-2].removeprefix("event: "), lines[-1].removeprefix("data: ")
    return event, json.loads(data)


def page_event(url: str, app: gr.Blocks, api_name: str, data: list, session: str) -> tuple[int, object]:
    """Call one of the page's own events (private: no client library calls it) as a script can, by its index, in
    the session `session`: (HTTP status, the outputs or the error's message)."""
    index = next(d["id"] for d in app.config["dependencies"] if d.get("api_name") == api_name)
    answer = httpx.post(f"{url}gradio_api/run/predict", json={"data": data, "fn_index": index, "session_hash": session},
                        timeout=30)
    body = answer.json()
    return answer.status_code, body.get("data", body.get("error"))


# --- the real command ------------------------------------------------------------------------------

def command_env(hf_home: Path) -> dict:
    """The environment for a real `python -m ...`: offline, analytics off, nothing inherited that binds."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("GRADIO_SERVER")}
    return {**env, "HF_HUB_OFFLINE": "1", "HF_HOME": str(hf_home), "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "GRADIO_ANALYTICS_ENABLED": "False"}


@contextmanager
def command_serving(args: list[str], env: dict, logs: Path, seconds: float = 180) -> Iterator[tuple[int, str]]:
    """`python -m demo <args> --port <free>` running, once its page answers: its pid and its URL.

    Its stdout and stderr go to logs/stdout and logs/stderr (files: a pipe nobody reads could fill and stall it).
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with open(logs / "stdout", "w") as stdout, open(logs / "stderr", "w") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "demo", *args, "--port", str(port)], cwd=REPO_ROOT,
                                   env=env, stdout=stdout, stderr=stderr, text=True)
    try:
        wait_until(lambda: _answers(url) or process.poll() is not None, seconds, "python -m demo serves its page")
        assert process.poll() is None, f"python -m demo exited {process.returncode}: {(logs / 'stderr').read_text()}"
        yield process.pid, url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False
