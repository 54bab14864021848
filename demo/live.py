"""A count the projector shows live: refreshed on demand, or every few seconds once a page asks for it."""
import gradio as gr

SECONDS = 5  # how often a page that asks for it (the projector's) reloads the count: one small request


def refreshed(shown: gr.HTML, render, inputs, what: str):
    """A "Refresh the <what>" button and a "refresh every N s" box under `shown`, which render(*inputs) redraws."""
    with gr.Row():
        refresh = gr.Button(f"Refresh the {what}", size="sm", min_width=140)
        live = gr.Checkbox(False, label=f"refresh every {SECONDS} s (for the projector)", min_width=200)
    timer = gr.Timer(SECONDS, active=False)
    quick = dict(api_visibility="private", queue=False)  # a count: no slot to wait for
    refresh.click(render, inputs, shown, **quick)
    timer.tick(render, inputs, shown, show_progress="hidden", **quick)
    live.change(lambda on: gr.Timer(active=on), live, timer, **quick)
