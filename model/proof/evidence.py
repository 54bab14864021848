"""The chain of evidence that a model computes GPT-2's function, for any model: ours, a broken load of
ours, or a student's own GPT.

    the mapping table: every parameter's place, every shape checked   (before this: the load)
    -> every tensor audited: it holds exactly the reference's values
    -> every component, fed the reference's own input, gives the reference's output
    -> the residual stream after every block
    -> the logits at every position, within the stated tolerance
    -> the greedy tokens the model wrote, against the reference's

`prove` runs the links in that order on a loaded model and returns the facts. The writing is the
caller's (ours writes with its KV cache, a student's GPT with its own forward: `forward_greedy`), as
is the text that comes after (model/proof/verify.py for ours, model/check.py for a student's).
"""
from dataclasses import dataclass

import torch
from torch import nn

from model.loading.mapping import MappingRow, audit
from model.proof.components import (
    Run,
    component_modules,
    component_names,
    is_block,
    logits_of,
    record,
    record_reference,
)
from model.proof.tolerance import LESSON_ATOL, atol_needed, close, max_abs_diff

@dataclass
class ComponentCheck:
    name: str  # GPT-2's name of the component: "h.0.attn"
    module: str | None  # the checked model's module that computes it; None where it has none of its own
    max_abs_diff: float | None  # against the reference's output on the reference's input; None if unchecked
    ok: bool | None
    note: str | None = None  # why it was not checked

    def to_dict(self) -> dict:
        return dict(name=self.name, module=self.module, max_abs_diff=self.max_abs_diff, ok=self.ok, note=self.note)


@dataclass
class Proof:
    """The facts of the chain for one model, link by link."""
    mapping: list[MappingRow]  # every row audited
    components: list[ComponentCheck]
    layer_names: list[str]  # the embeddings, then each block's output: the residual stream
    layer_max_abs_diff: list[float]
    layers_close: list[bool]
    max_abs_logit_diff: float
    mean_abs_logit_diff: float
    allclose: bool
    lesson_atol_holds: bool
    atol_needed: float
    greedy_tokens: list[int]  # what the model writes greedily after the prompt
    greedy_tokens_agree: int  # of the reference's greedy tokens, up to the first that differs
    logits: torch.Tensor  # (1, prompt, vocab), float32
    # Every pass, kept for naming what differs (model/proof/diagnosis.py): the reference's, then the model's
    # with each component fed the reference's input, with each block fed it, and on its own.
    reference_run: Run
    runs: dict[str, Run]
    last_position_only: bool = False  # the forward returns the last position's logits alone (nanoGPT's does)

    @property
    def layers_allclose(self) -> bool:
        return all(self.layers_close)

    @property
    def first_divergent_layer(self) -> int | None:
        return next((i for i, ok in enumerate(self.layers_close) if not ok), None)


def prove(model: nn.Module, reference: nn.Module, mapping: list[MappingRow], ids: list[int],
          reference_tokens: list[int], tokens: list[int], correct: list[MappingRow] | None = None) -> Proof:
    """The chain of evidence for `model`, loaded (by `mapping`, or by its own loader) from `reference`.

    ids: the prompt's tokens; reference_tokens: the reference's greedy tokens after them (reference_greedy);
    tokens: the model's own, as many.
    correct: the table that says what each parameter should hold, where `mapping` is what a mistake did.
    """
    model.eval()
    idx = torch.tensor([ids], device=reference.device)

    # Every tensor: exactly the values the correct table gives it.
    mapping = audit(model, reference, mapping, correct)

    # Every component, fed the reference's own input: the same output, whatever came before it.
    reference_run = record_reference(reference, idx)
    paths = component_modules(model, correct if correct is not None else mapping)  # where each should be
    runs = component_runs(model, paths, reference_run, idx)
    components = [_component_check(name, paths.get(name), runs, reference_run)
                  for name in component_names(reference.config.n_layer)]

    # The residual stream: the embeddings, then each block's output, the model running on its own.
    alone = runs["alone"]
    n_layer = reference.config.n_layer
    layer_names = ["embeddings"] + [f"block {i}" for i in range(n_layer)]
    streams = ["embeddings"] + [f"h.{i}" for i in range(n_layer)]
    layer_diffs = [_diff_or_inf(alone.outputs.get(name), reference_run.outputs[name]) for name in streams]
    layers_close = [name in alone.outputs and close(alone.outputs[name], reference_run.outputs[name])
                    for name in streams]

    # The logits, at every position of the prompt (at the last, where that is all the forward returns).
    logits, reference_logits = alone.logits, compared_logits(alone.logits, reference_run.logits)
    diff = (logits - reference_logits).abs() if logits.shape == reference_logits.shape else None

    return Proof(
        mapping=mapping, components=components, layer_names=layer_names, layer_max_abs_diff=layer_diffs,
        layers_close=layers_close,
        max_abs_logit_diff=diff.max().item() if diff is not None else float("inf"),
        mean_abs_logit_diff=diff.mean().item() if diff is not None else float("inf"),
        allclose=close(logits, reference_logits),
        lesson_atol_holds=diff is not None and torch.allclose(logits, reference_logits, atol=LESSON_ATOL),
        atol_needed=atol_needed(logits, reference_logits) if diff is not None else float("inf"),
        # The greedy tokens the model wrote, against the reference's.
        greedy_tokens=tokens, greedy_tokens_agree=agreement(tokens, reference_tokens), logits=logits,
        reference_run=reference_run, runs=runs, last_position_only=reference_logits.shape != reference_run.logits.shape)


PASSES = ("components", "blocks", "alone")


def component_runs(model: nn.Module, paths: dict[str, str], reference_run: Run, idx: torch.Tensor,
                   only: str | None = None) -> dict[str, Run]:
    """The model's three passes: each component fed the reference's input, each block fed it, and on its own
    (or the one pass `only` names). paths: each component's module in the model (components.component_modules)."""
    modules = {name: model.get_submodule(path) for name, path in paths.items()}
    blocks = {name for name in modules if is_block(name)}
    feeding = {"components": set(modules) - blocks, "blocks": blocks, "alone": set()}
    return {run: record(model, modules, idx, reference_run, feeding[run]) for run in PASSES if only in (None, run)}


def compared_logits(logits: torch.Tensor, reference_logits: torch.Tensor) -> torch.Tensor:
    """The reference's logits a model's are compared with: every position, or the last where that is all it gave."""
    if logits.dim() == 3 and logits.size(1) == 1 < reference_logits.size(1):
        return reference_logits[:, -1:]
    return reference_logits


def _component_check(name: str, module: str | None, runs: dict[str, Run], reference_run: Run) -> ComponentCheck:
    """One component against the reference's. The embeddings are a sum, no module: the first block's input."""
    run = runs["alone" if name == "embeddings" else "blocks" if is_block(name) else "components"]
    got, wanted = run.outputs.get(name), reference_run.outputs[name]
    if got is None and module is not None:
        return ComponentCheck(name, module, None, False, "never called")
    if got is None:
        where = "within its block" if name.startswith("h.") else "through the logits"
        return ComponentCheck(name, None, None, None, f"no module of its own: checked {where}")
    return ComponentCheck(name, module, _diff_or_inf(got, wanted), close(got, wanted))


def _diff_or_inf(ours: torch.Tensor | None, reference: torch.Tensor) -> float:
    if ours is None or ours.shape != reference.shape:
        return float("inf")
    return max_abs_diff(ours, reference)


def agreement(ours: list[int], theirs: list[int]) -> int:
    """How many tokens agree, counted up to the first disagreement."""
    return next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))


@torch.inference_mode()
def forward_greedy(model: nn.Module, ids: list[int], n: int) -> list[int]:
    """The n tokens `model` writes greedily after `ids` with nothing but its forward: the whole window read
    again for every token, as nanoGPT samples. Any GPT can; ours has a KV cache that does it faster."""
    device = next(model.parameters()).device
    window = list(ids)
    for _ in range(n):
        logits = logits_of(model(torch.tensor([window], device=device)))
        window.append(int(logits[0, -1].float().argmax()))
    return window[len(ids):]


@torch.inference_mode()
def reference_greedy(reference, ids: list[int], n: int) -> list[int]:
    """The n tokens transformers' own `generate` writes greedily after `ids`, never stopping early."""
    idx = torch.tensor([ids], device=reference.device)
    return reference.generate(idx, attention_mask=torch.ones_like(idx), do_sample=False, max_new_tokens=n,
                              eos_token_id=None, pad_token_id=0)[0, len(ids):].tolist()
