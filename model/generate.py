"""Text in, text out: the prompt's tokens, the student GPT's stream, and `python -m model.generate`.

    python -m model.generate --model gpt2 --prompt "The meaning of life is" --seed 1
"""
import argparse
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from model.cli import add_model_arguments, exit_status
from model.engine import Engine
from model.fast import DTYPES, load_student
from model.gpt import GPT
from model.reference import load_reference
from model.sampling import SamplingSettings
from model.tokenizer import EOT_TOKEN, TextStream, encode

MAX_NEW_TOKENS = 4096


@dataclass(frozen=True)
class Prompt:
    text: str
    ids: list[int]  # the tokens the model reads
    dropped_tokens: int = 0  # tokens cropped from the left because the context is too short

    @property
    def notice(self) -> str | None:
        if not self.dropped_tokens:
            return None
        return (f"The prompt is longer than the model's context: its first {self.dropped_tokens} "
                f"tokens were dropped and the last {len(self.ids)} kept.")


def prepare_prompt(model: GPT, text: str, max_new_tokens: int) -> Prompt:
    """Tokenize and, if the prompt does not fit the context, keep its end."""
    ids = encode(text) or [EOT_TOKEN]  # no text: start from <|endoftext|>, as GPT-2's own samples do
    kept = model.context_window(ids, max_new_tokens)
    return Prompt(text, kept, len(ids) - len(kept))


def stream_text(writer: GPT | Engine, prompt: Prompt, settings: SamplingSettings) -> Iterator[str]:
    """Pieces of the continuation, each as soon as it is whole text (never half a character).

    writer: the model itself, or the classroom engine that writes with it beside other requests.
    """
    text = TextStream()
    for token in writer.stream(prompt.ids, settings):
        if piece := text.push(token):
            yield piece
    if tail := text.flush():
        yield tail


def complete(model: GPT, text: str, settings: SamplingSettings) -> str:
    """The whole continuation at once: what stream_text's pieces add up to."""
    return "".join(stream_text(model, prepare_prompt(model, text, settings.max_new_tokens), settings))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m model.generate",
                                     description="Stream a continuation written by the course's GPT "
                                                 "with GPT-2 weights.")
    add_model_arguments(parser)
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--max-new-tokens", type=int, default=100)
    parser.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    parser.add_argument("--top-k", type=int, default=50, help="0 = keep every token")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", default="float32", choices=list(DTYPES))
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    return exit_status(lambda: write(args))


def write(args) -> int:
    """Load the model the arguments name and stream its continuation to stdout."""
    settings = SamplingSettings(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                top_k=args.top_k or None, top_p=args.top_p, seed=args.seed)
    reference = load_reference(args.model, args.device, args.allow_pickle)
    settings.validated(vocab_size=reference.config.vocab_size, max_new_tokens_limit=MAX_NEW_TOKENS)
    model = load_student(reference, dtype=args.dtype)
    prompt = prepare_prompt(model, args.prompt, settings.max_new_tokens)
    if prompt.notice:
        print(f"note: {prompt.notice}", file=sys.stderr)
    sys.stdout.write(args.prompt)
    for piece in stream_text(model, prompt, settings):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    sys.exit(main())
