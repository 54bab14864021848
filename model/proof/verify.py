"""The proof that our GPT and transformers' GPT-2 compute the same function.

`verify` runs the chain of evidence (model/proof/evidence.py) on our GPT, loaded from the reference
through the mapping table, and fills a report (model/proof/report.py): the parameters line up, every
tensor holds the reference's values, every component and every layer matches, the logits match within
the stated tolerance, and the greedy tokens are the same. Beside them, our GPT in lower precision shows
how far float noise alone can reach. For a mistake from the catalogue, the same chain shows where the
broken load goes wrong, or the mapping's refusal to load it.

Each step below is handed to `step(name, make)`, which by default just makes it: an app that serves a
class wraps it (to keep what it made, to let the class's writing go first), never the chain itself.
"""
from collections.abc import Callable

import torch

from model.gpt import GPT
from model.loading.mapping import (
    WeightMismatchError,
    load_gpt,
    mapping_for,
    named_table,
    naive_load_outcome,
)
from model.loading.mistakes import mistake_named
from model.proof.evidence import agreement, prove, reference_greedy
from model.proof.report import BrokenReport, VerificationReport
from model.proof.tolerance import LESSON_ATOL, LOOSE_ATOL, TOLERANCE, atol_needed, close
from model.sampling import SamplingSettings
from model.serving.sequence import context_window, write_greedily
from model.serving.text import complete
from model.serving.writer import in_dtype
from model.tokenizer import decode, encode

DEFAULT_PROMPT = "The meaning of life is"
TOP_K = 5
GREEDY_TOKENS = 16
TEXT_SETTINGS = SamplingSettings(max_new_tokens=24, temperature=0.8, top_k=50, seed=0, stop_at_eot=False)
# The steps of a report, in order: what each computes. Those of the broken load come only with a mistake.
# The correct load's writing (greedy tokens, precision rows, text) depends on the prompt alone.
STEPS = {
    "their_greedy": "transformers' own greedy tokens",
    "our_greedy": "our GPT's greedy tokens",
    "compare": "our GPT and transformers' GPT-2 on the prompt, tensor by tensor, component by component",
    "precision": "our GPT in lower precision",
    "correct_text": "the correct load's text",
    "broken": "the broken load, checked the same way",
    "broken_text": "the broken load's text",
}
CORRECT_STEPS = ["their_greedy", "our_greedy", "compare", "precision"]
BROKEN_STEPS = ["correct_text", "broken", "broken_text"]
# The lower precisions a report measures, by device type. float16 is for GPUs; a Mac's GPU runs bfloat16
# only from macOS 14, so there float16 alone.
PRECISIONS = {"cpu": ["bfloat16"], "cuda": ["bfloat16", "float16"], "mps": ["float16"]}
Step = Callable[[str, Callable], object]


def make(name: str, making: Callable):
    """The plain step: make it now."""
    return making()


def verify(reference, prompt: str = DEFAULT_PROMPT, mistake: str | None = None, ours: GPT | None = None,
           greedy_tokens: int = GREEDY_TOKENS, lower_precision: dict[str, GPT] | None = None,
           step: Step = make) -> VerificationReport:
    """Check our GPT, loaded from `reference`, against it on `prompt`; with `mistake`, a broken load too.

    ours: our GPT already loaded correctly (an app keeps one); loaded here if None.
    lower_precision: our GPT in bfloat16 or float16 to reuse, by dtype (an app's writing model may be one);
        those not given are made for the precision rows and dropped after.
    step(name, make): how each step of STEPS is made (by default, now).
    """
    broken_mistake = mistake_named(mistake)
    ours = ours if ours is not None else load_gpt(reference)
    n_positions = reference.config.n_positions
    if not 0 < greedy_tokens <= n_positions // 2:
        raise ValueError(f"greedy_tokens must be from 1 to {n_positions // 2}, got {greedy_tokens}")
    ids = encode(prompt)
    if not ids:
        raise ValueError("prompt is empty: verification needs at least one token of text")
    ids = context_window(ids, greedy_tokens, n_positions)  # the reference cannot write past its context

    theirs = step("their_greedy", lambda: reference_greedy(reference, ids, greedy_tokens))
    written = step("our_greedy", lambda: write_greedily(ours, ids, greedy_tokens))
    mapping = named_table(ours, reference)
    proof = step("compare", lambda: prove(ours, reference, mapping, ids, theirs, written))
    precision = step("precision", lambda: _lower_precision_rows(reference, lower_precision or {}, ids,
                                                                proof.reference_run.logits, theirs))
    agree = proof.greedy_tokens_agree
    report = VerificationReport(
        prompt=prompt, prompt_tokens=ids, device=str(reference.device), dtype=str(proof.logits.dtype).removeprefix("torch."),
        param_count_ours=ours.num_parameters(), param_count_reference=sum(p.numel() for p in reference.parameters()),
        key_count_ours=len(ours.state_dict()), key_count_reference=len(reference.state_dict()),
        tied=ours.lm_head.weight is ours.transformer.wte.weight,
        **naive_load_outcome(mapping, {name: t.shape for name, t in reference.state_dict().items()}),
        mapping=[row.to_dict() for row in proof.mapping],
        components=[check.to_dict() for check in proof.components],
        max_abs_logit_diff=proof.max_abs_logit_diff, mean_abs_logit_diff=proof.mean_abs_logit_diff,
        tolerance=dict(TOLERANCE), allclose=proof.allclose, lesson_atol=LESSON_ATOL,
        lesson_atol_holds=proof.lesson_atol_holds, loose_atol=LOOSE_ATOL,
        precision=[_precision_row("float32", proof.logits, proof.reference_run.logits, agree), *precision],
        layer_names=proof.layer_names, layer_max_abs_diff=proof.layer_max_abs_diff,
        layers_allclose=proof.layers_allclose,
        top_k=_top_k(_likeliest(proof.reference_run.logits), proof.reference_run.logits, ours=proof.logits),
        greedy_tokens=greedy_tokens, greedy_tokens_agree=agree, greedy_text=decode(written),
    )
    if broken_mistake is not None:
        text_correct = step("correct_text", lambda: complete(ours, prompt, TEXT_SETTINGS))
        report.broken = step("broken", lambda: _verify_broken(reference, ours, broken_mistake, ids, theirs))
        report.broken.text_correct = text_correct
        if not report.broken.refused:
            report.broken.text_broken = step("broken_text", lambda: complete(load_gpt(reference, broken_mistake),
                                                                               prompt, TEXT_SETTINGS))
    return report


def _verify_broken(reference, ours: GPT, mistake, ids: list[int], theirs: list[int]) -> BrokenReport:
    """The broken load, checked like the correct one; a refused load has only the mapping's message."""
    broken = BrokenReport(bug=mistake.id, summary=mistake.summary, explanation=mistake.explanation,
                          silent=not mistake.refused, refused=False,
                          changed_rows=[row.to_dict() for row in mapping_for(ours, reference, mistake) if row.bug])
    try:
        model = load_gpt(reference, mistake)
    except WeightMismatchError as refusal:
        broken.refused, broken.refusal, broken.refused_keys = True, str(refusal), refusal.keys
        return broken
    proof = prove(model, reference, mapping_for(model, reference, mistake), ids, theirs,
                  write_greedily(model, ids, len(theirs)), correct=named_table(model, reference))
    broken.mapping = [row.to_dict() for row in proof.mapping]
    broken.changed_rows = [row for row in broken.mapping if row["bug"]]
    broken.components = [check.to_dict() for check in proof.components]
    broken.max_abs_logit_diff, broken.allclose = proof.max_abs_logit_diff, proof.allclose
    broken.atol_needed = proof.atol_needed
    broken.layer_max_abs_diff, broken.first_divergent_layer = proof.layer_max_abs_diff, proof.first_divergent_layer
    broken.greedy_tokens_agree = proof.greedy_tokens_agree
    # The reference's likeliest next tokens, then the broken load's own favourites: what it would say instead.
    with torch.inference_mode():
        correct = ours(torch.tensor([ids], device=reference.device)).float()
    reference_logits = proof.reference_run.logits
    tokens = list(dict.fromkeys(_likeliest(reference_logits) + _likeliest(proof.logits)))
    broken.top_k = _top_k(tokens, reference_logits, correct=correct, broken=proof.logits)
    return broken


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
def teacher_forced(model: GPT, ids: list[int], theirs: list[int]) -> tuple[torch.Tensor, int]:
    """The model's logits on the prompt, and how many of the reference's greedy tokens it writes too.

    One forward pass over the prompt and the reference's greedy tokens: up to the first token the
    model would pick otherwise, it reads exactly what it would read writing greedily itself, so
    its choices there are its greedy tokens, without a decoding step per token.
    """
    logits = model(torch.tensor([ids + theirs[:-1]], device=model.transformer.wte.weight.device)).float()
    return logits[:, :len(ids)], agreement(logits[0, len(ids) - 1:].argmax(-1).tolist(), theirs)


def precision_dtypes(device: torch.device) -> list[str]:
    return PRECISIONS.get(device.type, ["bfloat16"])


def _precision_row(dtype: str, logits, reference_logits, greedy_tokens_agree: int) -> dict:
    return {"dtype": dtype, "max_abs_logit_diff": (logits - reference_logits).abs().max().item(),
            "allclose": close(logits, reference_logits),
            "atol_needed": atol_needed(logits, reference_logits), "greedy_tokens_agree": greedy_tokens_agree}


def _lower_precision_rows(reference, models: dict[str, GPT], ids, reference_logits, theirs) -> list[dict]:
    """Our model in each lower precision against the float32 reference: how far rounding alone reaches.

    models: copies already loaded, by dtype; any other is made for this report and dropped after it.
    """
    rows = []
    for dtype in precision_dtypes(reference.device):
        model = models[dtype] if dtype in models else in_dtype(load_gpt(reference), dtype)
        logits, agree = teacher_forced(model, ids, theirs)
        rows.append(_precision_row(dtype, logits, reference_logits, agree))
    return rows
