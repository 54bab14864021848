"""The class board's counts: how many of the class's own GPTs the app verified, and what holds the others
back, counted live and anonymously.

One entry per submitting client (its latest verdict replaces its earlier one), under a lock; nothing of
the student's is kept but their client id and its verdict: no name, no text, no logits. Bounded: at most
MAX_CLIENTS entries (then new ones are refused until the teacher starts the board again), each client
address bringing at most PAGES_PER_MINUTE new clients and COUNTED_PER_MINUTE submissions a minute.
"""
import threading
from collections import Counter

from demo.teacher import COUNTED_PER_MINUTE, PAGES_PER_MINUTE, PerAddress
from model.proof.board import Verdict

MAX_CLIENTS = 500  # a class, many times over


class ClassBoard:

    def __init__(self, max_clients: int = MAX_CLIENTS, new_clients: PerAddress | None = None,
                 submissions: PerAddress | None = None):
        self.max_clients = max_clients
        self.new_clients = new_clients if new_clients is not None else PerAddress(PAGES_PER_MINUTE)
        self.submissions = submissions if submissions is not None else PerAddress(COUNTED_PER_MINUTE)
        self._verdicts: dict[str, tuple[str, str | None]] = {}  # client id -> (verdict, mistake)
        self._lock = threading.Lock()

    def record(self, client: str, verdict: Verdict, address: str) -> str | None:
        """Count `client`'s verdict, replacing its earlier one; why it was not counted, or None."""
        with self._lock:
            new = client not in self._verdicts
            if new and len(self._verdicts) >= self.max_clients:
                return f"the board is full ({self.max_clients} students): the teacher can start it again"
        if not self.submissions.allow(address) or (new and not self.new_clients.allow(address)):
            return "too many submissions from your address this minute: submit again in a minute"
        with self._lock:
            self._verdicts[client] = (verdict.verdict, verdict.mistake)
        return None

    def counts(self) -> dict:
        """{"total", "verified", "near_miss": {id: n}, "wrong": {id: n}, "other_weights"}: counts only."""
        with self._lock:
            verdicts = list(self._verdicts.values())
        by = Counter(verdict for verdict, _ in verdicts)
        named = {kind: dict(Counter(mistake for verdict, mistake in verdicts if verdict == kind).most_common())
                 for kind in ("near_miss", "wrong")}
        return {"total": len(verdicts), "verified": by["verified"], **named, "other_weights": by["other_weights"]}

    def reset(self):
        with self._lock:
            self._verdicts.clear()
