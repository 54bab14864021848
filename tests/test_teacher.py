"""The teacher's controls belong to the teacher: a reset needs the teacher's key, whoever calls it and however,
and the class's counts resist a script from one address."""
import json

import httpx
import pytest

from demo.app import build_app
from demo.teacher import PAGES_PER_MINUTE, REFUSED, TeacherKey
from tests.app_server import TEACHER_KEY, page_event, serving

pytestmark = pytest.mark.slow  # a real server, called as a script calls it

TENSOR = "attention c_proj"  # the quiz's question, as the page names it
DATA_QUESTION = [TENSOR, "[32, 32]", "copy", None]  # tensor, shape, operation, the page's record (server-side)


@pytest.fixture
def app(tiny_state):
    """An app of this test's own: its tally starts empty, its per-address bounds fresh."""
    app = build_app(tiny_state, teacher_key=TeacherKey(TEACHER_KEY))
    with serving(app) as url:
        app.url = url
        yield app


def answer(app, session: str) -> tuple[int, object]:
    return page_event(app.url, app, "answer_quiz", DATA_QUESTION, session)


def counted(app) -> str:
    status, outputs = answer(app, "the-projector")  # its own answer counts too: read the tally it shows
    return outputs[1]


def reset(app, session: str) -> tuple[int, object]:
    return page_event(app.url, app, "reset_tally", [TENSOR, None], session)


def test_a_reset_without_the_key_changes_nothing_and_says_so(app):
    answer(app, "student-1")
    status, said = reset(app, "a-script")
    assert (status, said) == (500, REFUSED)
    assert "1 of 1" not in counted(app) and "of 2" in counted(app)  # student-1's answer, then the projector's


def test_a_wrong_key_opens_nothing(app):
    answer(app, "student-1")
    status, outputs = page_event(app.url, app, "open_teacher_controls", ["a guess"], "a-script")
    assert status == 200 and outputs[2] == "That is not the teacher's key: nothing changed."
    assert reset(app, "a-script")[0] == 500


def test_with_the_key_the_reset_works_through_raw_http_in_that_session_only(app):
    answer(app, "student-1")
    status, outputs = page_event(app.url, app, "open_teacher_controls", [TEACHER_KEY], "the-teacher")
    assert status == 200 and outputs[1] == "" and TEACHER_KEY not in json.dumps(outputs)  # never shown back
    assert reset(app, "another-session")[0] == 500  # the key opened the teacher's session, not every session
    status, shown = reset(app, "the-teacher")
    assert status == 200 and "No answers yet" in shown[0]


def test_the_key_is_not_in_the_pages_config(app):
    assert TEACHER_KEY not in httpx.get(f"{app.url}config", timeout=30).text
    assert TEACHER_KEY not in httpx.get(app.url, timeout=30).text


def test_a_flood_from_one_address_moves_the_count_by_the_bound_at_most(app):
    """Hundreds of made-up sessions answering from one address: a page of the class only up to the bound."""
    statuses = {answer(app, f"made-up-{i}")[0] for i in range(PAGES_PER_MINUTE + 40)}
    assert statuses == {200}  # each still gets its grade: only the count is bounded
    assert f"of {PAGES_PER_MINUTE}</b>" in counted(app)  # the projector's own, the 61st page, is not counted either
