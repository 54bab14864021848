"""The app's stable API, through gradio_client against the app served in-process; start-up; offline.

Bad input has its own module, test_bad_input.py."""
import importlib.machinery
import json
import subprocess
import sys
import threading
import time

import pytest
import torch
from gradio_client import Client

import demo.api
import demo.gpu
from demo.__main__ import main as demo_main
from demo.api import STREAM_SECONDS, DemoApi
from demo.app import build_app
from demo.gpu import GPU_SECONDS, on_gpu
from demo.state import load_state
from model import verify as verify_cli
from model.loading.mistakes import DEMONSTRATIONS, MISTAKES
from model.proof.verify import CORRECT_STEPS, STEPS, verify
from model.sampling import SamplingSettings
from model.serving import products
from model.serving.products import RowInvariantLinear
from model.tokenizer import encode
from tests.app_server import REPO_ROOT, serving, wait_until, watched_model, written_alone
from tests.checkpoints import GPT2_PARAMETERS

pytestmark = pytest.mark.slow  # a real server, and the real command

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def client(tiny_app_url):
    return Client(tiny_app_url, analytics_enabled=False, verbose=False)


def streamed(client, *args) -> list[str]:
    """Every message /generate sent, in order."""
    job = client.submit(*args, api_name="/generate")
    job.result()  # waits for the end, and raises the app's error if there was one
    return job.outputs()


def expected_text(state, *args) -> str:
    return written_alone(state, PROMPT, *args)


# --- /generate -----------------------------------------------------------------------------------

def test_generate_streams_growing_text_that_ends_as_model_generate_writes_it(client, tiny_state, monkeypatch):
    args = (PROMPT, 24, 0.9, 40, 0.95, 7)
    with watched_model(monkeypatch, seconds_per_piece=STREAM_SECONDS / 3) as watched:
        messages = streamed(client, *args)
    assert 3 <= len(messages) < watched.pieces, messages  # streamed as it grows, several pieces to a message
    assert all(later.startswith(earlier) and later != earlier for earlier, later in zip(messages, messages[1:]))
    assert messages[-1] == expected_text(tiny_state, *args[1:])


def test_while_many_stream_each_sends_its_share_of_the_messages_and_the_same_text(client, tiny_state, monkeypatch):
    streams, args = 4, (PROMPT, 24, 0.9, 40, 0.95)
    monkeypatch.setattr(demo.api, "MESSAGES_PER_SECOND", 10)  # 4 streams: a message each every 0.4 s, not 0.1
    with watched_model(monkeypatch, seconds_per_piece=STREAM_SECONDS / 3) as watched:
        watched.gate.clear()  # all four write at the same time
        jobs = [client.submit(*args, seed, api_name="/generate") for seed in range(streams)]
        wait_until(lambda: watched.running == streams, 30, "every stream started")
        started = time.monotonic()
        watched.gate.set()
        for job in jobs:
            job.result()
        seconds = time.monotonic() - started
    for seed, job in enumerate(jobs):
        messages = job.outputs()
        assert messages[-1] == expected_text(tiny_state, *args[1:], seed)
        # Alone, a message every 0.1 s (the test above); here one every 0.4 s, every 0.3 s once one has ended.
        assert len(messages) <= 2 + seconds / 0.3, (len(messages), seconds)


def test_a_stream_does_not_search_the_disk_for_matplotlib_at_each_message(client, monkeypatch):
    # Gradio tries to import matplotlib around every event; where it is not installed (requirements.txt does not
    # install it), each try would search sys.path again: twice for every message of every student's stream.
    searched = []
    find_spec = importlib.machinery.PathFinder.find_spec

    def counted(name, *args, **kwargs):
        if name.partition(".")[0] == "matplotlib":
            searched.append(name)
        return find_spec(name, *args, **kwargs)
    monkeypatch.setattr(importlib.machinery.PathFinder, "find_spec", staticmethod(counted))
    with watched_model(monkeypatch, seconds_per_piece=STREAM_SECONDS / 3):
        messages = streamed(client, PROMPT, 24, 0.9, 40, 0.95, 7)
    assert len(messages) >= 3
    assert searched == []


def test_each_request_gets_its_own_randomness(client, tiny_state):
    """Two requests at once with different seeds each write what their seed writes alone."""
    jobs = {seed: client.submit(PROMPT, 16, 1.0, 0, 1.0, seed, api_name="/generate") for seed in (1, 2)}
    texts = {seed: job.result() for seed, job in jobs.items()}
    assert texts == {seed: expected_text(tiny_state, 16, 1.0, 0, 1.0, seed) for seed in (1, 2)}
    assert texts[1] != texts[2]


# --- /verify_report ------------------------------------------------------------------------------

def test_verify_report_is_the_json_of_python_m_model_verify(client, tiny_dir, capsys):
    report = client.predict(PROMPT, "not_transposed", api_name="/verify_report")
    verify_cli.main(["--model", str(tiny_dir), "--device", "cpu", "--prompt", PROMPT,
                     "--bug", "not_transposed", "--json"])
    assert report == json.loads(capsys.readouterr().out)


def test_verify_report_of_the_correct_load_is_verified(client):
    report = client.predict(PROMPT, "none", api_name="/verify_report")
    assert report["verified"] and report["allclose"] and report["tied"] and report["broken"] is None
    assert report["max_abs_logit_diff"] <= report["tolerance"]["atol"]


@pytest.mark.parametrize("bug", DEMONSTRATIONS)
def test_verify_report_catches_every_bug(client, bug):
    report = client.predict(PROMPT, bug, api_name="/verify_report")
    broken = report["broken"]
    assert broken["bug"] == bug and broken["caught"] and report["verified"]
    assert broken["refused"] is MISTAKES[bug].refused  # silent mistakes load and are caught by the logits
    assert broken["allclose"] is (None if broken["refused"] else False)


def test_a_verification_lets_the_class_write_first_for_a_bounded_time(tiny_state, monkeypatch):
    api, engine = DemoApi(tiny_state), tiny_state.engine
    long_text = SamplingSettings(max_new_tokens=10_000, temperature=0.8, top_k=50, seed=0, stop_at_eot=False)
    monkeypatch.setattr(tiny_state.reports, "waits_seconds", 120)
    writing = iter(engine.submit(encode(PROMPT), long_text))
    next(writing)
    told, reports = [], []
    verifying = threading.Thread(target=lambda: reports.append(
        api.report("Verified in a pause", "none", progress=lambda fraction, desc: told.append(desc))))
    verifying.start()
    wait_until(lambda: told, 30, "the report says what it waits for")
    assert told == ["Waiting for a pause in the class's writing (at most 120 s)…"] and not reports
    writing.close()  # the class pauses
    verifying.join(timeout=120)
    assert told[1:] == [f"Computing {STEPS[step]}…" for step in CORRECT_STEPS]
    assert reports == [verify(tiny_state.reference, "Verified in a pause", ours=tiny_state.ours).to_dict()]

    monkeypatch.setattr(tiny_state.reports, "waits_seconds", 0.2)  # a class that never pauses
    writing = iter(engine.submit(encode(PROMPT), long_text))
    next(writing)
    assert api.report("Verified beside the class", "none")["verified"]
    assert engine.active_rows == 1  # the report came while the class still wrote
    writing.close()


def test_only_the_stable_endpoints_are_listed(client):
    api = client.view_api(return_format="dict", print_info=False)
    assert api["unnamed_endpoints"] == {}
    parameters = {name: [p["parameter_name"] for p in endpoint["parameters"]]
                  for name, endpoint in api["named_endpoints"].items()}
    assert parameters == {"/generate": ["prompt", "max_new_tokens", "temperature", "top_k", "top_p", "seed"],
                          "/verify_report": ["prompt", "bug"], "/board_question": [],
                          "/submit_logits": ["client", "logits", "weights"], "/class_board": []}


# --- start-up ------------------------------------------------------------------------------------

def test_python_m_demo_passes_its_options_to_launch(tiny_dir, monkeypatch):
    launched = {}
    monkeypatch.setattr("demo.__main__.launch",
                        lambda app, engine, **options: launched.update(options, engine_thread=engine.thread))
    assert demo_main(["--model", str(tiny_dir), "--device", "cpu"]) == 0
    # None: Gradio reads GRADIO_SERVER_NAME / GRADIO_SERVER_PORT, else binds 127.0.0.1:7860
    # engine_thread None: the engine's loop is left to launch, to run on the thread that loaded the model
    assert launched == {"server_name": None, "server_port": None, "share": False, "engine_thread": None}
    assert demo_main(["--model", str(tiny_dir), "--device", "cpu", "--host", "0.0.0.0", "--port", "8123"]) == 0
    assert launched == {"server_name": "0.0.0.0", "server_port": 8123, "share": False, "engine_thread": None}


def test_bfloat16_generates_in_half_precision_while_verification_stays_float32(tiny_dir, tiny_state, cpu_writes_bfloat16):
    state = load_state(str(tiny_dir), device="cpu", dtype="bfloat16")
    assert state.writer.lm_head.weight.dtype == torch.bfloat16
    assert state.ours.lm_head.weight.dtype == torch.float32 and state.startup_report["dtype"] == "float32"
    assert state.startup_report["verified"]
    assert state.reports.lower_precision == {"bfloat16": state.writer}  # the report's bfloat16 row measures the writer
    assert tiny_state.reports.lower_precision["bfloat16"].lm_head.weight.dtype == torch.bfloat16  # float32: a copy kept
    # float32: ours shares every tensor with the reference; the writer multiplies by packed copies.
    block = "transformer.h.0.mlp.c_fc.weight"
    assert tiny_state.ours.state_dict()[block].data_ptr() == tiny_state.reference.state_dict()[block].data_ptr()
    assert isinstance(tiny_state.writer.transformer.h[0].mlp.c_fc, RowInvariantLinear)


def test_python_m_demo_says_why_it_cannot_start(tmp_path, capsys):
    assert demo_main(["--model", str(tmp_path / "missing")]) == 2
    assert "error: no folder at" in capsys.readouterr().err


def test_python_m_demo_says_at_once_when_this_cpu_cannot_write_bfloat16(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(products, "bfloat16_available", lambda: False)  # AVX2 only, and no compiler
    # Before any download: the missing folder is not even looked at.
    assert demo_main(["--model", str(tmp_path / "missing"), "--device", "cpu", "--dtype", "bfloat16"]) == 2
    assert "error: this CPU cannot write in bfloat16" in capsys.readouterr().err


def test_the_spaces_app_file_runs_as_a_script_from_the_repo_root():
    """A Space runs `python demo/__main__.py` (README's app_file): the repo root must be importable from there."""
    result = subprocess.run([sys.executable, "demo/__main__.py", "--help"], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage: python -m demo" in result.stdout


class FakeSpaces:
    """The part of the `spaces` package (present on ZeroGPU Spaces only) the app uses; it notes each use."""
    asked = []  # (function name, seconds) for each function asked to hold a GPU

    @classmethod
    def GPU(cls, duration):
        def holding_a_gpu(fn):
            cls.asked.append((fn.__name__, duration))
            return fn
        return holding_a_gpu


def test_on_gpu_wraps_for_zerogpu_only_when_spaces_is_there(monkeypatch):
    def fn():
        return "ran"

    assert on_gpu(fn) is fn and not FakeSpaces.asked  # no `spaces` package here: nothing changes
    monkeypatch.setattr(demo.gpu, "spaces", FakeSpaces)
    monkeypatch.setattr(FakeSpaces, "asked", [])
    on_gpu(fn)
    assert FakeSpaces.asked == [("fn", GPU_SECONDS)]


def header_text(app) -> str:
    return next(c["props"]["value"] for c in app.config["components"] if "app-header" in str(c["props"].get("value")))


def test_the_header_says_one_shared_loop_serves_the_class_and_that_its_texts_are_the_lone_ones(tiny_state):
    assert tiny_state.engine is not None and tiny_state.row_invariance.holds
    header = header_text(build_app(tiny_state))
    assert f"One shared decoding loop writes for up to {tiny_state.engine.max_rows} students at once" in header
    assert "✓ a text is bit for bit what it would be alone" in header


def test_on_zerogpu_each_generation_runs_on_its_own_and_the_header_says_so(tiny_dir, monkeypatch):
    """A GPU is lent per call there: a loop that outlives the calls cannot hold one."""
    monkeypatch.setattr(demo.gpu, "spaces", FakeSpaces)
    monkeypatch.setattr(FakeSpaces, "asked", [])
    state = load_state(str(tiny_dir), device="cpu")
    assert state.engine is None
    assert "Each generation runs on its own" in header_text(build_app(state))
    client_settings = (PROMPT, 12, 0.9, 40, 0.95, 7)
    with serving(build_app(state)) as url:
        text = Client(url, analytics_enabled=False, verbose=False).predict(*client_settings, api_name="/generate")
    assert text == expected_text(state, *client_settings[1:])
    assert ("generate", GPU_SECONDS) in FakeSpaces.asked  # /generate holds a GPU for its call


def test_without_the_weights_the_app_starts_on_random_ones_and_says_so(monkeypatch, tmp_path):
    """No network and an empty cache: gpt2's shape with random weights, a banner, and still verified."""
    from huggingface_hub import constants
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # whatever this machine has cached
    state = load_state("gpt2", device="cpu")
    assert "no network and no cached copy" in state.fallback_reason
    assert state.startup_report["param_count_reference"] == GPT2_PARAMETERS  # gpt2's shape
    assert state.startup_report["verified"]  # the mapping and logit parity hold for any weights
    app = build_app(state)
    values = [c["props"].get("value") for c in app.config["components"]] + \
             [c["props"].get("label") for c in app.config["components"]]
    texts = " ".join(v for v in values if isinstance(v, str))
    assert "randomly initialised GPT-2 of the same shape" in texts
    assert "random weights: expect gibberish" in texts  # the Generate tab's label
    assert "The same GPT, other random weights (both random)" in texts  # the random-weights column beside it
