"""python -m demo: load the model once, verify it, build the app, serve it.

    python -m demo                                  # gpt2, on the best device, at http://127.0.0.1:7860
    python -m demo --model ./gpt2-local --device cpu --dtype bfloat16
    python demo/__main__.py                         # the same, the way a Hugging Face Space runs its app_file
"""
import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script (a Space's app_file): make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from demo.app import build_app  # noqa: E402 - after the path is set
from demo.server import launch  # noqa: E402
from demo.state import load_state  # noqa: E402
from model.cli import add_model_arguments, exit_status  # noqa: E402
from model.memory import limit_malloc_arenas  # noqa: E402
from model.serving.writer import DTYPES  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m demo",
        description="The classroom app: our GPT with OpenAI's GPT-2 weights, a Generate and a Verify tab.",
        epilog="GRADIO_SERVER_NAME and GRADIO_SERVER_PORT are honoured when --host and --port are not given.")
    add_model_arguments(parser)
    parser.add_argument("--dtype", default="float32", choices=list(DTYPES),
                        help="for generation; verification always runs in float32")
    parser.add_argument("--host", help="address to bind (default 127.0.0.1; 0.0.0.0 serves the network)")
    parser.add_argument("--port", type=int, help="port to listen on (default 7860, or the next free one)")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    limit_malloc_arenas()  # before the server's threads allocate: the app runs for weeks
    args = parse_args(argv)
    return exit_status(lambda: serve(args))


def serve(args) -> int:
    """Load and verify the model the arguments name, then serve the app until it is stopped."""
    print(f"loading {args.model} and verifying it ...", file=sys.stderr)
    state = load_state(args.model, args.device, args.dtype, args.allow_pickle, engine_thread=False)
    if state.fallback_reason:
        print(f"warning: {state.fallback_reason}\nwarning: running on random weights of {args.model}'s shape: "
              f"verification works, the text is gibberish", file=sys.stderr)
    # None lets Gradio read GRADIO_SERVER_NAME / GRADIO_SERVER_PORT, then fall back to 127.0.0.1:7860.
    try:
        launch(build_app(state), state.engine, server_name=args.host, server_port=args.port, share=args.share)
    except OSError as error:  # Gradio's own message would point at launch()'s parameters
        print(f"error: cannot serve the app ({str(error).split('. ')[0]}): is it already running? "
              f"Choose another --port, or a --host this machine has", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
