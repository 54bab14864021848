"""The app in a real browser: Debian's Chromium, driven by Playwright, on the trained checkpoint.

Screenshots of both tabs go to $DEMO_SCREENSHOTS, or to a pytest temp folder (printed with -s).
Skipped only where /usr/bin/chromium is absent, and never under CI (CI installs it: .ci/run).
"""
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest

import demo.api
from demo.app import build_app
from demo.state import load_state
from model.generate import complete, prepare_prompt, stream_text
from model.sampling import MAX_SEED, SamplingSettings
from model.verify import TEXT_SETTINGS
from tests.app_server import serving

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
PROMPT = "The capital of France is"
BUG = "untied_head"  # silent, and the one whose text shows it even on the trained checkpoint
SECONDS_PER_PIECE = 0.1  # the tiny model is too fast to watch or to stop mid-stream; this paces it as a reader sees it


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser tests, but {CHROMIUM} is missing: install Debian's chromium package")
        pytest.skip(f"Debian's Chromium is not installed at {CHROMIUM} (apt-get install chromium); CI runs this test")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def state(trained_dir):
    """The checkpoint that recites tests.checkpoints.MEMORISED: real sentences for the screenshots."""
    return load_state(str(trained_dir), device="cpu")


@pytest.fixture(scope="module")
def url(state):
    with serving(build_app(state)) as url:
        yield url


@pytest.fixture
def page(browser, url):
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.set_default_timeout(30_000)
    page.goto(url)
    yield page
    page.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory):
    folder = Path(os.environ.get("DEMO_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots in {folder}")
    return folder


@pytest.fixture
def pieces_served(monkeypatch):
    """Slow the app's stream to a watchable pace, and count the pieces of text the model produced."""
    produced = []

    def paced(model, prompt, settings):
        for piece in stream_text(model, prompt, settings):
            produced.append(piece)
            time.sleep(SECONDS_PER_PIECE)
            yield piece

    monkeypatch.setattr(demo.api, "stream_text", paced)
    return produced


def record_bot_texts(page):
    """From now on, collect every text the chat's last answer shows, in window.botTexts."""
    page.locator("#chat").wait_for()
    page.evaluate("""() => {
        window.botTexts = [];
        const chat = document.querySelector('#chat');
        new MutationObserver(() => {
            const answers = chat.querySelectorAll('[data-testid="bot"]');
            if (answers.length) window.botTexts.push(answers[answers.length - 1].innerText);
        }).observe(chat, {childList: true, subtree: true, characterData: true});
    }""")


def answer_to(state, prompt: str, seed: int) -> str:
    """What the chat shows for `prompt` with the Generate tab's default settings and this seed."""
    settings = SamplingSettings(max_new_tokens=64, temperature=0.8, top_k=50, seed=seed)
    return ("…" + complete(state.student, prompt, settings)).strip()


def test_generate_tab_streams_the_continuation(page, state, screenshots, pieces_served):
    assert "verified" in page.locator(".app-header").inner_text()
    record_bot_texts(page)
    page.locator("#prompt textarea").fill(PROMPT)
    page.locator("#prompt textarea").press("Enter")
    page.locator("#chat [data-testid='user']").get_by_text(PROMPT).wait_for()
    answer = answer_to(state, PROMPT, seed=int(page.locator("#seed input").input_value()))  # the seed used, shown
    assert answer.startswith("… Paris, and the capital of Italy is Rome.")  # the model recites
    page.locator("#chat [data-testid='bot']").get_by_text(answer).wait_for()
    seen = [text.strip() for text in dict.fromkeys(page.evaluate("window.botTexts")) if text]
    assert len(seen) >= 3, seen  # the answer grew piece by piece
    assert seen[-1] == answer

    lesson_prompt = "Once upon a time in a land far away"
    page.get_by_role("button", name=lesson_prompt).click()  # one of the lesson's examples
    page.get_by_role("button", name="Generate").click()
    page.locator("#chat [data-testid='user']").get_by_text(lesson_prompt).wait_for()
    answer = answer_to(state, lesson_prompt, seed=int(page.locator("#seed input").input_value()))
    page.locator("#chat [data-testid='bot']").get_by_text(answer).wait_for()
    page.screenshot(path=screenshots / "generate.png", full_page=True)


def long_text(state) -> tuple[int, list[str]]:
    """A seed whose text, at temperature 2, runs on for at least 40 pieces instead of ending early."""
    settings = SamplingSettings(max_new_tokens=64, temperature=2.0, top_k=None)
    prompt = prepare_prompt(state.student, PROMPT, settings.max_new_tokens)
    for seed in range(100):
        pieces = list(stream_text(state.student, prompt, replace(settings, seed=seed)))
        if len(pieces) >= 40:
            return seed, pieces
    raise AssertionError("no seed below 100 writes 40 pieces: the checkpoint has changed")


def test_stop_stops_the_model(page, state, pieces_served):
    seed, would_write = long_text(state)
    page.get_by_label("number input for temperature").fill("2")
    page.get_by_label("number input for top-k").fill("0")
    page.get_by_label("randomize the seed").uncheck()
    page.locator("#seed input").fill(str(seed))
    page.locator("#prompt textarea").fill(PROMPT)
    page.locator("#prompt textarea").press("Enter")
    page.locator("#chat [data-testid='bot']").wait_for()  # the first piece is shown
    page.get_by_role("button", name="Stop").click()
    time.sleep(4 * SECONDS_PER_PIECE)  # a piece already being computed may still finish
    stopped_at = len(pieces_served)
    time.sleep(10 * SECONDS_PER_PIECE)
    assert len(pieces_served) == stopped_at, "the model kept writing after Stop"
    assert stopped_at < 20, f"Stop came after {stopped_at} of {len(would_write)} pieces"
    assert pieces_served == would_write[:stopped_at]  # it was this request's text, cut short


def run_verification(page, bug: str):
    page.get_by_role("tab", name="Verify").click()
    page.get_by_label("prompt").click()
    page.get_by_role("option", name=PROMPT).click()
    page.get_by_label(bug).check()
    page.get_by_role("button", name="Verify", exact=True).click()
    page.get_by_text(f"Bug {bug}: caught").wait_for()


def test_verify_tab_shows_the_verdict_and_both_texts(page, state, screenshots):
    run_verification(page, BUG)
    verdict = page.locator(".verdict-cards").inner_text()
    assert "Correct load: the same function" in verdict and "allclose is False" in verdict
    texts = page.locator(".side-by-side").inner_text()
    correct = complete(state.verifier, PROMPT, TEXT_SETTINGS).split("<|endoftext|>")[0]
    assert correct == " Paris, and the capital of Italy is Rome."  # the correct load recites
    assert f"{PROMPT}{correct}" in texts and f"Broken load ({BUG})" in texts
    assert f"{PROMPT}{correct}" not in texts.split(f"Broken load ({BUG})")[1]  # the broken load does not
    page.locator("path[stroke='#dc2626']").first.wait_for()  # the broken load's line is drawn, in red
    page.screenshot(path=screenshots / "verify.png", full_page=True)


def test_verify_tab_shows_a_refused_load_as_good_news(page, screenshots):
    run_verification(page, "ffn_off_by_one")
    assert "refused to load" in page.locator(".verdict-cards").inner_text()
    assert "Why this is good news" in page.locator(".side-by-side").inner_text()
    page.screenshot(path=screenshots / "verify-refused.png", full_page=True)


def send(page, prompt: str):
    page.locator("#prompt textarea").fill(prompt)
    page.locator("#prompt textarea").press("Enter")


def test_bad_input_in_the_page_is_named_and_the_page_goes_on_working(page, state):
    send(page, " \n ")
    page.get_by_text("prompt is empty: type the start of a text for GPT-2 to continue").wait_for()
    page.get_by_label("randomize the seed").uncheck()
    page.locator("#seed input").fill("-5")
    send(page, PROMPT)
    page.get_by_text(f"seed must be a whole number from 0 to {MAX_SEED}, got -5").wait_for()
    assert page.locator("#chat [data-testid='user']").count() == 0  # no turn for a refused request

    page.locator("#seed input").fill("7")
    long_prompt = "The capital of France is Paris. " * 1600  # 51,200 characters, far past the context
    send(page, long_prompt)
    page.get_by_text("The prompt is longer than the model's context: its first").wait_for()
    page.locator("#chat [data-testid='bot']").get_by_text(answer_to(state, long_prompt, seed=7)).wait_for()
    shown = page.locator("#chat [data-testid='user']").last.inner_text()
    assert shown.startswith("…") and len(shown) < 1000  # what the model read: the prompt's end

    odd = "Owls 🦉 say مرحبا and Cafe\u0301"
    send(page, odd)
    page.locator("#chat [data-testid='user']").get_by_text(odd).wait_for()
    page.locator("#chat [data-testid='bot']").get_by_text(answer_to(state, odd, seed=7)).wait_for()
