"""`python -m model.verify` and `python -m model.generate`: output, JSON and exit codes.

Most tests call main() in this process (fast); a few run the real command, offline, as a user would.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from model import generate, verify
from model.loading.mistakes import DEMONSTRATIONS
from tests.checkpoints import MEMORISED, RECITATION_PROMPTS, TINY, build_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]
JSON_KEYS = {"max_abs_logit_diff", "allclose", "tolerance", "param_count_ours", "param_count_reference",
             "missing_keys", "unexpected_keys", "shape_mismatches", "tied", "greedy_tokens_agree",
             "layer_max_abs_diff", "broken", "precision", "loose_atol"}


def run_verify(capsys, *args):
    code = verify.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_verify_prints_the_checks_as_a_table_and_exits_0(tiny_dir, capsys):
    code, out, _ = run_verify(capsys, "--model", str(tiny_dir), "--device", "cpu")
    assert code == 0
    assert "OK  logits allclose" in out and out.splitlines()[-1] == "VERIFIED"


def test_verify_prints_the_tolerance_axis_and_every_tensors_audit(tiny_dir, capsys):
    code, out, _ = run_verify(capsys, "--model", str(tiny_dir), "--bug", "not_loaded")
    assert code == 0
    axis = out.split("tolerance axis:")[1].split("\n\n")[0].splitlines()
    assert "lesson 1e-05  project 1e-04  loose 1e-03" in axis[1]
    rows = {line.split()[0]: line for line in axis[2:]}
    assert list(rows) == ["float32:", "bfloat16", "bug"]
    assert rows["float32:"].split()[-3:] == ["same"] * 3  # float32's noise passes every tolerance
    assert rows["bug"].split()[-3:] == ["DIFFERS"] * 3
    broken = out.split("  broken load (not_loaded): ")[1].split("\n\n")[0].splitlines()
    assert broken[0] == "1 tensor(s) NOT OK, the other 28 OK."
    assert broken[1].split() == ["NOT", "OK", "lm_head.weight", "left", "at", "init", "its", "own", "memory"]
    assert "greedy: 0 of 16 tokens agree with the reference's" in out


def test_verify_says_a_near_miss_has_every_tensor_right_and_the_same_greedy_tokens(tiny_dir, capsys):
    code, out, _ = run_verify(capsys, "--model", str(tiny_dir), "--bug", "exact_gelu")
    assert code == 0 and out.splitlines()[-1] == "VERIFIED"
    assert "broken load (exact_gelu): every tensor OK. The weights are right; the architecture is not." in out
    assert "greedy: 16 of 16 tokens agree with the reference's" in out
    assert "OK  bug exact_gelu caught" in out


def test_verify_json_has_the_documented_keys(tiny_dir, capsys):
    code, out, _ = run_verify(capsys, "--model", str(tiny_dir), "--json")
    report = json.loads(out)
    assert code == 0 and JSON_KEYS <= report.keys()
    assert report["allclose"] and report["tied"] and report["broken"] is None


@pytest.mark.parametrize("bug", DEMONSTRATIONS)
def test_verify_exits_0_when_the_bug_asked_for_is_caught(tiny_dir, capsys, bug):
    code, out, _ = run_verify(capsys, "--model", str(tiny_dir), "--bug", bug, "--json")
    broken = json.loads(out)["broken"]
    assert code == 0 and broken["bug"] == bug and broken["caught"]


def test_verify_exits_1_when_our_gpt_does_not_compute_the_references_function(tmp_path, capsys):
    relu = build_checkpoint(tmp_path, activation_function="relu", **TINY)  # GPT-2's shape, not its MLP
    code, out, _ = run_verify(capsys, "--model", str(relu))
    assert code == 1
    assert "NOT OK  logits allclose" in out and out.splitlines()[-1] == "NOT VERIFIED"


@pytest.mark.parametrize("args", [
    ["--model", "./no/such/folder"],  # a later --model wins
    ["--device", "tpu"],
    ["--prompt", ""],
], ids=["missing-folder", "unknown-device", "empty-prompt"])
def test_verify_exits_2_with_one_line_on_stderr(tiny_dir, capsys, args):
    code, out, err = run_verify(capsys, "--model", str(tiny_dir), *args)
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1 and err.startswith("error: ")


def test_verify_exits_2_for_an_unknown_bug(tiny_dir, capsys):
    with pytest.raises(SystemExit) as exited:
        verify.main(["--model", str(tiny_dir), "--bug", "no_such_bug"])
    assert exited.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_generate_writes_prompt_and_continuation_to_stdout(trained_dir, capsys):
    code = generate.main(["--model", str(trained_dir), "--prompt", RECITATION_PROMPTS[0], "--temperature", "0"])
    assert (code, capsys.readouterr().out) == (0, MEMORISED[0] + "\n")


def test_generate_says_on_stderr_when_the_prompt_was_cropped(tiny_dir, capsys):
    code = generate.main(["--model", str(tiny_dir), "--prompt", "word " * 100, "--max-new-tokens", "5"])
    assert code == 0 and capsys.readouterr().err.startswith("note: The prompt is longer than the model's context")


@pytest.mark.parametrize("option, value", [
    ("--temperature", "-1"), ("--temperature", "nan"), ("--temperature", "inf"), ("--temperature", "1e308"),
    ("--top-k", "-1"), ("--top-k", "50258"), ("--top-p", "0"), ("--top-p", "1.5"), ("--top-p", "nan"),
    ("--max-new-tokens", "0"), ("--max-new-tokens", "1000000000"), ("--seed", "-1"), ("--seed", str(2**63)),
])
def test_generate_refuses_a_setting_out_of_range_in_one_line(tiny_dir, capsys, option, value):
    code = generate.main(["--model", str(tiny_dir), "--prompt", "Hi", option, value])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"error: {option.removeprefix('--').replace('-', '_')} must be")


@pytest.mark.parametrize("option, value, kind", [
    ("--temperature", "hot", "float"), ("--top-p", "", "float"), ("--max-new-tokens", "8.5", "int"),
    ("--top-k", "all", "int"), ("--seed", "abc", "int"),
])
def test_generate_refuses_a_setting_that_is_not_a_number_naming_it(capsys, option, value, kind):
    with pytest.raises(SystemExit) as exited:
        generate.main(["--prompt", "Hi", option, value])
    err = capsys.readouterr().err.splitlines()
    assert exited.value.code == 2
    assert err[-1] == f"python -m model.generate: error: argument {option}: invalid {kind} value: '{value}'"


# --- the real commands, offline ------------------------------------------------------------------

def run_module(module, *args, hf_home):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(hf_home), "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


def cache_as_hub_download(folder, hf_home, repo_id):
    """Lay `folder` out in HF_HOME the way a download of `repo_id` leaves it: a snapshot and a ref."""
    repo, revision = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}", "0" * 40
    shutil.copytree(folder, repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)


@pytest.mark.slow
def test_hub_id_loads_offline_from_the_cache(tiny_dir, tmp_path):
    cache_as_hub_download(tiny_dir, tmp_path, "gpt2")
    done = run_module("model.verify", "--model", "gpt2", "--json", hf_home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["verified"]


@pytest.mark.slow
def test_hub_id_with_no_network_and_nothing_cached_is_one_clear_line(tmp_path):
    done = run_module("model.verify", "--model", "gpt2", hf_home=tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines() == [done.stderr.strip()]
    assert "no network and no cached copy" in done.stderr and "save_pretrained" in done.stderr


@pytest.mark.slow
def test_generate_command_streams_the_continuation(trained_dir, tmp_path):
    prompt, sentence = RECITATION_PROMPTS[1], MEMORISED[1]
    done = run_module("model.generate", "--model", str(trained_dir), "--prompt", prompt, "--temperature", "0",
                      hf_home=tmp_path)
    assert (done.returncode, done.stdout) == (0, sentence + "\n"), done.stderr
