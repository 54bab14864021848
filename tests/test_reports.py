"""demo/reports.py: the app's reports, each made once, the correct load's writing shared by every mistake's."""
import threading

from model.proof.verify import BROKEN_STEPS, CORRECT_STEPS, STEPS, verify
from demo.reports import Reports


class Told(list):
    """A progress callback: the description of every step computed, in order."""

    def __call__(self, fraction, desc):
        self.append(desc)


def computed(steps) -> list[str]:
    return [f"Computing {STEPS[step]}…" for step in steps]


def test_reports_are_made_once_and_the_correct_loads_writing_is_shared_by_every_mistake(tiny_reference, tiny_ours):
    reports, prompt = Reports(tiny_reference, tiny_ours, {}, greedy_tokens=4), "A report asked for again"
    first, again, mistake = Told(), Told(), Told()
    correct = reports.get(prompt, progress=first)
    assert first == computed(CORRECT_STEPS)
    assert reports.get(prompt, progress=again) == correct and again == []
    broken = reports.get(prompt, "not_transposed", progress=mistake)
    # The greedy tokens of both models and the lower precisions are the correct load's: not computed again.
    assert mistake == computed(["compare", *BROKEN_STEPS])
    for name, report in [(None, correct), ("not_transposed", broken)]:
        assert report == verify(tiny_reference, prompt, name, tiny_ours, greedy_tokens=4).to_dict()


def test_reports_hand_out_copies_and_keep_only_the_last_ones_used(tiny_reference, tiny_ours):
    reports = Reports(tiny_reference, tiny_ours, {}, greedy_tokens=4, kept=1)
    first = reports.get("One prompt")
    first["mapping"].clear()  # a caller's change stays the caller's
    assert reports.get("One prompt")["mapping"]
    reports.get("Another prompt")  # the only one kept now
    made_again = Told()
    assert reports.get("One prompt", progress=made_again) == verify(
        tiny_reference, "One prompt", ours=tiny_ours, greedy_tokens=4).to_dict()
    assert made_again == computed(CORRECT_STEPS)


def test_a_report_is_made_on_a_thread_that_ends_with_it(tiny_reference, tiny_ours):
    """A thread that has computed in parallel keeps PyTorch's pool of workers while it lives, and while it lives
    every parallel operation of the engine's thread is slower: none may outlive its report."""
    reports, made_on = Reports(tiny_reference, tiny_ours, {}, greedy_tokens=4), []
    reports.get("A report in a thread of its own", progress=lambda fraction, desc: made_on.append(
        threading.current_thread()))
    assert made_on and all(thread is not threading.main_thread() for thread in made_on)
    assert not any(thread.is_alive() for thread in made_on)
