"""python -m model.verify: the proof that our GPT computes GPT-2's function, as a table or as JSON.

    python -m model.verify --model gpt2
    python -m model.verify --model gpt2 --bug not_transposed --json
"""
import argparse
import json
import sys

from model.cli import add_model_arguments, exit_status
from model.loading.mistakes import DEMONSTRATIONS
from model.loading.reference import load_reference
from model.proof.text import format_report
from model.proof.verify import DEFAULT_PROMPT, verify


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m model.verify",
        description="Load GPT-2 weights into the course's GPT and prove it computes what transformers computes.",
        epilog="Exit status: 0 verified (and the mistake, if any, caught); 1 not verified; 2 bad arguments or "
               "weights that cannot be loaded.")
    add_model_arguments(parser)
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    parser.add_argument("--bug", choices=DEMONSTRATIONS, metavar="MISTAKE",
                        help=f"also load the weights wrongly on purpose, as this mistake of the catalogue: "
                             f"{', '.join(DEMONSTRATIONS)}")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)

    def run() -> int:
        report = verify(load_reference(args.model, args.device, args.allow_pickle), args.prompt, args.bug).to_dict()
        print(json.dumps(report, indent=2) if args.json else format_report(report))
        return 0 if report["verified"] else 1

    return exit_status(run)


if __name__ == "__main__":
    sys.exit(main())
