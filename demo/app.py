"""The Gradio app: a Generate tab and a Verify tab over one shared, read-only model.

    python -m demo            # the options are in demo/__main__.py

Besides the page, named endpoints are the app's stable API for scripts (demo/api.py): `/generate` streams a
continuation, `/verify_report` returns the JSON of `python -m model.verify --json`; the class board's
`/board_question`, `/submit_logits` and `/class_board` take and count students' submissions.
"""
import gradio as gr

from demo import views
from demo.api import DemoApi
from demo.generate_tab import generate_tab
from demo.gpu import on_gpu
from demo.idle_queue import IdleQueue
from demo.state import DemoState
from demo.teacher import TeacherKey
from demo.teacher_panel import TeacherControls
from demo.verify_tab import verify_tab

QUEUE_SIZE = 64  # a class of 30, each with a request waiting, and room to spare; beyond it, "busy"
# Without the engine (ZeroGPU) each generation runs its own loop on the GPU it holds: a few interleave cheaply.
GENERATIONS_WITHOUT_ENGINE = 4
BOARD_AT_ONCE = 4  # submissions judged at once: each takes milliseconds, a class's thirty queue briefly


def generations_at_once(state: DemoState) -> int:
    """Generations served at once: every row of the engine, which writes them all in each step."""
    return state.engine.max_rows if state.engine is not None else GENERATIONS_WITHOUT_ENGINE


def build_app(state: DemoState, queue_size: int = QUEUE_SIZE, teacher_key: TeacherKey | None = None) -> gr.Blocks:
    """The two tabs and the endpoints, with a bounded queue sized for the device.

    queue_size: requests that may wait for a slot; one more is turned away at once ("busy"), not left hanging.
    teacher_key: what opens the teacher's controls (by default TEACHER_KEY's value, or one made here; the app's
        `teacher_key` attribute, for the teacher's terminal).
    """
    api = DemoApi(state)
    generations = generations_at_once(state)
    teacher_key = teacher_key if teacher_key is not None else TeacherKey()
    with gr.Blocks(title="Our GPT with OpenAI's GPT-2 weights", analytics_enabled=False) as app:  # no telemetry
        teacher = TeacherControls(teacher_key)
        gr.HTML(views.header_html(state.model_name, state.device, state.dtype, state.startup_report,
                                  state.fallback_reason, serving=_serving(state)), elem_classes="lesson")
        with gr.Tab("Generate"):
            generate_tab(api, generations)
        with gr.Tab("Verify"):
            verify_tab(api, teacher, app)
        teacher.panel(app)
        gr.api(on_gpu(api.generate), api_name="generate", concurrency_id="generate", concurrency_limit=generations)
        gr.api(on_gpu(api.verify_report), api_name="verify_report", concurrency_id="verify", concurrency_limit=1)
        # The class board: judging compares numbers (the judge is made once, holding a GPU on ZeroGPU for that).
        gr.api(api.board_question, api_name="board_question", concurrency_id="board", concurrency_limit=BOARD_AT_ONCE)
        gr.api(api.submit_logits, api_name="submit_logits", concurrency_id="board", concurrency_limit=BOARD_AT_ONCE)
        gr.api(api.class_board, api_name="class_board", concurrency_id="board", concurrency_limit=BOARD_AT_ONCE)
    app.queue(max_size=queue_size, default_concurrency_limit=generations)
    app._queue = IdleQueue.replacing(app._queue)  # Gradio's own polls every millisecond, even with nobody there
    app.teacher_key = teacher_key
    return app


def _serving(state: DemoState) -> dict | None:
    """How generations are served, for the header: None when each runs alone (ZeroGPU)."""
    if state.engine is None:
        return None
    check = state.row_invariance
    return {"rows": state.engine.max_rows, "row_invariance": check.holds, "max_abs_diff": check.max_abs_diff}
