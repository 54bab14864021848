"""The app's stable API, through gradio_client against the app served in-process; start-up; offline.

Bad input has its own module, test_bad_input.py."""
import json
import subprocess
import sys

import pytest
import torch
from gradio_client import Client

import demo.gpu
from demo.__main__ import main as demo_main
from demo.app import build_app
from demo.gpu import GPU_SECONDS, on_gpu
from demo.state import load_state
from model import verify as verify_cli
from model.bugs import BUGS
from tests.app_server import REPO_ROOT, written_alone
from tests.checkpoints import GPT2_PARAMETERS

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

def test_generate_streams_growing_text_that_ends_as_model_generate_writes_it(client, tiny_state):
    args = (PROMPT, 24, 0.9, 40, 0.95, 7)
    messages = streamed(client, *args)
    assert len(messages) >= 5, messages  # one message per whole piece of text, not one at the end
    assert all(later.startswith(earlier) and later != earlier for earlier, later in zip(messages, messages[1:]))
    assert messages[-1] == expected_text(tiny_state, *args[1:])


def test_each_request_gets_its_own_randomness(client, tiny_state):
    """Two requests at once with different seeds each write what their seed writes alone."""
    jobs = {seed: client.submit(PROMPT, 16, 1.0, 0, 1.0, seed, api_name="/generate") for seed in (1, 2)}
    texts = {seed: job.result() for seed, job in jobs.items()}
    assert texts == {seed: expected_text(tiny_state, 16, 1.0, 0, 1.0, seed) for seed in (1, 2)}
    assert texts[1] != texts[2]


# --- /verify_report ------------------------------------------------------------------------------

def test_verify_report_is_the_json_of_python_m_model_verify(client, tiny_dir, capsys):
    report = client.predict(PROMPT, "skip_transpose_square", api_name="/verify_report")
    verify_cli.main(["--model", str(tiny_dir), "--device", "cpu", "--prompt", PROMPT,
                     "--bug", "skip_transpose_square", "--json"])
    assert report == json.loads(capsys.readouterr().out)


def test_verify_report_of_the_correct_load_is_verified(client):
    report = client.predict(PROMPT, "none", api_name="/verify_report")
    assert report["verified"] and report["allclose"] and report["tied"] and report["broken"] is None
    assert report["max_abs_logit_diff"] <= report["tolerance"]["atol"]


@pytest.mark.parametrize("bug", list(BUGS))
def test_verify_report_catches_every_bug(client, bug):
    report = client.predict(PROMPT, bug, api_name="/verify_report")
    broken = report["broken"]
    assert broken["bug"] == bug and broken["caught"] and report["verified"]
    assert broken["refused"] is not BUGS[bug].silent  # silent bugs load and are caught by the logits
    assert broken["allclose"] is (None if broken["refused"] else False)


def test_only_the_two_stable_endpoints_are_listed(client):
    api = client.view_api(return_format="dict", print_info=False)
    assert set(api["named_endpoints"]) == {"/generate", "/verify_report"}
    assert api["unnamed_endpoints"] == {}
    parameters = {name: [p["parameter_name"] for p in endpoint["parameters"]]
                  for name, endpoint in api["named_endpoints"].items()}
    assert parameters == {"/generate": ["prompt", "max_new_tokens", "temperature", "top_k", "top_p", "seed"],
                          "/verify_report": ["prompt", "bug"]}


# --- start-up ------------------------------------------------------------------------------------

def test_python_m_demo_passes_its_options_to_launch(tiny_dir, monkeypatch):
    launched = {}
    monkeypatch.setattr("demo.__main__.launch", lambda app, **options: launched.update(options))
    assert demo_main(["--model", str(tiny_dir), "--device", "cpu"]) == 0
    # None: Gradio reads GRADIO_SERVER_NAME / GRADIO_SERVER_PORT, else binds 127.0.0.1:7860
    assert launched == {"server_name": None, "server_port": None, "share": False}
    assert demo_main(["--model", str(tiny_dir), "--device", "cpu", "--host", "0.0.0.0", "--port", "8123"]) == 0
    assert launched == {"server_name": "0.0.0.0", "server_port": 8123, "share": False}


def test_bfloat16_generates_in_half_precision_while_verification_stays_float32(tiny_dir, tiny_state):
    state = load_state(str(tiny_dir), device="cpu", dtype="bfloat16")
    assert state.student.lm_head.weight.dtype == torch.bfloat16
    assert state.verifier.lm_head.weight.dtype == torch.float32 and state.startup_report["dtype"] == "float32"
    assert state.startup_report["verified"]
    assert state.lower_precision == {"bfloat16": state.student}  # the report's bfloat16 row measures the writer
    assert tiny_state.lower_precision["bfloat16"].lm_head.weight.dtype == torch.bfloat16  # float32: a copy kept
    # float32: the writer shares every block matrix with the verifier; only its lm_head is laid out anew.
    block = "transformer.h.0.mlp.c_fc.weight"
    writer, verifier = tiny_state.student.state_dict(), tiny_state.verifier.state_dict()
    assert writer[block].data_ptr() == verifier[block].data_ptr()
    assert tiny_state.student.lm_head.weight is tiny_state.student.transformer.wte.weight


def test_python_m_demo_says_why_it_cannot_start(tmp_path, capsys):
    assert demo_main(["--model", str(tmp_path / "missing")]) == 2
    assert "error: no folder at" in capsys.readouterr().err


def test_the_spaces_app_file_runs_as_a_script_from_the_repo_root():
    """A Space runs `python demo/__main__.py` (README's app_file): the repo root must be importable from there."""
    result = subprocess.run([sys.executable, "demo/__main__.py", "--help"], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage: python -m demo" in result.stdout


def test_on_gpu_wraps_for_zerogpu_only_when_spaces_is_there(monkeypatch):
    def fn():
        return "ran"

    assert on_gpu(fn) is fn  # no `spaces` package here: nothing changes

    class FakeSpaces:  # the part of the `spaces` API the app uses
        @staticmethod
        def GPU(duration):
            return lambda f: lambda: f"on a GPU for at most {duration}s: {f()}"

    monkeypatch.setattr(demo.gpu, "spaces", FakeSpaces)
    assert on_gpu(fn)() == f"on a GPU for at most {GPU_SECONDS}s: ran"


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
