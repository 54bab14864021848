"""Beside the chat, on request: the same prompt and seed written by the very same GPT class on random
weights (GPT-2's initialisation, untrained). Random weights write gibberish; the loaded ones, English.

Kept apart from the chat's own code: the chat hands over what it wrote from (the user's turn, the
prompt's tokens, the settings), and this writes once more from it with `state.random_init`.
"""
import gradio as gr

from demo.api import DemoApi
from demo.gpu import on_gpu
from model.serving.sequence import stream
from model.serving.text import stream_text

RANDOM_AT_ONCE = 1  # random-weights texts written at once, beside the chat's own generations: bounded extra load


def random_weights_chat(api: DemoApi) -> gr.Chatbot:
    """The second column, hidden until the student asks for it."""
    label = ("The same GPT, other random weights (both random)" if api.state.fallback_reason
             else "The same GPT, random weights")
    return gr.Chatbot(label=label, height=440, render_markdown=False, feedback_options=None, buttons=["copy"],
                      visible=False, elem_id="random-chat")


def write_beside(api: DemoApi, chat_runs: list, asked: gr.State, wanted: gr.Checkbox,
                 random_chat: gr.Chatbot) -> list:
    """After each chat turn, if `wanted` is ticked, write the same turn with random weights into `random_chat`.

    asked: the chat's last (user turn, Prompt, SamplingSettings). Returns the events, for Stop to cancel.
    """
    def write(asked, wanted, history):
        if not wanted or asked is None:
            yield gr.skip()
            return
        turn, prompt, settings = asked
        history = [*history, turn]
        text = ""
        yield [*history, {"role": "assistant", "content": "…"}]
        for piece in stream_text(stream(api.state.random_init, prompt.ids, settings)):
            text += piece
            yield [*history, {"role": "assistant", "content": "…" + text}]

    wanted.change(lambda on: gr.Chatbot(visible=on), wanted, random_chat, api_visibility="private", queue=False)
    return [run.success(on_gpu(write), [asked, wanted, random_chat], random_chat, api_visibility="private",
                        concurrency_id="random_weights", concurrency_limit=RANDOM_AT_ONCE)
            for run in chat_runs]
