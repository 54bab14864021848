"""The class's answers to the shape quiz, counted live: how many gave each answer, and nothing else.

Thirty phones may post at once, so every change holds a lock. No name or session is kept: a count per
(question, answer). The count cannot grow without bound: per question, at most MAX_ANSWERS distinct
answers are kept (the right one always among them); the rest add up under "other answers".

A script cannot stuff it either. A page (a session; its record lives on the server) is counted from
its first answer on, each client address starting at most PAGES_PER_MINUTE pages a minute: made-up
session hashes are not so many new students. Each page counts its first answer per question, and each
address at most COUNTED_PER_MINUTE answers a minute (demo/teacher.py). An address is held for that
minute's count only, never shown.
"""
import threading
from collections import Counter

from demo.teacher import COUNTED_PER_MINUTE, PAGES_PER_MINUTE, PerAddress

MAX_ANSWERS = 12  # distinct answers shown per question: the common slips, with room to spare
OTHER = "other answers"
# What one open page remembers (in its session, on the server): whether it was let in as a page of the class, the
# round it answered in, the questions it was counted on.
NEW_PAGE = {"page": False, "round": -1, "questions": []}


class AnswerTally:

    def __init__(self, right_answers: dict[str, str], max_answers: int = MAX_ANSWERS,
                 pages: PerAddress | None = None, counted: PerAddress | None = None):
        """right_answers: question → its right answer, which always keeps a count of its own.
        pages, counted: what one client address may open and add a minute."""
        self.right_answers = dict(right_answers)
        self.max_answers = max_answers
        self.pages = pages if pages is not None else PerAddress(PAGES_PER_MINUTE)
        self.counted = counted if counted is not None else PerAddress(COUNTED_PER_MINUTE)
        self.round = 0  # a new round starts at each reset: a page that answered before may answer again
        self._counts = {question: Counter() for question in right_answers}
        self._lock = threading.Lock()

    def add(self, question: str, answer: str):
        """Count one answer (normalised: model.quiz.Grade.answer) to `question`."""
        if question not in self._counts:
            raise ValueError(f"no question {question!r}: choose one of {', '.join(self._counts)}")
        with self._lock:
            counts = self._counts[question]
            kept = answer in counts or answer == self.right_answers[question] or \
                len(counts.keys() - {OTHER, self.right_answers[question]}) < self.max_answers - 1
            counts[answer if kept else OTHER] += 1

    def add_first(self, page: dict, question: str, answer: str, address: str = "unknown") -> dict:
        """Count `answer` if it is this page's first to `question` this round; return the page's new record.

        So the count says what the class predicted, not how often a page tried again after seeing the reason.
        A page's first answer lets it in as a page of the class, if its address has not started too many this
        minute; an address that added its minute's worth counts nothing more until the minute is over.
        """
        with self._lock:
            current = self.round
        page = page if page["round"] == current else {**page, "round": current, "questions": []}
        if question in page["questions"]:
            return page
        if not page["page"]:
            if not self.pages.allow(address):
                return page
            page = {**page, "page": True}
        if not self.counted.allow(address):
            return page
        self.add(question, answer)
        return {**page, "questions": [*page["questions"], question]}

    def counts(self, question: str) -> dict[str, int]:
        """Each answer to `question` and how many gave it, the most common first (a copy)."""
        with self._lock:
            return dict(self._counts[question].most_common())

    def reset(self):
        """Start counting again, every question at zero."""
        with self._lock:
            for counts in self._counts.values():
                counts.clear()
            self.round += 1
