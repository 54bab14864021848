"""The Verify tab: the report of `model/proof/verify.py`, shown as cards, a plot, tables, the tolerance axis
and the mapping with every tensor's audit."""
import gradio as gr

from demo import views
from demo.api import DemoApi
from demo.gpu import on_gpu
from demo.lesson_tab import lesson_tabs
from demo.teacher_panel import TeacherControls
from demo.views import LESSON_PROMPTS
from model.loading.mistakes import DEMONSTRATIONS
from model.proof.verify import DEFAULT_PROMPT


def verify_tab(api: DemoApi, teacher: TeacherControls, app: gr.Blocks):
    """The check, then the lesson's own steps (demo/lesson_tab.py) and the class board, each a sub-tab."""
    with gr.Tab("Check"):
        check_tab(api)
    lesson_tabs(api, teacher, app)


def check_tab(api: DemoApi):
    """The proof on screen: pick a prompt and a bug, run both models, see every check of the report."""
    shown = views.report_panels(api.state.startup_report)  # until the first run: the tab opens on a result
    with gr.Row():
        prompt = gr.Dropdown(LESSON_PROMPTS, value=DEFAULT_PROMPT, allow_custom_value=True, scale=2,
                             label="prompt", info="a lesson prompt, or type your own")
        bug = gr.Dropdown(["none", *DEMONSTRATIONS], value="none", scale=3, label="load the weights with a bug",
                          info=views.bug_description("none"), elem_id="verify-bug")
        run = gr.Button("Verify", variant="primary", scale=1, min_width=100)
    gr.Markdown("Verification runs in float32, whatever dtype the Generate tab uses; the tolerance axis adds our "
                "model in lower precision, to show how far rounding alone moves the logits.")
    panels = dict(verdict=gr.HTML(shown["verdict"], elem_classes="lesson"),
                  texts=gr.HTML(shown["texts"], elem_classes="lesson"))
    with gr.Row(equal_height=True):
        panels["layers"] = gr.LinePlot(
            shown["layers"], x="layer", y="log10_diff", color="load", color_map=views.PLOT_COLOURS,
            title="The residual stream after each layer: max |ours − reference|",
            x_title="layer (0 = embeddings)", y_title="log10 max |Δ|", y_lim=views.PLOT_LOG10_RANGE,
            sort=views.layer_axis(api.state.startup_report),  # whole layers, in order
            tooltip=["load", "name", "max_abs_diff"], height=320, scale=3, min_width=340)  # a phone: one per line
        panels["top_k"] = gr.Dataframe(shown["top_k"], label="next token: ours vs the reference", interactive=False,
                                       wrap=True, scale=2, min_width=340)
    panels["broken_top_k"] = gr.HTML(shown["broken_top_k"], elem_classes="lesson")
    panels["tolerance"] = gr.HTML(shown["tolerance"], elem_classes="lesson")
    with gr.Row():
        panels["checks"] = gr.Dataframe(shown["checks"], label="the checks", interactive=False, wrap=True,
                                        column_widths=["8%", "37%", "55%"], min_width=340)
        panels["facts"] = gr.HTML(shown["facts"], padding=True, elem_classes="lesson", min_width=340)
    gr.Markdown("### The mapping table: where each of our parameters comes from, and whether its values arrived")
    panels["mapping"] = gr.HTML(shown["mapping"], elem_classes="lesson")
    with gr.Accordion("The report as JSON (what the /verify_report endpoint returns)", open=False):
        panels["json"] = gr.JSON(shown["json"])

    def show(prompt, bug, progress=gr.Progress()):
        report = api.report(prompt, bug, progress)
        return {panels[name]: value for name, value in views.report_panels(report).items()}

    bug.change(lambda name: gr.Dropdown(info=views.bug_description(name)), bug, bug, api_visibility="private",
               queue=False)
    run.click(on_gpu(show), [prompt, bug], list(panels.values()), api_visibility="private",
              concurrency_id="verify", concurrency_limit=1)
