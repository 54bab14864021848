"""The hub as a school reaches it, with no network: a stand-in hub on loopback (tests/hub_server.py) on a
port other than 443, reached through HF_ENDPOINT, or through a proxy. The real commands run in processes
of their own, with the environment a teacher would set, and download into an empty cache.
"""
import json
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest
from huggingface_hub import constants
from huggingface_hub.utils import close_session

import demo.state
from model.loading import reference
from model.loading.reference import (
    INTERRUPTED,
    HubUnreachableError,
    ModelLoadError,
    load_reference,
)
from model.proof.verify import verify
from tests.app_server import REPO_ROOT, command_serving, wait_until
from tests.hub_server import Faults, hub_env, serving_hub

pytestmark = pytest.mark.slow  # a stand-in hub, and the real commands

HUB_IDS = ["gpt2", "openai-community/gpt2"]
# Seconds: far more than the quick look takes, less than the download's own retries would, without it.
QUICK = 20
REFUSED = r"\[Errno \d+\] Connection refused"  # the errno differs between systems


def run_verify(model: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "model.verify", "--model", model, "--device", "cpu", "--json"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)


def the_served_weights(report: dict, tiny_reference) -> bool:
    """The report is the one the served checkpoint gives: what it writes, and what it predicts next."""
    served = verify(tiny_reference).to_dict()
    return (report["greedy_text"] == served["greedy_text"]
            and [row["token"] for row in report["top_k"]] == [row["token"] for row in served["top_k"]]
            and [row["p_reference"] for row in report["top_k"]]
            == pytest.approx([row["p_reference"] for row in served["top_k"]], rel=1e-4))


def partial_files(hf_home) -> list[str]:
    return [str(path) for path in hf_home.rglob("*.incomplete")]


@pytest.mark.parametrize("model", HUB_IDS)
def test_a_hub_id_downloads_through_HF_ENDPOINT_and_then_loads_offline_from_the_cache(
        model, tiny_dir, tiny_reference, tmp_path):
    with serving_hub(tiny_dir) as (url, hub):
        # The hub's own progress bars, forced on: stderr is a pipe here, not a terminal.
        online = run_verify(model, hub_env(url, tmp_path, HF_HUB_DISABLE_PROGRESS_BARS="0", TQDM_POSITION="-1"))
    assert online.returncode == 0, online.stderr
    assert the_served_weights(json.loads(online.stdout), tiny_reference)
    assert any(request.startswith("GET /openai-community/gpt2/resolve/") and request.endswith("/model.safetensors")
               for request in hub.requests)
    assert "model.safetensors: 100%" in online.stderr  # the download's progress, as a terminal shows it

    offline = run_verify(model, hub_env(url, tmp_path, HF_HUB_OFFLINE="1"))  # the stand-in is gone
    assert offline.returncode == 0, offline.stderr
    assert the_served_weights(json.loads(offline.stdout), tiny_reference)


def test_through_a_proxy_a_hub_that_cannot_be_reached_directly_downloads(tiny_dir, tiny_reference, tmp_path):
    """HF_ENDPOINT names a port where nothing listens; HTTP_PROXY (the stand-in, answering as a caching proxy)
    is the only way there, as in a school that blocks direct connections."""
    with serving_hub(tiny_dir) as (closed, _):
        pass
    with serving_hub(tiny_dir) as (proxy, hub):
        done = run_verify("gpt2", hub_env(closed, tmp_path, HTTP_PROXY=proxy))
    assert done.returncode == 0, done.stderr
    assert the_served_weights(json.loads(done.stdout), tiny_reference)
    assert f"HEAD {closed}/" in hub.requests  # the quick look went through the proxy too
    assert any(request.startswith(f"GET {closed}/openai-community/gpt2/resolve/") for request in hub.requests)


def test_with_the_hub_stopped_and_nothing_cached_the_error_is_one_clear_line(tiny_dir, tmp_path):
    with serving_hub(tiny_dir) as (url, _):
        pass
    done = run_verify("gpt2", hub_env(url, tmp_path))
    assert (done.returncode, done.stdout) == (2, "")
    assert len(done.stderr.splitlines()) == 1
    assert re.fullmatch(
        re.escape(f"error: cannot load 'gpt2': no network and no cached copy (the hub at {url} did not answer: ")
        + REFUSED + re.escape("). Run once with a network (the weights are cached for later; a proxy is set with "
                              "HTTPS_PROXY, a mirror with HF_ENDPOINT), or pass a folder saved with save_pretrained: "
                              "--model ./gpt2-local"), done.stderr.strip())


def test_an_interrupted_download_is_one_clear_line_and_keeps_nothing_that_passes_for_the_weights(
        tiny_dir, tiny_reference, tmp_path):
    with serving_hub(tiny_dir, Faults(cut_at=0.5)) as (url, hub):  # every try of the weights breaks off halfway
        broken = run_verify("gpt2", hub_env(url, tmp_path))
    assert (broken.returncode, broken.stdout) == (2, "")
    assert "Traceback" not in broken.stderr
    assert broken.stderr.splitlines()[-1] == (
        f"error: cannot load 'gpt2': its weights did not finish downloading from {url} (peer closed connection "
        f"without sending complete message body (received {hub.sizes['model.safetensors'] // 2} bytes, expected "
        f"{hub.sizes['model.safetensors']})). Nothing partial was kept: run the command again (on a slow link, "
        f"HF_HUB_DOWNLOAD_TIMEOUT=60 waits longer for each piece)")
    assert partial_files(tmp_path) == []

    offline = run_verify("gpt2", hub_env(url, tmp_path, HF_HUB_OFFLINE="1"))  # half a file is not a cached copy
    assert offline.returncode == 2 and "no network and no cached copy" in offline.stderr

    with serving_hub(tiny_dir) as (url, _):  # the link is back: run again
        again = run_verify("gpt2", hub_env(url, tmp_path))
    assert again.returncode == 0, again.stderr
    assert the_served_weights(json.loads(again.stdout), tiny_reference)


def test_ctrl_c_during_a_slow_download_keeps_nothing_that_passes_for_the_weights(tiny_dir, tmp_path):
    with serving_hub(tiny_dir, Faults(seconds_per_chunk=0.5)) as (url, _):
        process = subprocess.Popen(
            [sys.executable, "-m", "model.verify", "--model", "gpt2", "--device", "cpu"], cwd=REPO_ROOT,
            env=hub_env(url, tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_until(lambda: partial_files(tmp_path) or process.poll() is not None, 120, "the weights start to download")
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stderr.splitlines() == [INTERRUPTED]
    assert partial_files(tmp_path) == []
    offline = run_verify("gpt2", hub_env(url, tmp_path, HF_HUB_OFFLINE="1"))
    assert offline.returncode == 2 and "no network and no cached copy" in offline.stderr


def test_the_app_starts_on_the_weights_the_hub_serves(tiny_dir, tmp_path):
    """`python -m demo` through HF_ENDPOINT: the real weights, no fallback to random ones."""
    with serving_hub(tiny_dir) as (url, _):
        env = hub_env(url, tmp_path / "home")
        with command_serving(["--model", "gpt2", "--device", "cpu"], env, logs=tmp_path) as (_, app):
            page = httpx.get(app, timeout=10).text
    assert "randomly initialised" not in page
    assert [line for line in (tmp_path / "stderr").read_text().splitlines() if line.startswith("warning")] == []


# --- the quick look, and what the app does with each failure ------------------------------------------

@pytest.fixture
def online(monkeypatch):
    """huggingface_hub online in this process (the test session runs offline)."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def fresh_session():
    """huggingface_hub's session made anew after the test, so a proxy it set does not outlive it."""
    yield
    close_session()


def test_the_quick_look_asks_the_endpoint_itself_on_its_own_port(online, tiny_dir, monkeypatch):
    with serving_hub(tiny_dir) as (url, hub):
        monkeypatch.setattr(constants, "ENDPOINT", url)
        assert reference._hub_unreachable() is None
    assert hub.requests == ["HEAD /"]
    refused = reference._hub_unreachable()  # the same endpoint, stopped
    assert re.fullmatch(re.escape(f"the hub at {url} did not answer: ") + REFUSED, refused)


def test_the_quick_look_goes_through_the_proxy_the_environment_names(online, fresh_session, tiny_dir, monkeypatch):
    with serving_hub(tiny_dir) as (closed, _):
        pass
    monkeypatch.setattr(constants, "ENDPOINT", closed)
    with serving_hub(tiny_dir) as (proxy, hub):
        monkeypatch.setenv("HTTP_PROXY", proxy)
        close_session()  # huggingface_hub's session reads the environment's proxies when it is made
        assert reference._hub_unreachable() is None
    assert hub.requests == [f"HEAD {closed}/"]
    refused = reference._hub_unreachable()  # the proxy stopped: the message names it
    assert re.fullmatch(re.escape(f"the hub at {closed} through the proxy {proxy} did not answer: ") + REFUSED, refused)


def test_with_the_hub_stopped_and_nothing_cached_loading_fails_at_once(online, tiny_dir, tmp_path, monkeypatch):
    """Timed here, in this process: a command's own start-up (importing torch) would blur it."""
    with serving_hub(tiny_dir) as (url, _):
        pass
    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # nothing cached
    start = time.monotonic()
    with pytest.raises(HubUnreachableError, match=re.escape(f"no cached copy (the hub at {url} did not answer")):
        load_reference("gpt2", "cpu")
    took = time.monotonic() - start
    assert took < QUICK, f"the 'no network' error took {took:.1f} s"


def test_offline_mode_is_not_a_network_to_look_for():
    assert reference._hub_unreachable() == "HF_HUB_OFFLINE is set, so the hub is not asked"


def test_a_broken_download_does_not_start_the_app_on_random_weights(monkeypatch):
    """Only an unreachable hub falls back to random weights (tests/test_app.py): a broken download is an error."""
    def broken_download(*args):
        raise ModelLoadError("cannot load 'gpt2': its weights did not finish downloading")

    monkeypatch.setattr(demo.state, "load_reference", broken_download)
    with pytest.raises(ModelLoadError, match="did not finish downloading"):
        demo.state.load_state("gpt2", device="cpu")
