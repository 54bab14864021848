"""The proof: our GPT and transformers' GPT-2 compute the same function.

`verify` runs both models on the same prompt and fills a report (model/report.py): the parameters
line up (counts, names, shapes, tying) and every tensor holds the reference's values, the logits
match within a stated tolerance, every layer's residual stream matches, and the greedy tokens they
write are the same. Beside them, the same model in lower precision shows how far float noise can
reach. For a deliberate bug, the same checks show where the broken load goes wrong, or the
mapping's refusal to load it. `Reports` is the same for an app: each report made once and kept.

    python -m model.verify --model gpt2 --bug skip_transpose_square
"""
import argparse
import copy
import json
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch

from model.bugs import BUGS, check_bug
from model.cli import add_model_arguments, exit_status
from model.fast import load_student
from model.generate import complete
from model.gpt import GPT
from model.mapping import MappingRow, WeightMismatchError, audit, mapping_for
from model.reference import load_reference
from model.report import BrokenReport, VerificationReport, format_report
from model.sampling import SamplingSettings
from model.tokenizer import decode, encode

DEFAULT_PROMPT = "The meaning of life is"
# Float32 sums of hundreds of products, done in another order by another kernel, differ in the last
# bits; allclose passes when |ours - reference| <= atol + rtol * |reference| everywhere.
TOLERANCE = {"atol": 1e-4, "rtol": 1e-5}
LESSON_ATOL = 1e-5  # the lesson's torch.allclose(..., atol=1e-5): reported, not required
# A loose tolerance, the kind that calls any small difference "floating-point noise": it passes
# exact_gelu's near miss. Like the lesson's, it keeps torch's default rtol, which is the project's.
LOOSE_ATOL = 1e-3
TOP_K = 5
GREEDY_TOKENS = 16
TEXT_SETTINGS = SamplingSettings(max_new_tokens=24, temperature=0.8, top_k=50, seed=0, stop_at_eot=False)
# What a report computes, in order, the broken load's stages only with a bug: for a progress bar, and for a
# caller that lets more urgent work go first between them. Each takes one decoding loop at most.
CORRECT_STAGES = {
    "compare": "our GPT and transformers' GPT-2 on the prompt, tensor by tensor and layer by layer",
    "their_greedy": "transformers' own greedy tokens",
    "our_greedy": "our GPT's greedy tokens",
    "precision": "our GPT in lower precision",
}
BROKEN_STAGES = {
    "correct_text": "the correct load's text",
    "broken": "the broken load, checked the same way",
    "broken_text": "the broken load's text",
}


# --- the checks ----------------------------------------------------------------------------------

def naive_load_outcome(mapping: list[MappingRow], reference_shapes: dict | None = None) -> dict:
    """What `our_model.load_state_dict(reference.state_dict())` would report, key by key.

    reference_shapes: {name: shape} of the reference's whole state dict, matched by name as torch
    does; without it, only the tensors the mapping reads are known (none can be unexpected).
    For GPT-2 our names are the checkpoint's, so no key is missing or unexpected; every non-square
    Conv1D weight is refused for its shape, and the square ones are accepted, un-transposed and wrong.
    """
    if reference_shapes is None:
        reference_shapes = {row.ours: row.reference_shape for row in mapping if row.reference_shape}
    theirs = {name: tuple(shape) for name, shape in reference_shapes.items()}
    ours = {row.ours: tuple(row.our_shape) for row in mapping}
    transposed = {row.ours for row in mapping if row.op == "transpose"}
    both = [name for name in ours if name in theirs]
    return {
        "missing_keys": sorted(ours.keys() - theirs.keys()),
        "unexpected_keys": sorted(theirs.keys() - ours.keys()),
        "shape_mismatches": [{"key": name, "ours": list(ours[name]), "reference": list(theirs[name])}
                             for name in both if ours[name] != theirs[name]],
        "silently_accepted": [name for name in both if name in transposed and ours[name] == theirs[name]],
    }


@torch.inference_mode()
def _forward(model: GPT, idx: torch.Tensor):
    """Our model's logits and residual stream after the embeddings and after every block."""
    hidden: list[torch.Tensor] = []
    logits = model(idx, hidden_states=hidden)
    # transformers hands back the last block's output after the final LayerNorm: do the same.
    hidden[-1] = model.transformer.ln_f(hidden[-1])
    return logits, hidden


@torch.inference_mode()
def _forward_reference(reference, idx: torch.Tensor):
    out = reference(idx, output_hidden_states=True)
    return out.logits, out.hidden_states


def atol_needed(ours: torch.Tensor, reference: torch.Tensor) -> float:
    """The smallest atol at which torch.allclose(ours, reference, atol, rtol=TOLERANCE's rtol) holds.

    allclose asks |ours - reference| <= atol + rtol * |reference| everywhere; rtol forgives a little
    more where the logits are large, so this is at most the max abs difference, and near it for
    logits of a few units.
    """
    excess = (ours.float() - reference).abs() - TOLERANCE["rtol"] * reference.abs()
    return max(excess.max().item(), 0.0)


def _layer_diffs(ours_hidden, reference_hidden) -> tuple[list[float], list[bool]]:
    diffs = [(a - b).abs().max().item() for a, b in zip(ours_hidden, reference_hidden)]
    close = [torch.allclose(a, b, **TOLERANCE) for a, b in zip(ours_hidden, reference_hidden)]
    return diffs, close


def _likeliest(logits) -> list[int]:
    """The TOP_K likeliest next tokens after the last position."""
    return logits[0, -1].topk(TOP_K).indices.tolist()


def _top_k(tokens: list[int], reference_logits, **ours) -> list[dict]:
    """The probability each model (the reference, and each of `ours` by name) gives each next token."""
    probabilities = {f"p_{name}": torch.softmax(logits[0, -1].float(), dim=-1)
                     for name, logits in {**ours, "reference": reference_logits}.items()}
    return [{"token": t, "text": decode([t]), **{key: p[t].item() for key, p in probabilities.items()}}
            for t in tokens]


@torch.inference_mode()
def reference_greedy(reference, ids: list[int], n: int) -> list[int]:
    """The n tokens transformers' own `generate` writes greedily after `ids`, never stopping early."""
    idx = torch.tensor([ids], device=reference.device)
    return reference.generate(idx, attention_mask=torch.ones_like(idx), do_sample=False, max_new_tokens=n,
                              eos_token_id=None, pad_token_id=0)[0, len(ids):].tolist()


def _agreement(ours: list[int], theirs: list[int]) -> int:
    """How many tokens agree, counted up to the first disagreement."""
    return next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))


@torch.inference_mode()
def _teacher_forced(model: GPT, ids: list[int], theirs: list[int]) -> tuple[torch.Tensor, int]:
    """The model's logits on the prompt, and how many of the reference's greedy tokens it writes too.

    One forward pass over the prompt and the reference's greedy tokens: up to the first token the
    model would pick otherwise, it reads exactly what it would read writing greedily itself, so
    its choices there are its greedy tokens, without a decoding step per token.
    """
    logits = model(torch.tensor([ids + theirs[:-1]], device=model.transformer.wte.weight.device)).float()
    return logits[:, :len(ids)], _agreement(logits[0, len(ids) - 1:].argmax(-1).tolist(), theirs)


# The lower precisions a report measures, by device type. float16 is for GPUs (model.fast refuses it on a
# CPU); a Mac's GPU runs bfloat16 only from macOS 14, so there float16 alone.
PRECISIONS = {"cpu": ["bfloat16"], "cuda": ["bfloat16", "float16"], "mps": ["float16"]}


def precision_dtypes(device: torch.device) -> list[str]:
    return PRECISIONS.get(device.type, ["bfloat16"])


def _precision_row(dtype: str, logits, reference_logits, greedy_tokens_agree: int) -> dict:
    return {"dtype": dtype, "max_abs_logit_diff": (logits - reference_logits).abs().max().item(),
            "allclose": torch.allclose(logits, reference_logits, **TOLERANCE),
            "atol_needed": atol_needed(logits, reference_logits), "greedy_tokens_agree": greedy_tokens_agree}


def _lower_precision_rows(reference, models: dict[str, GPT], ids, reference_logits, theirs) -> list[dict]:
    """Our model in each lower precision against the float32 reference: how far rounding alone reaches.

    models: copies already loaded, by dtype (the app's writing model); any other is made for this
    report and dropped after it.
    """
    rows = []
    for dtype in precision_dtypes(reference.device):
        model = models[dtype] if dtype in models else load_student(reference, dtype)
        logits, agree = _teacher_forced(model, ids, theirs)
        rows.append(_precision_row(dtype, logits, reference_logits, agree))
    return rows


def verify(reference, prompt: str = DEFAULT_PROMPT, bug: str | None = None, student: GPT | None = None,
           greedy_tokens: int = GREEDY_TOKENS, lower_precision: dict[str, GPT] | None = None) -> VerificationReport:
    """Check our GPT, loaded from `reference`, against it on `prompt`; with `bug`, a broken load too.

    The checks, in order, are in `Reports._report`; this makes one report and keeps nothing.

    student: an already loaded correct model to reuse (the app keeps one); built here if None.
    lower_precision: correct models in bfloat16 or float16 to reuse, by dtype (the app's writing
        model may be one); those not given are made for the precision rows and dropped after.
    """
    return Reports(reference, student, lower_precision, greedy_tokens, kept=0).get(prompt, bug)


@dataclass
class _Writing:
    """What the correct load writes after one prompt: the same for every bug's report on it, and the costliest
    part of a report (a decoding loop each)."""
    theirs: list[int]  # transformers' own greedy tokens
    ours: list[int]  # our model's greedy tokens
    lower_precision: list[dict]  # the precision rows below float32, scored on `theirs`


class _Kept(OrderedDict):
    """The last `most` values made, by key; the one used least recently is dropped first."""

    def __init__(self, most: int):
        super().__init__()
        self.most = most

    def get_or_make(self, key, make):
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = self[key] = make()
        while len(self) > self.most:
            self.popitem(last=False)
        return value


class Reports:
    """verify() for an app that many people ask: each report made once, and the last `kept` kept.

    A report depends only on the two models, the prompt and the bug, and a class asks the same question many
    times. What the correct load writes after a prompt is shared by every bug's report on it.
    """

    def __init__(self, reference, student: GPT | None = None, lower_precision: dict[str, GPT] | None = None,
                 greedy_tokens: int = GREEDY_TOKENS, kept: int = 64):
        self.reference = reference
        self.student = student if student is not None else GPT.from_hf(reference)
        self.lower_precision = lower_precision or {}
        n_positions = self.student.config.n_positions
        if not 0 < greedy_tokens <= n_positions // 2:
            raise ValueError(f"greedy_tokens must be from 1 to {n_positions // 2}, got {greedy_tokens}")
        self.greedy_tokens = greedy_tokens
        self._reports, self._writing, self._texts = _Kept(kept), _Kept(kept), _Kept(kept)
        self._lock = threading.Lock()  # one report at a time: a second asker of the same one waits for it

    def get(self, prompt: str = DEFAULT_PROMPT, bug: str | None = None,
            before_stage: Callable[[int, int, str], None] | None = None) -> VerificationReport:
        """The report on `prompt`, with `bug` if given: a copy, for the caller to keep or change.

        before_stage(done, total, description): called before each stage this report computes (none when the
        report is kept), with how many of its stages are done.
        """
        check_bug(bug)
        stages = {**CORRECT_STAGES, **(BROKEN_STAGES if bug is not None else {})}

        def stage(name: str):
            if before_stage is not None:
                before_stage(list(stages).index(name), len(stages), stages[name])

        with self._lock:
            return copy.deepcopy(self._reports.get_or_make((prompt, bug), lambda: self._report(prompt, bug, stage)))

    def _report(self, prompt: str, bug: str | None, stage: Callable[[str], None]) -> VerificationReport:
        reference, student, greedy_tokens = self.reference, self.student, self.greedy_tokens
        ids = encode(prompt)
        if not ids:
            raise ValueError("prompt is empty: verification needs at least one token of text")
        ids = student.context_window(ids, greedy_tokens)  # the reference cannot write past its context
        idx = torch.tensor([ids], device=reference.device)

        stage("compare")
        mapping = audit(student, reference)
        ours_logits, ours_hidden = _forward(student, idx)
        ref_logits, ref_hidden = _forward_reference(reference, idx)
        logit_diff = (ours_logits - ref_logits).abs()
        layer_diffs, layer_close = _layer_diffs(ours_hidden, ref_hidden)
        writing = self._writing.get_or_make(prompt, lambda: self._write(ids, ref_logits, stage))
        agree = _agreement(writing.ours, writing.theirs)
        report = VerificationReport(
            prompt=prompt, prompt_tokens=ids, device=str(reference.device),
            dtype=str(ours_logits.dtype).removeprefix("torch."),
            param_count_ours=student.num_parameters(),
            param_count_reference=sum(p.numel() for p in reference.parameters()),
            key_count_ours=len(student.state_dict()), key_count_reference=len(reference.state_dict()),
            tied=student.lm_head.weight is student.transformer.wte.weight,
            **naive_load_outcome(mapping, {name: t.shape for name, t in reference.state_dict().items()}),
            mapping=[row.to_dict() for row in mapping],
            max_abs_logit_diff=logit_diff.max().item(), mean_abs_logit_diff=logit_diff.mean().item(),
            tolerance=dict(TOLERANCE), allclose=torch.allclose(ours_logits, ref_logits, **TOLERANCE),
            lesson_atol=LESSON_ATOL, lesson_atol_holds=torch.allclose(ours_logits, ref_logits, atol=LESSON_ATOL),
            loose_atol=LOOSE_ATOL,
            precision=[_precision_row("float32", ours_logits, ref_logits, agree), *writing.lower_precision],
            layer_names=["embeddings"] + [f"block {i}" for i in range(len(ours_hidden) - 2)]
                        + [f"block {len(ours_hidden) - 2} + ln_f"],
            layer_max_abs_diff=layer_diffs, layers_allclose=all(layer_close),
            top_k=_top_k(_likeliest(ref_logits), ref_logits, ours=ours_logits),
            greedy_tokens=greedy_tokens, greedy_tokens_agree=agree, greedy_text=decode(writing.ours),
        )
        if bug is not None:
            text_correct = self._texts.get_or_make(prompt, lambda: self._correct_text(prompt, stage))
            stage("broken")
            report.broken = _verify_broken(reference, student, bug, prompt, ids, ours_logits, ref_logits, ref_hidden,
                                           writing.theirs, text_correct, stage)
        return report

    def _correct_text(self, prompt: str, stage: Callable[[str], None]) -> str:
        stage("correct_text")
        return complete(self.student, prompt, TEXT_SETTINGS)

    def _write(self, ids: list[int], ref_logits, stage: Callable[[str], None]) -> _Writing:
        stage("their_greedy")
        theirs = reference_greedy(self.reference, ids, self.greedy_tokens)
        stage("our_greedy")
        ours = self.student.generate(ids, SamplingSettings(max_new_tokens=self.greedy_tokens, temperature=0,
                                                           top_k=None, stop_at_eot=False))
        stage("precision")
        return _Writing(theirs, ours, _lower_precision_rows(self.reference, self.lower_precision, ids, ref_logits,
                                                            theirs))


def _verify_broken(reference, student, bug, prompt, ids, ours_logits, ref_logits, ref_hidden, theirs,
                   text_correct, stage: Callable[[str], None]) -> BrokenReport:
    """The broken load, checked like the correct one; a refused load has only the mapping's message."""
    info = BUGS[bug]
    broken = BrokenReport(bug=bug, summary=info.summary, explanation=info.explanation, silent=info.silent,
                          refused=False, text_correct=text_correct,
                          changed_rows=[row.to_dict() for row in mapping_for(student, reference, bug) if row.bug])
    try:
        model = GPT.from_hf(reference, bug)
    except WeightMismatchError as refusal:
        broken.refused, broken.refusal, broken.refused_keys = True, str(refusal), refusal.keys
        return broken
    broken.mapping = [row.to_dict() for row in audit(model, reference, bug)]
    broken.changed_rows = [row for row in broken.mapping if row["bug"]]
    logits, hidden = _forward(model, torch.tensor([ids], device=reference.device))
    broken.max_abs_logit_diff = (logits - ref_logits).abs().max().item()
    broken.allclose = torch.allclose(logits, ref_logits, **TOLERANCE)
    broken.atol_needed = atol_needed(logits, ref_logits)
    broken.layer_max_abs_diff, close = _layer_diffs(hidden, ref_hidden)
    broken.first_divergent_layer = next((i for i, ok in enumerate(close) if not ok), None)
    _, broken.greedy_tokens_agree = _teacher_forced(model, ids, theirs)
    # The reference's likeliest next tokens, then the broken load's own favourites: what it would say instead.
    tokens = list(dict.fromkeys(_likeliest(ref_logits) + _likeliest(logits)))
    broken.top_k = _top_k(tokens, ref_logits, correct=ours_logits, broken=logits)
    stage("broken_text")
    broken.text_broken = complete(model, prompt, TEXT_SETTINGS)
    return broken


# --- python -m model.verify ----------------------------------------------------------------------

def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m model.verify",
        description="Load GPT-2 weights into the course's GPT and prove it computes what transformers computes.",
        epilog="Exit status: 0 verified (and the bug, if any, caught); 1 not verified; 2 bad arguments or "
               "weights that cannot be loaded.")
    add_model_arguments(parser)
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    parser.add_argument("--bug", choices=list(BUGS), help="also load the weights wrongly on purpose, this way")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)

    def run() -> int:
        report = verify(load_reference(args.model, args.device, args.allow_pickle), args.prompt, args.bug)
        print(json.dumps(report.to_dict(), indent=2) if args.json else format_report(report))
        return 0 if report.verified else 1

    return exit_status(run)


if __name__ == "__main__":
    sys.exit(main())
