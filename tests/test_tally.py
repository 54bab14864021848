"""demo/tally.py: the class's answers counted under a full class, bounded, with nothing per user."""
import threading
import time
from collections import Counter

import pytest

import demo.tally
from demo.tally import MAX_ANSWERS, NEW_PAGE, OTHER, AnswerTally
from demo.teacher import COUNTED_PER_MINUTE, PAGES_PER_MINUTE, PerAddress

RIGHT = {"attention c_attn": "[2304, 768] transpose", "attention c_proj": "[768, 768] transpose"}
CLASS = 30


class HandsOverMidUpdate(Counter):
    """A Counter that lets other threads run between reading a count and writing it back: the window in which
    a tally without its lock loses answers or lets one too many in, made wide enough to hit every time."""

    def __setitem__(self, key, value):
        time.sleep(0)  # gives up the interpreter: another thread runs now
        super().__setitem__(key, value)


@pytest.fixture
def racy_counts(monkeypatch):
    monkeypatch.setattr(demo.tally, "Counter", HandsOverMidUpdate)


def all_at_once(work, threads: int = CLASS):
    """Run work(i) on `threads` threads released together, like a class pressing Enter at once."""
    start = threading.Barrier(threads)

    def run(i):
        start.wait()
        work(i)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert not any(worker.is_alive() for worker in workers)


def test_a_class_answering_at_once_is_counted_exactly(racy_counts):
    tally = AnswerTally(RIGHT)
    answers = ["[2304, 768] transpose", "[768, 2304] transpose", "[2304, 768] copy"]

    def student(i):
        for n in range(60):  # each student's page, answering again and again
            tally.add("attention c_attn", answers[(i + n) % 3])

    all_at_once(student)
    assert tally.counts("attention c_attn") == {answer: CLASS * 60 // 3 for answer in answers}


def test_distinct_answers_are_bounded_even_when_they_all_arrive_at_once(racy_counts):
    tally = AnswerTally(RIGHT)
    all_at_once(lambda i: [tally.add("attention c_attn", f"[{i}, {n}] copy") for n in range(20)])
    tally.add("attention c_attn", RIGHT["attention c_attn"])  # the right answer, last, still gets its own count
    counts = tally.counts("attention c_attn")
    assert len(counts) == MAX_ANSWERS + 1  # the kept answers and "other answers"
    assert counts[RIGHT["attention c_attn"]] == 1 and counts[OTHER] == CLASS * 20 - (MAX_ANSWERS - 1)
    assert sum(counts.values()) == CLASS * 20 + 1


def test_counts_are_per_question_most_common_first_and_a_copy():
    tally = AnswerTally(RIGHT)
    for answer in ["[768, 768] copy", "[768, 768] transpose", "[768, 768] copy"]:
        tally.add("attention c_proj", answer)
    counts = tally.counts("attention c_proj")
    assert list(counts.items()) == [("[768, 768] copy", 2), ("[768, 768] transpose", 1)]
    assert tally.counts("attention c_attn") == {}
    counts["[768, 768] copy"] = 99
    assert tally.counts("attention c_proj")["[768, 768] copy"] == 2


def test_reset_starts_a_new_round_at_zero():
    tally = AnswerTally(RIGHT)
    tally.add("attention c_attn", RIGHT["attention c_attn"])
    tally.reset()
    assert tally.round == 1 and all(tally.counts(question) == {} for question in RIGHT)


def test_a_page_is_counted_once_per_question_and_round():
    tally = AnswerTally(RIGHT)
    page = tally.add_first(NEW_PAGE, "attention c_proj", "[768, 768] copy")
    page = tally.add_first(page, "attention c_proj", "[768, 768] transpose")  # tried again after the reason
    page = tally.add_first(page, "attention c_attn", "[2304, 768] transpose")
    assert tally.counts("attention c_proj") == {"[768, 768] copy": 1}
    assert tally.counts("attention c_attn") == {"[2304, 768] transpose": 1}
    tally.reset()
    tally.add_first(page, "attention c_proj", "[768, 768] transpose")  # a new round: counted again
    assert tally.counts("attention c_proj") == {"[768, 768] transpose": 1}
    assert NEW_PAGE == {"page": False, "round": -1, "questions": []}  # every page starts from it unchanged


def test_one_address_adds_at_most_its_minutes_worth_and_a_class_behind_it_all_counts():
    now = [0.0]
    clock = lambda: now[0]  # noqa: E731
    tally = AnswerTally(RIGHT, pages=PerAddress(PAGES_PER_MINUTE, clock), counted=PerAddress(COUNTED_PER_MINUTE, clock))
    for _ in range(30):  # a class of 30 behind one school address, each page answering every question
        page = NEW_PAGE
        for question in RIGHT:
            page = tally.add_first(page, question, RIGHT[question], "school")
    assert all(tally.counts(question) == {RIGHT[question]: 30} for question in RIGHT)
    # A script: 600 made-up sessions (each a new page record) in a minute from one address, every question each.
    for i in range(600):
        page = NEW_PAGE
        for question in RIGHT:
            page = tally.add_first(page, question, f"[{i}] copy", "script")
    flooded = sum(sum(count for answer, count in tally.counts(q).items() if answer != RIGHT[q]) for q in RIGHT)
    assert flooded == min(PAGES_PER_MINUTE * len(RIGHT), COUNTED_PER_MINUTE)
    now[0] = 61.0  # a minute later the address may add again: the bound is a rate, not a ban
    assert tally.add_first(NEW_PAGE, "attention c_proj", "[1, 1] copy", "script")["questions"]


def test_an_unknown_question_is_refused():
    with pytest.raises(ValueError, match="no question 'mlp'"):
        AnswerTally(RIGHT).add("mlp", "[1] copy")
