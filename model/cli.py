"""What the command lines share: how a model is named, and how a failure is reported.

`python -m model.verify`, `python -m model.generate`, `python -m model.check` and `python -m demo`
take the same model options and answer a model that cannot be loaded, or a setting out of range, the
same way: one `error:` line on stderr and exit status 2 (130 for Ctrl-C).
"""
import argparse
import sys
from collections.abc import Callable

from model.loading.reference import INTERRUPTED, ModelLoadError


def add_model_arguments(parser: argparse.ArgumentParser):
    """--model, --device and --allow-pickle, with the same meaning and defaults everywhere."""
    parser.add_argument("--model", default="gpt2", help="hub id (gpt2, gpt2-medium, ...) or a save_pretrained folder")
    parser.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps")
    parser.add_argument("--allow-pickle", action="store_true", help="also accept a pytorch_model.bin checkpoint")


def exit_status(run: Callable[[], int]) -> int:
    """run()'s exit status, or 2 with one line on stderr for weights that cannot be loaded or a bad setting,
    or 130 with one line for Ctrl-C (most likely during a first download on a slow link)."""
    try:
        return run()
    except (ModelLoadError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return 130
