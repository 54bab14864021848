"""A whole class at once, on a tiny model: 30 students streaming and 4 verifications beside them all
finish, every text is the one its seed writes alone, and a full queue turns the next request away at once
with a "busy" answer instead of leaving it hanging. Loopback only; every wait has a deadline.
"""
import json
import time

import httpx
import pytest
from gradio_client import Client
from gradio_client.utils import QueueError, Status

from demo.app import build_app, generations_at_once
from model.proof.verify import verify
from model.sampling import SamplingSettings
from model.serving.text import complete
from tests.app_server import WatchedModel, app_state, served, serving, wait_until, watched_model
from tests.classroom import PROMPT, TEMPERATURE, TOP_K, TOP_P, classroom

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

STUDENTS, VERIFICATIONS, MAX_NEW_TOKENS = 30, 4, 32
SECONDS = 90  # the longest any one request may take before the test fails (the class takes a few seconds)



@pytest.fixture(scope="module")
def state(tiny_dir):
    """An app of this module's own: its reports are made with this module's one torch thread, as the lone runs."""
    return app_state(tiny_dir)


@pytest.fixture(scope="module")
def load(state):
    with served(state) as url:
        load = classroom(url, STUDENTS, VERIFICATIONS, MAX_NEW_TOKENS, SECONDS)
    print("\nclassroom load, tiny model:", json.dumps(load.summary(), indent=1))  # shown with pytest -s
    return load


def alone(state, seed: int, max_new_tokens: int = MAX_NEW_TOKENS) -> str:
    """What the model writes for `seed` with the classroom's settings, called directly, with nobody else."""
    settings = SamplingSettings(max_new_tokens=max_new_tokens, temperature=TEMPERATURE, top_k=TOP_K, top_p=TOP_P,
                                seed=seed)
    return complete(state.writer, PROMPT, settings)


def test_every_request_of_the_class_is_answered(load):
    assert [v.error for v in load.students + load.verifications] == [None] * (STUDENTS + VERIFICATIONS)
    assert len(load.students) == STUDENTS and len(load.verifications) == VERIFICATIONS


def test_every_text_is_the_one_its_seed_writes_alone(load, state):
    assert [v.answers[-1] for v in load.students] == [alone(state, v.seed) for v in load.students]


def test_every_text_streamed_in_growing_pieces(load):
    for visit in load.students:
        assert all(later.startswith(earlier) for earlier, later in zip(visit.answers, visit.answers[1:]))
    assert sum(len(v.answers) > 1 for v in load.students) >= STUDENTS * 0.9  # (a text may end at once)


def test_every_verification_is_the_report_a_lone_run_gives(load, state):
    for visit in load.verifications:
        bug = visit.answers[-1]["broken"] and visit.answers[-1]["broken"]["bug"]
        lone = verify(state.reference, PROMPT, bug or None, ours=state.ours).to_dict()
        assert visit.answers[-1] == json.loads(json.dumps(lone))


# --- the queue's bound ---------------------------------------------------------------------------

QUEUE_SIZE = 2


def test_a_full_queue_turns_the_next_request_away_at_once_saying_busy(state, monkeypatch):
    slots = generations_at_once(state)
    args = [PROMPT, MAX_NEW_TOKENS, TEMPERATURE, TOP_K, TOP_P]
    with watched_model(monkeypatch) as watched, serving(build_app(state, queue_size=QUEUE_SIZE)) as url:
        watched.gate.clear()  # every generation waits before its first piece: the slots stay taken
        def client():  # a student's own session, as a browser tab has (one client's jobs share its connections)
            return Client(url, analytics_enabled=False, verbose=False)

        running = [client().submit(*args, seed, api_name="/generate") for seed in range(slots)]
        wait_until(lambda: watched.running == slots, 30, "a generation holds each slot")
        waiting = [client().submit(*args, seed, api_name="/generate") for seed in range(slots, slots + QUEUE_SIZE)]
        wait_until(lambda: all(job.status().code == Status.IN_QUEUE for job in waiting), 30, "the queue is full")

        sent = time.monotonic()
        with pytest.raises(QueueError, match=r"^Queue is full! Please try again\.$"):
            client().predict(*args, 99, api_name="/generate")
        refused_after = time.monotonic() - sent
        posted = httpx.post(f"{url}gradio_api/call/generate", json={"data": [*args, 99]}, timeout=10)
        watched.gate.set()
        texts = [job.result(timeout=SECONDS) for job in running + waiting]
    # The slots stay taken until the gate opens (a minute at most): an answer well within that did not wait.
    assert refused_after < WatchedModel.GATE_SECONDS / 2, f"the busy answer took {refused_after:.1f} s"
    assert (posted.status_code, posted.json()) == (
        503, {"detail": f"Queue is full. Max size is {QUEUE_SIZE} and size is {QUEUE_SIZE}."})
    assert texts == [alone(state, seed) for seed in range(slots + QUEUE_SIZE)]  # those admitted are served
