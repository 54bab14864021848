"""Check your own GPT: your code, your names, your loader, proven against GPT-2 or the mistake named.

In a notebook, with the model you built:

    from model.check import check
    check(model, reference="gpt2")                     # this check loads GPT-2's weights into it
    check(model, reference="gpt2", loader=load_hf)     # your loader does, and every tensor it put is audited

From a terminal, with your file or notebook (only what defines things runs; the rest is listed):

    python -m model.check my_gpt.py --model gpt2
    python -m model.check lesson.ipynb --loader load_weights_into_gpt --json
    python -m model.check my_gpt.py --submit https://<the-teacher's-space>.hf.space   # to the class board

Exit status: 0 your GPT computes GPT-2's function; 1 it does not (the mistakes named); 2 it cannot be
checked (the file does not run, no model class is found, the build, the loader or the forward raises).
Your code runs here, on your machine only.
"""
import argparse
import inspect
import json
import os
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from model.cli import add_model_arguments, exit_status
from model.loading.mapping import load_weights
from model.loading.reference import load_reference
from model.memory import release_freed_memory
from model.proof.board import board_logits, weights_fingerprint
from model.proof.check_report import CheckReport
from model.proof.diagnosis import (
    Diagnosis,
    Variants,
    component_diagnoses,
    fingerprint,
    logits_diagnosis,
    tensor_diagnoses,
)
from model.proof.evidence import forward_greedy, prove, reference_greedy
from model.proof.structure import CannotCheck, map_by_structure
from model.proof.student_code import build_model, read_student_code
from model.proof.tolerance import TOLERANCE
from model.proof.verify import DEFAULT_PROMPT
from model.serving.sequence import context_window
from model.tokenizer import decode, encode

GREEDY_TOKENS = 32  # what each model writes after the prompt: the payoff, and the greedy tokens compared
# Where this machine keeps the id it submits to a class board under, so a student's latest submission replaces their
# earlier one: GPT2_CLASS_HOME, else ~/.cache/gpt2-class.
HOME_VARIABLE = "GPT2_CLASS_HOME"
STATE_DICT_NAMES = ("sd", "state", "dict", "params", "weights")  # a loader's second parameter named so takes one


def say(line: str):
    """A line of progress, on stderr: stdout is the report's."""
    print(f"checking: {line}", file=sys.stderr, flush=True)


def check(model: nn.Module, reference="gpt2", loader: Callable | None = None, prompt: str = DEFAULT_PROMPT,
          submit: str | None = None, progress: Callable[[str], None] = say) -> CheckReport:
    """Check `model`, your GPT, against GPT-2: `reference` is a hub id, a save_pretrained folder, or a
    transformers GPT2LMHeadModel. With `loader`, your own function, called as loader(model, reference) (or
    with reference.state_dict() when its second parameter is named like one), audited tensor by tensor;
    without it, the check loads GPT-2's weights into your model through the mapping it finds.
    submit: the address of the class's app: your model's logits on its board question go to its class board,
    and the app's verdict comes back in the report (`board`).

    Raises CannotCheck (or ModelLoadError for the reference) with a message that says what to do.
    """
    device = next(model.parameters()).device
    if isinstance(reference, str):
        progress(f"loading GPT-2 ({reference})…")
        name, reference = reference, load_reference(reference, str(device))
    else:
        name = getattr(reference, "name_or_path", None) or "the GPT2LMHeadModel given"
    report = _check(model, reference, name, loader, prompt, progress, source="your model")
    if submit is not None:
        report.board = submit_to_board(model, reference, submit, progress)
    return report


def _check(model: nn.Module, reference, reference_name: str, loader: Callable | None, prompt: str,
           progress: Callable[[str], None], source: str, built: str | None = None,
           skipped: list | None = None) -> CheckReport:
    progress("mapping your parameters to GPT-2's by their structure…")
    mapping = map_by_structure(model, reference)
    report = CheckReport(source=source, built=built, reference=reference_name, prompt=prompt,
                         loader=getattr(loader, "__name__", None) if loader else None, tolerance=dict(TOLERANCE),
                         skipped=skipped or [], problems=mapping.problems, missing=mapping.missing,
                         keys={"student": [[n, list(p.shape)] for n, p in model.named_parameters(remove_duplicate=False)],
                               "reference": [[n, list(t.shape)] for n, t in reference.state_dict().items()]})
    if mapping.problems:
        report.mapping = [row.to_dict("student", "student_shape") for row in mapping.rows]
        report.diagnoses = [Diagnosis("cannot_hold", mapping.problems).to_dict()]
        return report
    training = model.training
    model.eval()
    try:
        before = _load(model, reference, mapping.rows, loader, progress)
        if not encode(prompt):
            raise CannotCheck("the prompt is empty: give the check a few words for both models to continue")
        ids = context_window(encode(prompt), GREEDY_TOKENS, reference.config.n_positions)
        progress(f"GPT-2 writes {GREEDY_TOKENS} tokens greedily, and your model after it, with its own forward…")
        theirs = reference_greedy(reference, ids, GREEDY_TOKENS)
        tokens = _theirs(lambda: forward_greedy(model, ids, GREEDY_TOKENS), "your forward")
        progress("every tensor, every component fed GPT-2's own input, every block, the logits…")
        proof = _theirs(lambda: prove(model, reference, mapping.rows, ids, theirs, tokens), "your forward")
        progress("naming what differs…")
        report.diagnoses = [diagnosis.to_dict() for diagnosis in _diagnoses(model, reference, ids, proof, before)]
    finally:
        model.train(training)
    report.mapping = [row.to_dict("student", "student_shape") for row in proof.mapping]
    report.components = [component.to_dict() for component in proof.components]
    report.layer_names, report.layer_max_abs_diff = proof.layer_names, proof.layer_max_abs_diff
    report.layers_close, report.last_position_only = proof.layers_close, proof.last_position_only
    report.max_abs_logit_diff, report.allclose = proof.max_abs_logit_diff, proof.allclose
    report.greedy_tokens, report.greedy_tokens_agree = GREEDY_TOKENS, proof.greedy_tokens_agree
    report.text = {"student": decode(tokens), "reference": decode(theirs)}
    if not report.verified and all(diagnosis["note"] for diagnosis in report.diagnoses):
        report.diagnoses.insert(0, _first_difference(report).to_dict())
    return report


def _load(model, reference, rows, loader: Callable | None, progress) -> dict | None:
    """GPT-2's weights into the model: by the student's loader (returning each parameter's fingerprint from
    before it ran), or by the mapping found (None)."""
    if loader is None:
        progress("loading GPT-2's weights into your model through the mapping found…")
        load_weights(model, reference, rows)
        return None
    progress(f"running your loader, {loader.__name__}…")
    before = {name: fingerprint(p) for name, p in model.named_parameters(remove_duplicate=False)}
    reference_before = {name: fingerprint(t) for name, t in reference.state_dict().items()}
    second = list(inspect.signature(loader).parameters)[1:2]
    wants_state_dict = bool(second) and any(word in second[0].lower() for word in STATE_DICT_NAMES)
    _theirs(lambda: loader(model, reference.state_dict() if wants_state_dict else reference), f"your loader {loader.__name__}")
    changed = [name for name, t in reference.state_dict().items() if not torch.equal(fingerprint(t), reference_before[name])]
    if changed:
        raise CannotCheck(f"your loader {loader.__name__} changed GPT-2's own tensors ({', '.join(changed[:3])}"
                          f"{' ...' if len(changed) > 3 else ''}): copy from them (param.copy_(...), .clone()) instead "
                          f"of changing them in place, then check again")
    return before


def _theirs(run: Callable, whose: str):
    """run(), which runs the student's code: whatever it raises becomes one line that says whose it was."""
    try:
        return run()
    except CannotCheck:
        raise
    except Exception as error:  # noqa: BLE001 - their code: one readable line, not our traceback
        raise CannotCheck(f"{whose} raised {type(error).__name__}: {error}") from None


def _diagnoses(model, reference, ids: list[int], proof, before) -> list[Diagnosis]:
    """The tensors' first (the root cause), then what each component computes, then the logits."""
    found = tensor_diagnoses(model, reference, proof.mapping, before)
    explained = {where for diagnosis in found if not diagnosis.note for where in diagnosis.where}
    variants = Variants(reference, ids, proof)
    components = component_diagnoses(proof, variants, explained)
    found += components
    if not any(not diagnosis.note for diagnosis in found):
        diagnosis = logits_diagnosis(proof, variants)
        if diagnosis is not None:
            found.append(diagnosis)
    return sorted(found, key=lambda diagnosis: diagnosis.note)  # the failures first, a note after them


def submit_to_board(model: nn.Module, reference, url: str, progress: Callable[[str], None] = say) -> dict:
    """Send the class board at `url` the model's logits on its question; the app's verdict (it judges them itself)."""
    from gradio_client import Client  # the app's own client: only a submission needs it

    progress(f"asking the class board at {url} for its question…")
    try:
        board = Client(url, verbose=False, analytics_enabled=False)
        question = board.predict(api_name="/board_question")
        logits = _theirs(lambda: board_logits(model, question), "your forward")
        progress("submitting your model's logits…")
        return board.predict(board_id(), logits, weights_fingerprint(reference), api_name="/submit_logits")
    except CannotCheck:
        raise
    except Exception as error:  # noqa: BLE001 - an address that is not the app, a network gone, the app's refusal
        raise CannotCheck(f"the class board at {url} did not take the submission: {error}") from None


def board_id() -> str:
    """This machine's id on a class board (made once, kept): a later submission replaces the earlier one."""
    home = Path(os.environ.get(HOME_VARIABLE) or Path.home() / ".cache" / "gpt2-class")
    path = home / "board-id"
    if not path.is_file():
        home.mkdir(parents=True, exist_ok=True)
        path.write_text(uuid.uuid4().hex)
    return path.read_text().strip()


def _first_difference(report: CheckReport) -> Diagnosis:
    """Where a check that named nothing first differs, and by how much."""
    wrong = next((component for component in report.components if component["ok"] is False), None)
    if wrong is not None:
        return Diagnosis("unknown", [wrong["module"] or wrong["name"]], {"max_abs_diff_to_gpt2": wrong["max_abs_diff"]})
    return Diagnosis("unknown", ["the greedy tokens"], {"tokens_agree": report.greedy_tokens_agree})


# --- python -m model.check --------------------------------------------------------------------------

def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m model.check",
        description="Check your own GPT against GPT-2: your file or notebook, your names, your loader.",
        epilog="Exit status: 0 your GPT computes GPT-2's function; 1 it does not (the mistakes named); 2 it cannot "
               "be checked (the file does not run, no model class, the build, the loader or the forward raises).")
    parser.add_argument("path", help="your .py file or .ipynb notebook")
    add_model_arguments(parser)
    parser.add_argument("--build", metavar="EXPRESSION", help='how to build your model, in your file\'s terms: '
                                                              '"GPTModel(GPT_CONFIG_124M)"')
    parser.add_argument("--class", dest="class_name", metavar="NAME", help="your model's class, if the file has several")
    parser.add_argument("--loader", metavar="NAME", help="your function that loads GPT-2's weights: "
                                                         "NAME(model, reference) or NAME(model, state_dict)")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--submit", metavar="URL", help="also send your model's logits to the class board of the app "
                                                        "at URL, and print its verdict")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    return exit_status(lambda: run(args))


def run(args) -> int:
    say(f"reading {args.path}…")
    code = read_student_code(args.path)
    say(f"loading GPT-2 ({args.model})…")
    reference = load_reference(args.model, args.device, args.allow_pickle)
    say("building your model…")
    built = build_model(code, reference.config, args.build, args.class_name)
    release_freed_memory()  # what building the model made and dropped: its initialisation's temporaries
    loader = None
    if args.loader is not None:
        loader = code.namespace.get(args.loader)
        if not callable(loader):
            functions = [name for name, value in code.namespace.items() if inspect.isfunction(value)
                         and value.__module__ == code.namespace["__name__"]]
            raise CannotCheck(f"no function {args.loader!r} in {code.path.name}: its functions are "
                              f"{', '.join(functions) or 'none'}")
    model = built.model.to(reference.device)
    report = _check(model, reference, args.model, loader, args.prompt, say, source=code.path.name, built=built.how,
                    skipped=code.skipped)
    if args.submit is not None:
        report.board = submit_to_board(model, reference, args.submit)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report)
    return 0 if report.verified else 1


if __name__ == "__main__":
    sys.exit(main())
