"""The demo app, served in-process on a free local port, for the app and browser tests."""
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import gradio as gr

from demo.app import launch


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
