"""A Space that runs for weeks: lesson after lesson its memory stays bounded, and between lessons it idles.

The short soak of `python -m tests.classroom --rounds N` (tests/soak.py) against the real command, on the
small trained checkpoint: README's figures come from the long one.
"""
import time

import psutil
import pytest

from tests.app_server import command_env, command_serving
from tests.soak import soak

pytestmark = pytest.mark.slow
ROUNDS = 8  # Gradio's sessions (demo/server.py's SESSIONS_KEPT) fill in the first three
# From round 3 to round 8: the bounded app grows by about half of this (README's soak), each round's sessions kept
# without a bound grew it by more than twice this.
GROWTH = 0.10


@pytest.fixture(scope="module")
def app_command(trained_dir, tmp_path_factory):
    """`python -m demo` on the trained checkpoint, as in class: its pid and its URL."""
    folder = tmp_path_factory.mktemp("soak")
    with command_serving(["--model", str(trained_dir), "--device", "cpu"], command_env(folder), logs=folder) as served:
        yield served


def test_lesson_after_lesson_the_apps_memory_stays_bounded_and_the_text_the_same(app_command):
    pid, url = app_command
    result = soak(url, pid, ROUNDS, progress=lambda line: None)
    assert result["failures"] == 0
    assert result["fixed request's text unchanged"]
    assert result["growth to the end"] <= GROWTH, f"resident memory by round, MB: {result['curve MB']}"


def test_with_nobody_connected_the_app_idles(app_command):
    """Gradio's own queue polls every millisecond: a few percent of a core, for nothing, all day."""
    app = psutil.Process(app_command[0])
    time.sleep(1)  # whatever a test before left running winds down
    before, started = sum(app.cpu_times()[:2]), time.monotonic()
    time.sleep(5)
    cores = (sum(app.cpu_times()[:2]) - before) / (time.monotonic() - started)
    assert cores < 0.05, f"the idle app used {cores:.1%} of a core"
