"""Bad input through the `/generate` and `/verify_report` endpoints, as a script or a mischievous student
sends it: each gets an error that names the field and what it allows, odd but valid text is never refused,
and the app serves the next request as before. (The page's own path is in test_browser.py.)
"""
import json

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from demo.api import MAX_NEW_TOKENS, MAX_PROMPT_CHARS, MAX_REQUEST_BYTES, DemoApi
from model.loading.mistakes import DEMONSTRATIONS
from model.sampling import MAX_SEED
from tests.app_server import REPO_ROOT, raw_call, written_alone

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

PROMPT = "The capital of France is"
FIELDS = ["prompt", "max_new_tokens", "temperature", "top_k", "top_p", "seed"]  # /generate's, in order
GOOD = (PROMPT, 8, 0.8, 50, 0.95, 3)
RANGES = {
    "max_new_tokens": f"max_new_tokens must be a whole number from 1 to {MAX_NEW_TOKENS}",
    "temperature": "temperature must be a number in [0.0, 10.0]",
    "top_k": "top_k must be a whole number from 1 to 50257",  # 0, keep every token, is valid too
    "top_p": "top_p must be a number in (0.0, 1.0]",
    "seed": f"seed must be a whole number from 0 to {MAX_SEED}",
}
# Text that looks odd but is text: the model reads it like any other.
ODD_TEXTS = {
    "endoftext": "<|endoftext|>The capital of France is<|endoftext|>",
    "lookalikes": "<|im_start|>user <|endoftext |> <｜endoftext｜> </s> [CLS] <|fim_prefix|> {{7*7}} ${x}",
    "emoji": "The owl 🦉 met an astronaut 👩🏽‍🚀 in 🇫🇷",
    "combining": "Cafe\u0301 and Z\u0337\u0322a\u0334l\u0335g\u0336o",
    "right-to-left": "مرحبا بالعالم and שלום עולם",
    "bidi-controls": "abc\u202edcba\u202c \u200f\u200e\u2066x\u2069",
    "control": "bell\a tab\t escape\x1b[31m red\x7f form\x0c",
    "nul": "before\x00after",
    "spaces-around": "   The capital of France is\n\n",
}


@pytest.fixture(scope="module")
def client(tiny_app_url):
    return Client(tiny_app_url, analytics_enabled=False, verbose=False)


def generated(client, *args) -> str:
    return client.predict(*args, api_name="/generate")


def refusal(client, *args, endpoint="/generate") -> str:
    with pytest.raises(AppError) as refused:
        client.predict(*args, api_name=endpoint)
    return str(refused.value)


def still_serving(client, tiny_state):
    """Nothing broke: the next request is answered as if the bad one had never come."""
    assert generated(client, *GOOD) == written_alone(tiny_state, *GOOD)


def replaced(field: str, value) -> list:
    """GOOD with one field's value replaced."""
    args = list(GOOD)
    args[FIELDS.index(field)] = value
    return args


# --- odd text that is still text -----------------------------------------------------------------

@pytest.mark.parametrize("text", ODD_TEXTS.values(), ids=ODD_TEXTS.keys())
def test_odd_but_valid_text_is_continued_as_the_model_writes_it_alone(client, tiny_state, text):
    assert generated(client, *replaced("prompt", text)) == written_alone(tiny_state, *replaced("prompt", text))


@pytest.mark.parametrize("text", ODD_TEXTS.values(), ids=ODD_TEXTS.keys())
def test_odd_but_valid_text_is_verified_and_comes_back_unchanged(client, text):
    report = client.predict(text, "none", api_name="/verify_report")
    assert report["verified"] and report["prompt"] == text


# --- prompts that are too long, or not text ------------------------------------------------------

LONG_PROMPT = ("The history of the printing press begins in Mainz. " * 1000)[:50_000]  # about 10,000 tokens


def test_a_prompt_longer_than_the_context_is_continued_from_its_end(client, tiny_state):
    assert generated(client, *replaced("prompt", LONG_PROMPT)) == written_alone(tiny_state, *replaced("prompt", LONG_PROMPT))


@pytest.mark.parametrize("call", ["generate", "verify_report"])
def test_a_prompt_longer_than_the_context_comes_with_a_notice(tiny_state, call):
    api = DemoApi(tiny_state)  # outside a request, Gradio hands its notices to Python's warnings
    run = {"generate": lambda: list(api.generate(*replaced("prompt", LONG_PROMPT))),
           "verify_report": lambda: api.verify_report(LONG_PROMPT)}[call]
    with pytest.warns(UserWarning, match=r"The prompt is longer than the model's context: its first \d+ tokens"):
        run()


def test_a_cropped_prompt_is_still_verified_on_the_tokens_that_fit(client, tiny_state):
    report = client.predict(LONG_PROMPT, "not_transposed", api_name="/verify_report")
    assert report["verified"] and report["broken"]["caught"]
    assert len(report["prompt_tokens"]) == tiny_state.reference.config.n_positions - report["greedy_tokens"]


BAD_PROMPTS = [
    ("", "prompt is empty: type the start of a text"),
    (" \n\t\u3000", "prompt is empty: type the start of a text"),
    ("x" * (MAX_PROMPT_CHARS + 1), f"prompt is {MAX_PROMPT_CHARS + 1:,} characters long; the limit is "
                                   f"{MAX_PROMPT_CHARS:,}: shorten it"),
    (None, "prompt must be text, got NoneType"),
    (42, "prompt must be text, got int"),
    (["a", "list"], "prompt must be text, got list"),
]


@pytest.mark.parametrize("endpoint", ["/generate", "/verify_report"])
@pytest.mark.parametrize("prompt, message", BAD_PROMPTS, ids=["empty", "whitespace", "too-long", "none", "number",
                                                              "list"])
def test_a_prompt_that_cannot_be_used_is_refused_saying_why(client, tiny_state, endpoint, prompt, message):
    args = replaced("prompt", prompt) if endpoint == "/generate" else [prompt, "none"]
    assert message in refusal(client, *args, endpoint=endpoint)
    still_serving(client, tiny_state)


@pytest.mark.parametrize("endpoint, rest", [("generate", GOOD[1:]), ("verify_report", ["none"])])
def test_half_a_character_is_refused_saying_where(tiny_app_url, client, tiny_state, endpoint, rest):
    """A lone UTF-16 surrogate: JSON can carry one ("\\ud800"), Python's client cannot send one."""
    body = '{"data": ["before \\ud800 after", ' + ", ".join(json.dumps(value) for value in rest) + "]}"
    event, error = raw_call(tiny_app_url, endpoint, body.encode())
    assert event == "error"
    assert error["error"].startswith("prompt holds half a character at position 7 (an unpaired UTF-16 surrogate, "
                                     "U+D800)")
    still_serving(client, tiny_state)


# --- numbers out of range, or not numbers --------------------------------------------------------

BAD_SETTINGS = [
    ("max_new_tokens", 0), ("max_new_tokens", 10**9), ("max_new_tokens", -1), ("max_new_tokens", 8.5),
    ("max_new_tokens", "8"), ("max_new_tokens", None),
    ("temperature", -0.1), ("temperature", 1e308), ("temperature", "hot"), ("temperature", None),
    ("top_k", -1), ("top_k", 50258), ("top_k", 2.5), ("top_k", "50"), ("top_k", True),
    ("top_p", 0), ("top_p", 1.0001), ("top_p", -1), ("top_p", "high"),
    ("seed", -1), ("seed", MAX_SEED + 1), ("seed", 10**30), ("seed", 1.5), ("seed", "abc"), ("seed", None),
]


@pytest.mark.parametrize("field, value", BAD_SETTINGS, ids=[f"{field}={value!r}"[:40] for field, value in BAD_SETTINGS])
def test_a_setting_out_of_range_or_of_the_wrong_type_is_named_with_its_range(client, tiny_state, field, value):
    assert refusal(client, *replaced(field, value)) == f"{RANGES[field]}, got {value!r}"
    still_serving(client, tiny_state)


@pytest.mark.parametrize("field, literal, shown", [
    ("temperature", "NaN", "nan"), ("temperature", "Infinity", "inf"), ("temperature", "-Infinity", "-inf"),
    ("top_p", "NaN", "nan"),
])
def test_json_numbers_that_are_not_numbers_are_refused_too(tiny_app_url, client, tiny_state, field, literal, shown):
    """NaN and Infinity: Python's json reads them, and Python's client refuses to send them."""
    values = [json.dumps(value) for value in GOOD]
    values[FIELDS.index(field)] = literal
    event, error = raw_call(tiny_app_url, "generate", ('{"data": [' + ", ".join(values) + "]}").encode())
    assert (event, error["error"]) == ("error", f"{RANGES[field]}, got {shown}")
    still_serving(client, tiny_state)


@pytest.mark.parametrize("args", [GOOD[:1], GOOD[1:]], ids=["prompt-only", "settings-only"])
def test_missing_arguments_get_gradios_bare_error_and_break_nothing(tiny_app_url, client, tiny_state, args):
    """Gradio counts the arguments before the app sees any: its error has no message (a gap the app cannot fill)."""
    event, error = raw_call(tiny_app_url, "generate", json.dumps({"data": list(args)}).encode())
    assert (event, error) == ("error", {"error": None})
    still_serving(client, tiny_state)


def test_top_k_0_keeps_every_token(client, tiny_state):
    assert generated(client, *replaced("top_k", 0)) == written_alone(tiny_state, *replaced("top_k", 0))


# --- /verify_report's bug ------------------------------------------------------------------------

@pytest.mark.parametrize("bug", ["no_such_bug", "", None, 5, ["none"]])
def test_an_unknown_bug_is_refused_with_the_list_of_bugs(client, tiny_state, bug):
    assert refusal(client, PROMPT, bug, endpoint="/verify_report") == (
        f"bug must be none or one of {', '.join(DEMONSTRATIONS)}, got {bug!r}")
    still_serving(client, tiny_state)


# --- what a request may carry --------------------------------------------------------------------

def test_a_request_body_over_the_limit_is_refused_before_it_is_read(tiny_app_url, client, tiny_state):
    body = json.dumps({"data": replaced("prompt", "x" * MAX_REQUEST_BYTES)}).encode()
    event, answer = raw_call(tiny_app_url, "generate", body)
    assert (event, json.loads(answer)) == ("http 413", {
        "detail": f"request body over the app's limit of {MAX_REQUEST_BYTES:,} bytes"})
    still_serving(client, tiny_state)


@pytest.mark.parametrize("where", ["/etc/passwd", "the source", "the source, relative", "the model's folder"])
def test_no_route_serves_a_file_a_browser_names(tiny_app_url, tiny_dir, where):
    """The model is chosen at start-up; the endpoints take text and numbers; Gradio's file route refuses paths."""
    path = {"/etc/passwd": "/etc/passwd", "the source": REPO_ROOT / "model" / "mapping.py",
            "the source, relative": "demo/app.py", "the model's folder": tiny_dir / "config.json"}[where]
    answer = httpx.get(f"{tiny_app_url}gradio_api/file={path}", timeout=10)
    assert (answer.status_code, answer.json()) == (403, {"detail": f"File not allowed: {path}."})
