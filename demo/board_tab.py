"""The class board, a sub-tab of Verify: every student's own GPT, judged by the app, counted live.

Students submit from their own machine (`python -m model.check FILE --submit URL`, `check(model,
submit=URL)`, or the few lines shown here for a notebook with only gradio_client): the app receives
logits, never code, and judges them itself (model/proof/board.py).
"""
import gradio as gr

from demo import lesson_views, live
from demo.api import DemoApi
from demo.teacher_panel import TeacherControls
from model.loading.mistakes import MISTAKES

SUMMARIES = {**{mistake.id: mistake.summary for mistake in MISTAKES.values()},
             "unknown": "it differs from GPT-2, and no mistake of the catalogue computes what it does"}


def class_board(api: DemoApi, teacher: TeacherControls, app: gr.Blocks):
    """The counts for the projector, refreshed on demand or every few seconds; how to submit; the teacher's reset."""
    def board():
        return lesson_views.board_html(api.class_board(), SUMMARIES)

    gr.Markdown("Each student checks their own GPT on their own machine and sends the app its logits on one "
                "prompt; the app judges them against its GPT-2 and the catalogue of mistakes. Counts only: no "
                "names, no text. A student's latest submission replaces their earlier one.")
    shown = gr.HTML(board(), elem_classes="lesson", elem_id="class-board")
    live.refreshed(shown, board, None, "board")
    with teacher.group():
        reset = gr.Button("Start the board again (for the teacher)", variant="stop", size="sm", elem_id="board-reset")
    gr.Markdown("**To submit**, from a terminal, with this project cloned: `python -m model.check my_gpt.py "
                "--submit <this page's address>`, or in a notebook, `check(model, submit=...)`. With only "
                "gradio_client, in the notebook where your GPT has GPT-2's weights:")
    address = gr.Textbox(visible=False)
    snippet = gr.Code(lesson_views.board_snippet("<this page's address>"), language="python", interactive=False,
                      label="submit to this board", elem_id="board-snippet")

    def start_again(key):
        teacher.check(key)
        api.board.reset()
        return board()

    quick = dict(api_visibility="private", queue=False)
    reset.click(start_again, teacher.session, shown, api_name="reset_board", **quick)
    # The page's own address, without its query (the teacher's may carry the key), into the lines to copy.
    app.load(lesson_views.board_snippet, address, snippet, js="() => [window.location.href.split(/[?#]/)[0]]", **quick)
