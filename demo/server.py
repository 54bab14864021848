"""Serving the app: its look, a bound on every request's size that Gradio does not set itself, and no search
for a library that is not there at each message a stream sends."""
import importlib.util
import sys
from pathlib import Path

import gradio as gr
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware

from demo.api import MAX_REQUEST_BYTES
from demo.teacher import TEACHER_KEY_VARIABLE, TeacherKey
from model.serving.engine import Engine

CSS = (Path(__file__).parent / "style.css").read_text()
# Gradio keeps each session's copy of the page's settings (a few hundred kB here), 10,000 sessions unless told:
# gigabytes after weeks of lessons. A class of 30 has 30 pages, and a few scripts besides; every event a page sends
# makes its session the most recent, and the least recently used go first (a teacher's key then asked again).
SESSIONS_KEPT = 64


def launch(app: gr.Blocks, engine: Engine | None = None, **options):
    """Start serving `app` (from build_app) with its look (Gradio 6 takes the theme and the css at launch),
    every request's body bounded; then tell the teacher's terminal how to open the teacher's controls, and
    serve until Ctrl-C. With prevent_thread_lock=True it returns at once instead, the server running.

    engine: an engine whose loop is not running yet (Engine(thread=False)): it runs here, in the calling
    thread, once the server is up; then the server closes.
    """
    remember_matplotlib_is_absent()
    limit = Middleware(RequestSizeLimit, max_bytes=MAX_REQUEST_BYTES)
    look = dict(theme=gr.themes.Soft(), css=CSS, footer_links=["api"], app_kwargs={"middleware": [limit]},
                state_session_capacity=SESSIONS_KEPT)
    returns_at_once = options.pop("prevent_thread_lock", False)
    served = app.launch(**look, **options, prevent_thread_lock=True)
    if returns_at_once:
        return served
    tell_the_teacher(app.teacher_key, served[1])
    try:
        engine.run() if engine is not None else app.block_thread()
    except KeyboardInterrupt:
        print("Keyboard interruption: closing the app.", file=sys.stderr)
    finally:
        if engine is not None:
            engine.close()
        app.close()
    return served


def remember_matplotlib_is_absent():
    """Gradio imports matplotlib around every event it runs, each message of a stream included, to switch its
    backend (`gradio.utils.MatplotlibBackendMananger`). Where matplotlib is not installed, Python does not remember
    a failed import: each attempt searches every folder of sys.path again, twice a message, on the server's event
    loop. None in sys.modules is Python's own mark for "absent": an import then fails at once, as it would anyway."""
    if importlib.util.find_spec("matplotlib") is None:
        sys.modules.setdefault("matplotlib", None)


def tell_the_teacher(key: TeacherKey, url: str):
    """In the teacher's terminal alone: the address that opens the teacher's controls, or where the key is set."""
    if key.made_here:
        print(f"For the teacher: {key.page_address(url)} opens the teacher's controls (a key made at start-up, "
              f"new at each start; set {TEACHER_KEY_VARIABLE} to choose one)", file=sys.stderr, flush=True)
    else:
        print(f"For the teacher: the teacher's key is {TEACHER_KEY_VARIABLE}'s value", file=sys.stderr, flush=True)


class RequestSizeLimit:
    """ASGI middleware: a request body is read no further than `max_bytes`; past that, the answer is 413.

    Gradio bounds uploads only (and only when asked): without this, one request carrying a gigabyte of JSON
    would be held in memory before the app could refuse its prompt.
    """

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(413, f"request body over the app's limit of {self.max_bytes:,} bytes")
            return message

        await self.app(scope, counted if scope["type"] == "http" else receive, send)
