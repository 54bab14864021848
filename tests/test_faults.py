"""Faults: a stream that ends early frees its slot at once, and a start-up that cannot succeed says why in
one line and exits, or takes the documented fallback. Never a hang: every wait has a deadline.
"""
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import httpx
import psutil
import pytest
import torch
from gradio_client import Client

from demo.__main__ import main as demo_main
from demo.app import generations_at_once
from demo.state import load_state
from model.sampling import SamplingSettings
from model.serving.sequence import stream
from model.serving.text import prepare_prompt, stream_text
from tests.app_server import (
    REPO_ROOT,
    command_env,
    command_serving,
    served,
    wait_until,
    watched_model,
)
from tests.checkpoints import (
    corrupted_header,
    corrupted_values,
    missing,
    not_gpt2,
    pickle_only,
    truncated,
    without_config,
)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

PROMPT = "The capital of France is"
LONG = SamplingSettings(max_new_tokens=200, temperature=1.0, top_k=None, seed=0)  # the tiny model writes on
SECONDS_PER_PIECE = 0.05  # paced so that LONG is still writing long after the tests stop it


# --- Stop, or a client gone: the row is free at once ---------------------------------------------


@pytest.fixture
def watched(monkeypatch):
    with watched_model(monkeypatch, SECONDS_PER_PIECE) as watched:
        yield watched


@pytest.fixture
def url(tiny_state, watched):
    with served(tiny_state) as url:
        yield url


def pieces_alone(tiny_state, seed: int) -> int:
    """How many pieces the long generation writes for `seed` when nobody stops it."""
    prompt = prepare_prompt(tiny_state.writer, PROMPT, LONG.max_new_tokens)
    return len(list(stream_text(stream(tiny_state.writer, prompt.ids, replace(LONG, seed=seed)))))


def started_then_stopped(url: str, seed: int):
    """A long stream through gradio_client; the function returned presses Stop (what the page's button does)."""
    job = Client(url, analytics_enabled=False, verbose=False).submit(
        PROMPT, LONG.max_new_tokens, LONG.temperature, 0, LONG.top_p, seed, api_name="/generate")
    return job.cancel


def started_then_disconnected(url: str, seed: int):
    """A long stream read over raw HTTP; the function returned closes the connection (a tab closed, a lost
    network) without a word to the server."""
    event_id = httpx.post(f"{url}gradio_api/call/generate", timeout=10, json={
        "data": [PROMPT, LONG.max_new_tokens, LONG.temperature, 0, LONG.top_p, seed]}).json()["event_id"]
    connection = httpx.Client(timeout=30)
    lines = connection.send(connection.build_request("GET", f"{url}gradio_api/call/generate/{event_id}"),
                            stream=True).iter_lines()
    while next(lines) != "event: generating":  # it is streaming to us
        pass

    def disconnect():  # holding `lines` until then: a reader dropped early closes the connection itself
        lines.close()
        connection.close()
    return disconnect


@pytest.mark.parametrize("start", [started_then_stopped, started_then_disconnected], ids=["stop", "disconnect"])
def test_a_stream_ended_early_frees_its_row_at_once(tiny_state, watched, url, start):
    slots = generations_at_once(tiny_state)
    would_write = sum(pieces_alone(tiny_state, seed) for seed in range(slots))
    ends = [start(url, seed) for seed in range(slots)]  # every slot taken by a long generation
    wait_until(lambda: watched.running == slots and watched.pieces >= 2 * slots, 30, "the generations are writing")
    with ThreadPoolExecutor(len(ends)) as students:  # at once, as a class does: one by one, each round trip to a
        # busy server would let the others write on
        list(students.map(lambda end: end(), ends))
    wait_until(lambda: watched.running == 0 and tiny_state.engine.active_rows == 0, 10,
               "Stop or a closed connection ends the model's work and frees the engine's row")
    written = watched.pieces
    time.sleep(10 * SECONDS_PER_PIECE)
    assert watched.pieces == written < would_write / 2, "a generation went on in the background"
    Client(url, analytics_enabled=False, verbose=False).predict(PROMPT, 8, 0.8, 50, 1.0, 1, api_name="/generate")


# --- start-up: one line and exit 2 ------------------------------------------------------------------

def startup_error(capsys, argv) -> str:
    """python -m demo's one line on stderr, once it has exited 2."""
    assert demo_main(argv) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


@pytest.mark.parametrize("make, says", [
    (truncated, "(a truncated or damaged file? download or save it again)"),
    (corrupted_header, "header too large (a truncated or damaged file? download or save it again)"),
    (without_config, "is not a GPT-2 checkpoint: it has no config.json"),
    (not_gpt2, "is a 'bert' checkpoint, not GPT-2"),
    (pickle_only, "has no .safetensors weights. It has a pickle checkpoint (pytorch_model.bin): convert it with "
                  "save_pretrained, or pass --allow-pickle if you trust its source."),
    (missing, "no folder at"),
], ids=lambda value: getattr(value, "__name__", None))
def test_a_checkpoint_that_cannot_be_loaded_stops_the_start_in_one_line(tiny_dir, tmp_path, capsys, make, says):
    assert says in startup_error(capsys, ["--model", str(make(tiny_dir, tmp_path)), "--device", "cpu"])


def test_a_pickle_checkpoint_starts_only_when_allowed(tiny_dir, tmp_path, monkeypatch):
    monkeypatch.setattr("demo.__main__.launch", lambda app, engine, **options: None)
    assert demo_main(["--model", str(pickle_only(tiny_dir, tmp_path)), "--device", "cpu", "--allow-pickle"]) == 0


@pytest.mark.parametrize("model", ["tiny", "gpt2"], ids=["folder", "hub-id"])
def test_a_device_asked_for_but_absent_stops_the_start_in_one_line(tiny_dir, capsys, monkeypatch, model):
    """Even for a hub id, whose missing weights would fall back to random ones: no device, no fallback."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a CPU machine, whatever this one is
    line = startup_error(capsys, ["--model", str(tiny_dir) if model == "tiny" else model, "--device", "cuda"])
    assert line == ("error: device 'cuda' was asked for, but torch sees none on this machine: use --device auto "
                    "(picks what is there) or --device cpu")


def test_damaged_numbers_load_unnoticed(tiny_dir, tiny_reference, tmp_path):
    """A limit, documented: safetensors keeps no checksum, and verification compares two models that read the
    same damaged numbers. The app starts, verified; only the text it writes differs."""
    damaged = load_state(str(corrupted_values(tiny_dir, tmp_path)), device="cpu")
    assert damaged.fallback_reason is None and damaged.startup_report["verified"]
    intact = tiny_reference.state_dict()
    assert any(not torch.equal(tensor, intact[name]) for name, tensor in damaged.reference.state_dict().items())


# --- start-up as the real command ------------------------------------------------------------------

def run_demo(*args, hf_home, seconds=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "demo", *args], cwd=REPO_ROOT, env=command_env(hf_home),
                          capture_output=True, text=True, timeout=seconds)


def test_the_command_exits_in_one_line_on_a_truncated_checkpoint(tiny_dir, tmp_path):
    """The real process, not main(): it must end by itself (run_demo's timeout would fail a hang)."""
    done = run_demo("--model", str(truncated(tiny_dir, tmp_path)), hf_home=tmp_path)
    assert (done.returncode, done.stdout) == (2, "") and "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1].startswith("error: cannot load the weights of")


def test_the_command_says_so_when_its_port_is_taken(tiny_dir, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_demo("--model", str(tiny_dir), "--device", "cpu", "--port", str(port), hf_home=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1] == (
        f"error: cannot serve the app (Cannot find empty port in range: {port}-{port}): is it already running? "
        f"Choose another --port, or a --host this machine has")


@pytest.fixture(scope="module")
def offline_command(tmp_path_factory):
    """`python -m demo` as a teacher starts it in class: no --host, no --share, no network, nothing cached
    (an empty HF_HOME). Its pid, its URL, and the folder holding its stdout and stderr."""
    folder = tmp_path_factory.mktemp("offline")
    with command_serving(["--model", "gpt2", "--device", "cpu"], command_env(folder), logs=folder) as (pid, url):
        yield pid, url, folder


def test_offline_without_weights_the_command_serves_random_ones_and_says_so(offline_command):
    """The documented fallback."""
    _, url, logs = offline_command
    assert "randomly initialised GPT-2 of the same shape" in httpx.get(url, timeout=10).text
    warnings = [line for line in (logs / "stderr").read_text().splitlines() if line.startswith("warning: ")]
    assert warnings == [
        "warning: cannot load 'gpt2': no network and no cached copy (HF_HUB_OFFLINE is set, so the hub is not "
        "asked). Run once with a network (the weights are cached for later; a proxy is set with HTTPS_PROXY, a "
        "mirror with HF_ENDPOINT), or pass a folder saved with save_pretrained: --model ./gpt2-local",
        "warning: running on random weights of gpt2's shape: verification works, the text is gibberish"]


def test_the_command_tells_the_teacher_the_address_that_opens_the_teachers_controls(offline_command):
    """TEACHER_KEY unset: a key made at start-up, in the teacher's terminal alone, never in the page."""
    _, url, logs = offline_command
    wait_until(lambda: "For the teacher: " in (logs / "stderr").read_text(), 30, "the teacher's line is printed")
    line = next(line for line in (logs / "stderr").read_text().splitlines() if line.startswith("For the teacher: "))
    assert line.startswith(f"For the teacher: {url.rstrip('/')}/?teacher=")
    key = line.split("?teacher=")[1].split()[0]
    assert len(key) >= 16 and key not in httpx.get(url, timeout=10).text and key not in (logs / "stdout").read_text()


def test_the_command_listens_on_loopback_only_and_opens_no_share_link(offline_command):
    """Security defaults: only this machine can reach the app unless --host (or a Space's environment) says
    otherwise, and no public gradio.live link unless --share asks for one."""
    pid, url, logs = offline_command
    listening = {(c.laddr.ip, c.laddr.port) for c in psutil.Process(pid).net_connections("inet")
                 if c.status == psutil.CONN_LISTEN}
    assert listening == {("127.0.0.1", int(url.rstrip("/").rsplit(":", 1)[1]))}
    stdout = (logs / "stdout").read_text()
    assert f"Running on local URL:  {url.rstrip('/')}" in stdout and "gradio.live" not in stdout
