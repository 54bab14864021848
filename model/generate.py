"""python -m model.generate: our GPT with GPT-2's weights continues a prompt, streamed to the terminal.

    python -m model.generate --model gpt2 --prompt "The meaning of life is" --seed 1
"""
import argparse
import sys

import torch

from model.cli import add_model_arguments, exit_status
from model.loading.reference import load_reference, resolve_device
from model.sampling import SamplingSettings
from model.serving.sequence import stream
from model.serving.text import prepare_prompt, stream_text
from model.serving.writer import DTYPES, check_dtype, load_writer

MAX_NEW_TOKENS = 4096


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
    check_dtype(args.dtype, resolve_device(args.device))  # before a download
    reference = load_reference(args.model, args.device, args.allow_pickle)
    settings.validated(vocab_size=reference.config.vocab_size, max_new_tokens_limit=MAX_NEW_TOKENS)
    writer = load_writer(reference, dtype=args.dtype)
    prompt = prepare_prompt(writer, args.prompt, settings.max_new_tokens)
    if prompt.notice:
        print(f"note: {prompt.notice}", file=sys.stderr)
    sys.stdout.write(args.prompt)
    for piece in stream_text(stream(writer, prompt.ids, settings)):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    sys.exit(main())
