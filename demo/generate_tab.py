"""The Generate tab: a chat in which our GPT continues what the student types."""
import secrets

import gradio as gr

from demo.api import MAX_NEW_TOKENS, DemoApi
from demo.gpu import on_gpu
from demo.random_weights import random_weights_chat, write_beside
from demo.views import LESSON_PROMPTS
from model.serving.text import Prompt
from model.tokenizer import decode

SEEDS = 2**32  # a randomized seed is below this: short enough to read out and type back


def generate_tab(api: DemoApi, generations: int):
    """The chat: a prompt in, the continuation streamed into the answer below it; the settings beside it."""
    gibberish = " — random weights: expect gibberish" if api.state.fallback_reason else ""
    with gr.Row():
        with gr.Column(scale=3):
            with gr.Row():
                chatbot = gr.Chatbot(label=f"Our GPT continues your text{gibberish}", height=440,
                                     render_markdown=False, feedback_options=None, buttons=["copy"], elem_id="chat")
                random_chat = random_weights_chat(api)
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
            also_random = gr.Checkbox(False, label="also write with random weights", elem_id="also-random",
                                      info="the same GPT class, untrained, beside it")
            gr.ClearButton([chatbot, prompt, random_chat], value="Clear the chat")
    asked = gr.State()  # the chat's last (user turn, prompt, settings): what the random weights write from

    def chat(text, history, max_new_tokens, temperature, top_k, top_p, seed, randomize):
        """A user turn with the prompt, then the continuation growing in the answer below it."""
        seed = secrets.randbelow(SEEDS) if randomize else seed
        prepared, settings = api.prepare(text, max_new_tokens, temperature, top_k, top_p, seed)
        history = [*history, {"role": "user", "content": _as_shown(prepared)}]
        handed = (history[-1], prepared, settings)  # for the random weights to write the same turn
        for continuation in api.continuation(prepared, settings):
            yield [*history, {"role": "assistant", "content": "…" + continuation}], seed, "", handed

    inputs = [prompt, chatbot, max_new_tokens, temperature, top_k, top_p, seed, randomize]
    runs = [trigger(on_gpu(chat), inputs, [chatbot, seed, prompt, asked], api_visibility="private",
                    concurrency_id="generate", concurrency_limit=generations)
            for trigger in (send.click, prompt.submit)]
    beside = write_beside(api, runs, asked, also_random, random_chat)
    stop.click(None, cancels=runs + beside)  # the generator is no longer pulled: the model stops after the token in hand


def _as_shown(prompt: Prompt) -> str:
    """The prompt as the chat shows it: what the model read, so a cropped one starts with an ellipsis."""
    return "…" + decode(prompt.ids) if prompt.dropped_tokens else prompt.text
