"""python -m demo: load the model once, verify it, build the app, serve it.

    python -m demo                                  # gpt2, on the best device, at http://127.0.0.1:7860
    python -m demo --model ./gpt2-local --device cpu --dtype bfloat16
"""
import argparse
import sys

from demo.app import build_app, launch
from demo.state import load_state
from model.weights import DTYPES, ModelLoadError


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m demo",
        description="The classroom app: our GPT with OpenAI's GPT-2 weights, a Generate and a Verify tab.",
        epilog="GRADIO_SERVER_NAME and GRADIO_SERVER_PORT are honoured when --host and --port are not given.")
    parser.add_argument("--model", default="gpt2", help="hub id (gpt2, gpt2-medium, ...) or a save_pretrained folder")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                        help="auto picks cuda, then mps, then cpu")
    parser.add_argument("--dtype", default="float32", choices=list(DTYPES),
                        help="for generation; verification always runs in float32")
    parser.add_argument("--host", help="address to bind (default 127.0.0.1; 0.0.0.0 serves the network)")
    parser.add_argument("--port", type=int, help="port to listen on (default 7860, or the next free one)")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    parser.add_argument("--allow-pickle", action="store_true", help="also accept a pytorch_model.bin checkpoint")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    print(f"loading {args.model} and verifying it ...", file=sys.stderr)
    try:
        state = load_state(args.model, args.device, args.dtype, args.allow_pickle)
    except (ModelLoadError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if state.fallback_reason:
        print(f"warning: {state.fallback_reason}\nwarning: running on random weights of {args.model}'s shape: "
              f"verification works, the text is gibberish", file=sys.stderr)
    # None lets Gradio read GRADIO_SERVER_NAME / GRADIO_SERVER_PORT, then fall back to 127.0.0.1:7860.
    try:
        launch(build_app(state), server_name=args.host, server_port=args.port, share=args.share)
    except OSError as error:  # Gradio's own message would point at launch()'s parameters
        print(f"error: cannot serve the app ({str(error).split('. ')[0]}): is it already running? "
              f"Choose another --port, or a --host this machine has", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
