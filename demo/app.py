"""The Gradio app: a Generate tab and a Verify tab over one shared, read-only model.

    python -m demo            # the options are in demo/__main__.py
    python demo/app.py        # the same, the way a Hugging Face Space runs its app_file

Besides the page, two named endpoints are the app's stable API for scripts: `/generate` streams a
continuation, `/verify_report` returns the JSON of `python -m model.verify --json`.
"""
import re
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

if __package__ in (None, ""):  # run as a script (a Space's app_file): make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from demo.gpu import on_gpu  # first: on a ZeroGPU Space it must come before torch

import gradio as gr
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware

from demo import views
from demo.state import DemoState
from model.generate import Prompt, prepare_prompt, stream_text
from model.sampling import SamplingSettings
from model.tokenizer import decode, encode
from model.verify import DEFAULT_PROMPT, verify
from model.weights import BUGS

LESSON_PROMPTS = [
    "The meaning of life is",
    "The capital of France is",
    "Once upon a time in a land far away",
    "The transformer architecture consists of",
]
# Bounds on what one request may ask for, so no student can hold a slot, the queue or the memory for long.
MAX_NEW_TOKENS = 512  # bounds the time one request holds a slot
# A pasted article is welcome (GPT-2 reads its last 1,024 tokens, and the page says so); a longer one is refused,
# which bounds the time spent tokenizing (under half a second even for one 100,000-letter word).
MAX_PROMPT_CHARS = 100_000
# Every HTTP request body, read no further than this: the prompt at its limit, JSON-escaped (up to 12 bytes a
# character), with the chat's history of hundreds of turns. Uploads too: the app accepts no files at all.
MAX_REQUEST_BYTES = 8 * 2**20
QUEUE_SIZE = 64  # a class of 30, each with a request waiting, and room to spare; beyond it, "busy"
# Generations running at once: a GPU interleaves several streams cheaply, a CPU has few cores.
GENERATIONS_AT_ONCE = {"cuda": 4, "mps": 2, "cpu": 2}
SEEDS = 2**32  # a randomized seed is below this: short enough to read out and type back
# In a str, a surrogate is always half of a character: JSON's "\ud83d" without its "\ude00" decodes to one.
UNPAIRED_SURROGATE = re.compile("[\ud800-\udfff]")


class DemoApi:
    """The app's two endpoints; every request reads the same model and brings its own seed."""

    def __init__(self, state: DemoState):
        self.state = state

    def generate(self, prompt: str, max_new_tokens: int = 64, temperature: float = 0.8, top_k: int = 50,
                 top_p: float = 1.0, seed: int = 0) -> Iterator[str]:
        """The student GPT's continuation of `prompt`, streamed: each message is the text so far.

        top_k=0 keeps every token; temperature=0 is greedy. The same seed writes the same text.
        """
        prepared, settings = self.prepare(prompt, max_new_tokens, temperature, top_k, top_p, seed)
        yield from self.continuation(prepared, settings)

    def prepare(self, prompt, max_new_tokens, temperature, top_k, top_p, seed) -> tuple[Prompt, SamplingSettings]:
        """The prompt's tokens and the checked settings, or an error on the page naming what is wrong.

        A prompt longer than the model's context keeps its end, and the page says so.
        """
        with shown_to_user():
            settings = SamplingSettings(max_new_tokens=max_new_tokens, temperature=temperature,
                                        top_k=_none_if_zero(top_k), top_p=top_p,
                                        seed=seed).validated(self.state.vocab_size, MAX_NEW_TOKENS)
        prepared = prepare_prompt(self.state.student, _checked_prompt(prompt), settings.max_new_tokens)
        if prepared.notice:
            gr.Warning(prepared.notice)
        return prepared, settings

    def continuation(self, prompt: Prompt, settings: SamplingSettings) -> Iterator[str]:
        """The continuation so far, after each new piece; one empty answer if the model ends at once."""
        text = ""
        for piece in stream_text(self.state.student, prompt, settings):
            text += piece
            yield text
        if not text:
            yield text

    def verify_report(self, prompt: str = DEFAULT_PROMPT, bug: str = "none") -> dict:
        """Our GPT against the reference on `prompt`; with `bug`, a deliberately broken load too.

        Returns the JSON of `python -m model.verify --json`. bug: "none" or one of model.weights.BUGS.
        """
        if bug not in ("none", *BUGS):
            raise user_error(f"bug must be none or one of {', '.join(BUGS)}, got {bug!r}")
        prompt = _checked_prompt(prompt)
        with shown_to_user():
            report = verify(self.state.reference, prompt, None if bug == "none" else bug, student=self.state.verifier)
        verified = Prompt(prompt, report.prompt_tokens, len(encode(prompt)) - len(report.prompt_tokens))
        if verified.notice:
            gr.Warning(verified.notice)
        return report.to_dict()


def user_error(message: str) -> gr.Error:
    """An error shown to the user who caused it; the server's log stays free of their typos' tracebacks."""
    return gr.Error(message, print_exception=False)


@contextmanager
def shown_to_user():
    """A ValueError from model/ (a bad setting, named with its range) becomes an error on the page."""
    try:
        yield
    except ValueError as error:
        raise user_error(str(error)) from None


def _none_if_zero(top_k):
    """The app's top_k=0 (keep every token) is SamplingSettings' None; any other value is checked there."""
    return None if type(top_k) is int and top_k == 0 else top_k


def _checked_prompt(prompt) -> str:
    """The prompt, if it is text the model can read; emoji, any script, control characters and NUL all are."""
    if not isinstance(prompt, str):
        raise user_error(f"prompt must be text, got {type(prompt).__name__}")
    if not prompt.strip():
        raise user_error("prompt is empty: type the start of a text for GPT-2 to continue")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise user_error(f"prompt is {len(prompt):,} characters long; the limit is {MAX_PROMPT_CHARS:,}: shorten "
                         f"it (of a long prompt, the model reads only the end that fits its context anyway)")
    if surrogate := UNPAIRED_SURROGATE.search(prompt):
        raise user_error(f"prompt holds half a character at position {surrogate.start()} (an unpaired UTF-16 "
                         f"surrogate, U+{ord(surrogate[0]):04X}): it is not text; paste the text again")
    return prompt


def _as_shown(prompt: Prompt) -> str:
    """The prompt as the chat shows it: what the model read, so a cropped one starts with an ellipsis."""
    return "…" + decode(prompt.ids) if prompt.dropped_tokens else prompt.text


# --- the page ------------------------------------------------------------------------------------

def build_app(state: DemoState, queue_size: int = QUEUE_SIZE) -> gr.Blocks:
    """The two tabs and the two endpoints, with a bounded queue sized for the device.

    queue_size: requests that may wait for a slot; one more is turned away at once ("busy"), not left hanging.
    """
    api = DemoApi(state)
    generations = GENERATIONS_AT_ONCE.get(state.reference.device.type, 1)
    with gr.Blocks(title="Our GPT with OpenAI's GPT-2 weights", analytics_enabled=False) as app:  # no telemetry
        gr.HTML(views.header_html(state.model_name, state.device, state.dtype, state.startup_report,
                                  state.fallback_reason), elem_classes="lesson")
        with gr.Tab("Generate"):
            _generate_tab(api, generations)
        with gr.Tab("Verify"):
            _verify_tab(api)
        gr.api(on_gpu(api.generate), api_name="generate", concurrency_id="generate", concurrency_limit=generations)
        gr.api(on_gpu(api.verify_report), api_name="verify_report", concurrency_id="verify", concurrency_limit=1)
    app.queue(max_size=queue_size, default_concurrency_limit=generations)
    return app


def _generate_tab(api: DemoApi, generations: int):
    gibberish = " — random weights: expect gibberish" if api.state.fallback_reason else ""
    with gr.Row():
        with gr.Column(scale=3):
            chatbot = gr.Chatbot(label=f"Our GPT continues your text{gibberish}", height=440,
                                 render_markdown=False, feedback_options=None, buttons=["copy"], elem_id="chat")
            with gr.Row():
                prompt = gr.Textbox(placeholder="Type the start of a text, press Enter: GPT-2 continues it",
                                    show_label=False, scale=4, max_lines=6, elem_id="prompt")
                send = gr.Button("Generate", variant="primary", scale=1, min_width=100)
                stop = gr.Button("Stop", variant="stop", scale=1, min_width=80)
            gr.Examples(LESSON_PROMPTS, inputs=prompt, label="Prompts from the lesson")
        with gr.Column(scale=1, min_width=260):
            max_new_tokens = gr.Slider(1, MAX_NEW_TOKENS, value=64, step=1, precision=0, label="max new tokens")
            temperature = gr.Slider(0, 2, value=0.8, step=0.05, label="temperature",
                                    info="0 = always the most likely token")
            top_k = gr.Slider(0, 200, value=50, step=1, precision=0, label="top-k", info="0 = keep every token")
            top_p = gr.Slider(0.05, 1, value=1.0, step=0.05, label="top-p",
                              info="keep the likeliest tokens that add up to p")
            # No minimum=: Gradio's own range error would not name the field; the app's does.
            seed = gr.Number(0, precision=0, label="seed", info="the seed of the last text", elem_id="seed")
            randomize = gr.Checkbox(True, label="randomize the seed")
            gr.ClearButton([chatbot, prompt], value="Clear the chat")

    def chat(text, history, max_new_tokens, temperature, top_k, top_p, seed, randomize):
        """A user turn with the prompt, then the continuation growing in the answer below it."""
        seed = secrets.randbelow(SEEDS) if randomize else seed
        prepared, settings = api.prepare(text, max_new_tokens, temperature, top_k, top_p, seed)
        history = [*history, {"role": "user", "content": _as_shown(prepared)}]
        for continuation in api.continuation(prepared, settings):
            yield [*history, {"role": "assistant", "content": "…" + continuation}], seed, ""

    inputs = [prompt, chatbot, max_new_tokens, temperature, top_k, top_p, seed, randomize]
    runs = [trigger(on_gpu(chat), inputs, [chatbot, seed, prompt], api_visibility="private",
                    concurrency_id="generate", concurrency_limit=generations)
            for trigger in (send.click, prompt.submit)]
    stop.click(None, cancels=runs)  # the generator is no longer pulled: the model stops after the token in hand


def _verify_tab(api: DemoApi):
    shown = views.report_panels(api.state.startup_report)  # until the first run: the tab opens on a result
    with gr.Row():
        prompt = gr.Dropdown(LESSON_PROMPTS, value=DEFAULT_PROMPT, allow_custom_value=True, scale=2,
                             label="prompt", info="a lesson prompt, or type your own")
        bug = gr.Radio(["none", *BUGS], value="none", scale=3, label="load the weights with a bug",
                       info=views.bug_description("none"))
        run = gr.Button("Verify", variant="primary", scale=1, min_width=100)
    gr.Markdown("Verification always runs in float32, whatever dtype the Generate tab uses.")
    panels = dict(verdict=gr.HTML(shown["verdict"], elem_classes="lesson"),
                  texts=gr.HTML(shown["texts"], elem_classes="lesson"))
    with gr.Row(equal_height=True):
        panels["layers"] = gr.LinePlot(
            shown["layers"], x="layer", y="log10_diff", color="load", color_map=views.PLOT_COLOURS,
            title="The residual stream after each layer: max |ours − reference|",
            x_title="layer (0 = embeddings)", y_title="log10 max |Δ|", y_lim=views.PLOT_LOG10_RANGE,
            tooltip=["load", "name", "max_abs_diff"], height=320, scale=3)
        panels["top_k"] = gr.Dataframe(shown["top_k"], label="next token: ours vs the reference", interactive=False,
                                       wrap=True, scale=2)
    with gr.Row():
        panels["checks"] = gr.Dataframe(shown["checks"], label="the checks", interactive=False, wrap=True,
                                        column_widths=["8%", "37%", "55%"])
        panels["facts"] = gr.HTML(shown["facts"], padding=True, elem_classes="lesson")
    gr.Markdown("### The mapping table: where each of our parameters comes from")
    panels["mapping"] = gr.HTML(shown["mapping"], elem_classes="lesson")
    with gr.Accordion("The report as JSON (what the /verify_report endpoint returns)", open=False):
        panels["json"] = gr.JSON(shown["json"])

    def show(prompt, bug, progress=gr.Progress()):
        progress(0, desc="Running our GPT and the reference side by side, layer by layer…")
        report = api.verify_report(prompt, bug)
        return {panels[name]: value for name, value in views.report_panels(report).items()}

    bug.change(lambda name: gr.Radio(info=views.bug_description(name)), bug, bug, api_visibility="private",
               queue=False)
    run.click(on_gpu(show), [prompt, bug], list(panels.values()), api_visibility="private",
              concurrency_id="verify", concurrency_limit=1)


# Scoped to the app's own HTML panels (elem_classes="lesson"), so Gradio's components keep their look.
CSS = """
.lesson .app-header h1 { margin: 0 0 .2em; font-size: 1.8em; }
.lesson .app-header p { font-size: 1.1em; margin: 0; }
.lesson .pass { color: #15803d; }
.lesson .fail { color: #b91c1c; }
.lesson .muted { color: #6b7280; }
.lesson .offline-banner { background: #fef3c7; color: #78350f; border: 2px solid #d97706; border-radius: 8px;
                          padding: .8em 1em; margin-bottom: .8em; font-size: 1.05em; }
.lesson .verdict-cards, .lesson .side-by-side { display: flex; gap: 1em; flex-wrap: wrap; }
.lesson .card { flex: 1 1 320px; border-radius: 10px; padding: .8em 1em; color: #111; font-size: 1.05em; }
.lesson .card.pass { background: #dcfce7; border: 2px solid #16a34a; }
.lesson .card.fail { background: #fee2e2; border: 2px solid #dc2626; }
.lesson .card .big { font-size: 1.4em; font-weight: 700; margin-bottom: .3em; }
.lesson .column { flex: 1 1 320px; border: 2px solid #d1d5db; border-radius: 10px; padding: .6em 1em; }
.lesson .column.pass { border-color: #16a34a; }
.lesson .column.fail { border-color: #dc2626; }
.lesson .column h3 { margin: 0 0 .4em; }
.lesson .column .text { font-size: 1.15em; line-height: 1.5; white-space: pre-wrap; color: var(--body-text-color); }
.lesson .column pre { white-space: pre-wrap; font-size: .8em; }
.lesson .column .why { font-size: .85em; font-style: italic; }
.lesson .eot { color: #9ca3af; font-size: .8em; }
.lesson .facts li { margin-bottom: .4em; }
.lesson .legend { margin-bottom: .5em; line-height: 2; }
.lesson .chip { color: #111; border-radius: 6px; padding: .15em .5em; font-weight: 600; }
.lesson .mapping table { border-collapse: collapse; width: 100%; font-size: .95em; }
.lesson .mapping td, .lesson .mapping th { padding: .25em .6em; border-bottom: 1px solid #fff; text-align: left;
                                           color: #111; }
.lesson .mapping th { background: #e5e7eb; }
"""


def launch(app: gr.Blocks, **options):
    """Start serving `app` with its look (Gradio 6 takes the theme and the css at launch), every request's
    body bounded."""
    limit = Middleware(RequestSizeLimit, max_bytes=MAX_REQUEST_BYTES)
    return app.launch(theme=gr.themes.Soft(), css=CSS, footer_links=["api"], app_kwargs={"middleware": [limit]},
                      **options)


class RequestSizeLimit:
    """ASGI middleware: a request body is read no further than `max_bytes`; past that, the answer is 413.

    Gradio bounds uploads only (and only when asked): without this, one request carrying a gigabyte of JSON
    would be held in memory before the app could refuse its prompt.
    """

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(413, f"request body over the app's limit of {self.max_bytes:,} bytes")
            return message

        await self.app(scope, counted if scope["type"] == "http" else receive, send)


if __name__ == "__main__":
    from demo.__main__ import main
    sys.exit(main())
