"""The class board: every student's own GPT, judged by the app from logits alone, counted live.

The judge against the catalogue's mistakes, bad submissions, the counts' bounds, and a class submitting
through the real server from `python -m model.check --submit`."""
import json
import math
import threading
import time

import httpx
import pytest
import torch
from gradio_client import Client

from demo.board import ClassBoard
from demo.teacher import PerAddress
from model import check as check_cli
from model.loading.mapping import load_gpt
from model.loading.mistakes import MISTAKES
from model.proof.board import Judge, board_logits, weights_fingerprint
from tests.app_server import TEACHER_KEY, app_state, raw_call, served
from tests.students.zoo import write_student

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def judge(zoo_reference):
    return Judge(zoo_reference)


def submitted(judge, model) -> list[list[float]]:
    return board_logits(model, judge.question.to_dict())


# --- the judge -----------------------------------------------------------------------------------

def test_the_question_asks_for_every_position_and_stays_small(judge):
    question = judge.question.to_dict()
    assert len(question["prompt_tokens"]) > 8 and len(question["token_ids"]) == 256
    payload = json.dumps(["x" * 32, [[-123.456789012] * 256] * len(question["prompt_tokens"]), 1.5])
    assert len(payload) < 100_000  # the app's request limit is 8 MiB


def test_our_gpt_is_verified_and_every_mistake_of_the_catalogue_is_named(judge, zoo_reference):
    reference = zoo_reference
    weights = weights_fingerprint(reference)
    assert judge.judge(submitted(judge, load_gpt(reference)), weights).verdict == "verified"
    for mistake in MISTAKES.values():
        if mistake.refused or not mistake.changes_function:
            continue
        for form in mistake.forms():
            verdict = judge.judge(submitted(judge, load_gpt(reference, form)), weights)
            assert (verdict.verdict, verdict.mistake) == ("near_miss" if mistake.near_miss else "wrong", form.id), form
            assert form.id in verdict.message


def test_logits_of_other_weights_are_told_so_and_counted_apart(judge):
    verdict = judge.judge(judge.expected.tolist(), weights=judge.question.weights + 1.0)
    assert verdict.verdict == "other_weights" and "other weights than this app's" in verdict.message


def test_logits_that_match_nothing_are_unknown_with_their_difference(judge):
    far = (judge.expected + 3.0 * torch.sin(torch.arange(judge.expected.numel()).view_as(judge.expected))).tolist()
    verdict = judge.judge(far)
    assert (verdict.verdict, verdict.mistake) == ("wrong", "unknown") and verdict.max_abs_diff > 1
    slightly = (judge.expected + 5e-4).tolist()  # a small difference nothing in the catalogue explains
    assert judge.judge(slightly).verdict == "near_miss"


def bad_payloads(judge):
    good = judge.expected.tolist()
    return {
        "too few positions": (good[:-1], "a list of 13 lists"),
        "the last position alone": (good[-1:], "got 1 positions"),
        "another vocabulary": ([row + [0.0] for row in good], "position 0 has 257 numbers"),
        "NaN": ([[math.nan] + row[1:] for row in good], "NaN or infinity"),
        "infinity": ([row[:-1] + [math.inf] for row in good], "NaN or infinity"),
        "strings": ([["1.5"] * len(row) for row in good], "position 0 holds str"),
        "booleans": ([[True] * len(row) for row in good], "position 0 holds bool"),
        "nested junk": ([[row] for row in good], "position 0 has 1 numbers"),
        "a string": ("[[1, 2]]", "got str"),
        "nothing": (None, "got NoneType"),
    }


def test_a_bad_submission_is_refused_saying_what_it_should_be(judge):
    for name, (logits, says) in bad_payloads(judge).items():
        with pytest.raises(ValueError) as refused:
            judge.judge(logits)
        assert says in str(refused.value), name


# --- the counts ----------------------------------------------------------------------------------

def test_the_board_counts_each_clients_latest_verdict_anonymously(judge):
    board = ClassBoard()
    verified, gelu = judge.judge(judge.expected.tolist()), judge.judge(judge.expected.tolist(), weights=-1.0)
    assert board.record("student-000001", gelu, "school") is None
    assert board.record("student-000001", verified, "school") is None  # the same student again: replaced
    assert board.record("student-000002", verified, "school") is None
    assert board.counts() == {"total": 2, "verified": 2, "near_miss": {}, "wrong": {}, "other_weights": 0}
    board.reset()
    assert board.counts()["total"] == 0


def test_the_board_is_bounded_whatever_arrives(judge):
    verdict = judge.judge(judge.expected.tolist())
    board = ClassBoard(max_clients=5, new_clients=PerAddress(1000), submissions=PerAddress(1000))
    refusals = [board.record(f"client-{i:08}", verdict, f"10.0.0.{i % 250}") for i in range(50)]
    assert refusals[:5] == [None] * 5 and all("the board is full" in refusal for refusal in refusals[5:])
    assert board.counts()["total"] == 5
    flooded = ClassBoard()  # one address: new clients and submissions each bounded per minute
    refusals = [flooded.record(f"client-{i:08}", verdict, "script") for i in range(300)]
    assert flooded.counts()["total"] == 60 and refusals.count(None) == 60


# --- through the real server --------------------------------------------------------------------

@pytest.fixture(scope="module")
def app_url(zoo_dir):
    with served(app_state(zoo_dir)) as url:
        yield url


def submit_from_the_command(capsys, monkeypatch, tmp_path, zoo_dir, url, layout, mistake=None) -> dict:
    path, loader = write_student(tmp_path, layout, mistake)
    monkeypatch.setenv("GPT2_CLASS_HOME", str(tmp_path / f"home-{layout}-{mistake}"))  # each student's own id
    code = check_cli.main([str(path), "--model", str(zoo_dir), "--json", "--submit", url,
                           *(["--loader", loader] if loader else [])])
    report = json.loads(capsys.readouterr().out)
    assert code == (0 if report["verified"] else 1)
    return report["board"]


@pytest.mark.slow
def test_five_students_submitting_from_the_command_fill_the_board(capsys, monkeypatch, tmp_path, zoo_dir, app_url):
    students = [("nanogpt", None), ("torch_modules", None), ("scratch_book", "exact_gelu"),
                ("lecture", "missing_causal_mask"), ("nanogpt", "not_transposed")]
    verdicts = [submit_from_the_command(capsys, monkeypatch, tmp_path, zoo_dir, app_url, *student)
                for student in students]
    assert [(v["verdict"], v["mistake"]) for v in verdicts] == [
        ("verified", None), ("verified", None), ("near_miss", "exact_gelu"), ("wrong", "missing_causal_mask"),
        ("wrong", "not_transposed")]
    board = Client(app_url, verbose=False).predict(api_name="/class_board")
    assert board == {"total": 5, "verified": 2, "near_miss": {"exact_gelu": 1},
                     "wrong": {"missing_causal_mask": 1, "not_transposed": 1}, "other_weights": 0}
    again = submit_from_the_command(capsys, monkeypatch, tmp_path, zoo_dir, app_url, "lecture", "missing_causal_mask")
    assert again["mistake"] == "missing_causal_mask"
    assert Client(app_url, verbose=False).predict(api_name="/class_board")["total"] == 5  # the same student: replaced


@pytest.mark.slow
def test_bad_submissions_through_raw_http_get_one_error_and_change_nothing(app_url, judge):
    def submit(*data) -> tuple[str, object]:
        return raw_call(app_url, "submit_logits", json.dumps({"data": list(data)}).encode())

    before = Client(app_url, verbose=False).predict(api_name="/class_board")
    for name, (logits, says) in bad_payloads(judge).items():
        event, error = submit("a-student-id", logits, None)
        assert event == "error" and says in error["error"], name
    for client in ["x", ["a", "list"], None, "no spaces or ; please"]:
        event, error = submit(client, judge.expected.tolist(), None)
        assert event == "error" and "client must be an id" in error["error"]
    for weights in ["heavy", [1.0], True]:
        event, error = submit("a-student-id", judge.expected.tolist(), weights)
        assert event == "error" and "weights must be the fingerprint number" in error["error"]
    event, error = raw_call(app_url, "submit_logits", b'{"data": ["a-student-id", [[NaN]], null]}')
    assert event == "error"
    huge = json.dumps({"data": ["a-student-id", [[1.0] * 1_000_000] * 2, None]}).encode()  # over the app's 8 MiB
    assert raw_call(app_url, "submit_logits", huge)[0] == "http 413"
    assert Client(app_url, verbose=False).predict(api_name="/class_board") == before


@pytest.mark.slow
def test_a_class_of_thirty_submitting_at_once_while_writing_gets_every_verdict(app_url, judge):
    """Every verdict back, the class's writing on the Generate tab going on beside it."""
    logits, start = judge.expected.tolist(), threading.Barrier(30 + 10)
    verdicts, seconds, texts = {}, [], []

    def student(i):
        client = Client(app_url, verbose=False)
        start.wait()
        began = time.monotonic()
        verdicts[i] = client.submit(f"student-{i:08}", logits, judge.question.weights, api_name="/submit_logits").result()
        seconds.append(time.monotonic() - began)

    def writer(i):
        client = Client(app_url, verbose=False)
        start.wait()
        texts.append(client.submit("Once upon a time", 32, 0.8, 50, 1.0, i, api_name="/generate").result())

    threads = [threading.Thread(target=student, args=(i,)) for i in range(30)]
    threads += [threading.Thread(target=writer, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    print(f"\n30 submissions beside 10 generations: slowest verdict {max(seconds):.2f} s")  # shown with pytest -s
    assert len(verdicts) == 30 and {v["verdict"] for v in verdicts.values()} == {"verified"} and len(texts) == 10


@pytest.mark.slow
def test_the_boards_reset_is_the_teachers(app_url):
    config = httpx.get(f"{app_url}config", timeout=30).json()
    index = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "reset_board")
    unlock = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "open_teacher_controls")

    def event(fn_index, data, session):
        answer = httpx.post(f"{app_url}gradio_api/run/predict", timeout=30,
                            json={"data": data, "fn_index": fn_index, "session_hash": session})
        return answer.status_code

    client = Client(app_url, verbose=False)
    client.predict("a-student-00", [[0.0] * 256] * 13, None, api_name="/submit_logits")
    assert event(index, [None], "a-script") == 500 and client.predict(api_name="/class_board")["total"] > 0
    assert event(unlock, [TEACHER_KEY], "the-teacher") == 200
    assert event(index, [None], "the-teacher") == 200 and client.predict(api_name="/class_board")["total"] == 0
