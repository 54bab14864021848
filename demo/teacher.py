"""What is the teacher's alone: the key that opens the teacher's controls, and the bounds on what one
client address may add to the class's counts.

Every event of the page can be called by anyone with raw HTTP, so rights are checked on the server,
in the event itself: a teacher's action runs only with the teacher's key, compared in constant time.
The key comes from TEACHER_KEY (a Space's secret, or the teacher's shell), else it is made at start-up
and printed in the teacher's terminal with the page address that carries it; it is never logged
otherwise, never shown back, never in the page's config.

The counts (the shape quiz's tally, the class board) are anonymous, so a script could stuff them: each
client address may add at most so many a minute, enough for a class behind one school address, far
from a flood. Behind a Space's proxy the address is the one the proxy saw, the last of X-Forwarded-For.
"""
import hmac
import os
import secrets
import threading
import time
from collections import OrderedDict, deque

TEACHER_KEY_VARIABLE = "TEACHER_KEY"
REFUSED = ("Only the teacher can do this: open \"For the teacher\" at the foot of the page and enter the "
           "teacher's key.")
# Per client address and minute: pages that may start answering (a class of 30 opening and reloading the page),
# and answers or submissions that may be counted (30 students answering six questions in the same minute).
PAGES_PER_MINUTE = 60
COUNTED_PER_MINUTE = 200
ADDRESSES_KEPT = 10_000  # the addresses whose last minute is remembered, the oldest forgotten first


class TeacherKey:
    """The teacher's key: TEACHER_KEY's value, or one made here."""

    def __init__(self, key: str | None = None):
        given = key if key is not None else os.environ.get(TEACHER_KEY_VARIABLE) or None
        self.made_here = given is None
        self._key = given if given is not None else secrets.token_urlsafe(12)

    def matches(self, given) -> bool:
        """Whether `given` is the key; in constant time, whatever it is."""
        return isinstance(given, str) and hmac.compare_digest(given.encode(), self._key.encode())

    def page_address(self, url: str) -> str:
        """The page that opens the teacher's controls at once: the key in its address (the teacher's alone)."""
        return f"{url.rstrip('/')}/?teacher={self._key}"


def address_of(request) -> str:
    """The client address of a Gradio request: behind a Space's proxy, the one the proxy saw."""
    if request is None:
        return "unknown"
    forwarded = request.headers.get("x-forwarded-for") if os.environ.get("SPACE_ID") else None
    if forwarded:
        return forwarded.split(",")[-1].strip()
    client = getattr(request, "client", None)
    return getattr(client, "host", None) or "unknown"


class PerAddress:
    """At most `per_minute` of something per client address, in any sixty seconds; bounded in memory."""

    def __init__(self, per_minute: int, clock=time.monotonic):
        self.per_minute, self.clock = per_minute, clock
        self._recent: OrderedDict[str, deque] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, address: str) -> bool:
        """Count one for `address` if its last minute has room; False (and nothing counted) if not."""
        now = self.clock()
        with self._lock:
            recent = self._recent.pop(address, None) or deque()
            while recent and now - recent[0] >= 60:
                recent.popleft()
            allowed = len(recent) < self.per_minute
            if allowed:
                recent.append(now)
            self._recent[address] = recent  # the most recently seen last
            while len(self._recent) > ADDRESSES_KEPT:
                self._recent.popitem(last=False)
            return allowed
