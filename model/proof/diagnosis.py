"""Naming a student's mistake: what differs, matched against the catalogue (model/loading/mistakes.py).

Two kinds of evidence, the root cause first:
- a tensor their loader put in place that is not GPT-2's, explained by what it holds instead: GPT-2's
  tensor untransposed (not_transposed), the right values in the wrong places (scrambled), key where
  query belongs (qkv_order), another tensor's values (wrong_tensor), its values from before the loader
  ran (not_loaded);
- a component that, fed the reference's own input, computes something else: matched against our GPT
  with each of the catalogue's mistakes built in, the same component fed the same input. The mistake
  whose component reproduces theirs within the tolerance is named, with the evidence: how far theirs
  is from that variant and from GPT-2.
What differs and matches nothing is `unknown`: where it first differs, and by how much.
"""
import itertools
from dataclasses import dataclass, field, replace

import torch

from model.loading.mapping import MappingRow, expected, load_gpt, named_table
from model.loading.mistakes import MISTAKES
from model.memory import release_freed_memory
from model.proof.components import component_modules, component_names, component_of_tensor, is_block
from model.proof.evidence import Proof, compared_logits, component_runs
from model.proof.tolerance import close, max_abs_diff

FINGERPRINT_VALUES = 4096  # of each parameter, before a student's loader runs: enough to tell one left alone


@dataclass
class Diagnosis:
    id: str  # a mistake of the catalogue, or "unknown"
    where: list[str]  # the student's parameters or modules
    evidence: dict = field(default_factory=dict)
    note: bool = False  # True: not a failure (a copy of wte where GPT-2 ties it)

    @property
    def summary(self) -> str:
        if self.id in MISTAKES:
            return MISTAKES[self.id].summary
        return "It differs from GPT-2 here, and no mistake of the catalogue computes what it does."  # unknown

    def to_dict(self) -> dict:
        return dict(id=self.id, where=self.where, evidence=self.evidence, summary=self.summary, note=self.note)


def fingerprint(tensor: torch.Tensor) -> torch.Tensor:
    """A few of the tensor's values, spread over it, copied: what it held before a loader ran."""
    flat = tensor.detach().reshape(-1)
    return flat[::max(1, flat.numel() // FINGERPRINT_VALUES)].clone()


# --- tensors ------------------------------------------------------------------------------------------

@torch.no_grad()
def tensor_diagnoses(model, reference, rows: list[MappingRow], before: dict[str, torch.Tensor] | None) -> list[Diagnosis]:
    """Every tensor not as it should be, explained where the catalogue can, in the model's order.

    before: each parameter's fingerprint from before the student's loader ran (None: the check loaded it)."""
    theirs = reference.state_dict()
    params = dict(model.named_parameters(remove_duplicate=False))
    found: list[Diagnosis] = []
    for row in rows:
        tensor = params[row.name]
        if row.values_equal:
            if row.reference == "transformer.wte.weight" and row.op != "tied" and tensor is not _embedding(params, rows):
                _add(found, Diagnosis("not_tied", [row.name], note=True))
            continue
        mistake, evidence = _what_it_holds(row, tensor, theirs, before.get(row.name) if before else None)
        _add(found, Diagnosis(mistake, [row.name], evidence))
    return found


def _embedding(params: dict, rows: list[MappingRow]) -> torch.Tensor:
    return params[next(row.name for row in rows if row.reference == "transformer.wte.weight")]


def _what_it_holds(row: MappingRow, tensor: torch.Tensor, theirs: dict, before) -> tuple[str, dict]:
    wanted = expected(row, theirs)
    evidence = {"max_abs_diff_to_gpt2": max_abs_diff(tensor.reshape(wanted.shape), wanted)
                if tensor.numel() == wanted.numel() else None}
    if before is not None and torch.equal(fingerprint(tensor), before):
        return "not_loaded", {**evidence, "holds": "its values from before the loader ran"}
    if tensor.dim() == 2 and tensor.shape == wanted.t().shape and torch.equal(tensor, wanted.t()):
        return "not_transposed", {**evidence, "holds": f"{row.reference} as GPT-2 stores it, (in, out)"}
    for name, candidate in _sibling_pieces(row, theirs):
        if candidate.shape == tensor.shape and torch.equal(tensor, candidate):
            return "qkv_order", {**evidence, "holds": name}
    for name, candidate in _other_tensors(row, theirs):
        if candidate.numel() == tensor.numel() and candidate.shape == tensor.shape and torch.equal(tensor, candidate):
            return "wrong_tensor", {**evidence, "holds": name}
    if tensor.numel() == wanted.numel() and torch.equal(tensor.reshape(-1).sort().values, wanted.reshape(-1).sort().values):
        return "scrambled", {**evidence, "holds": f"{row.reference}'s values, in other places"}
    return "unknown", evidence


def _sibling_pieces(row: MappingRow, theirs: dict):
    """Query, key and value of the same c_attn in the other places: swapped pieces, or a fused c_attn in another order."""
    if ".attn.c_attn." not in row.reference:
        return
    source = theirs[row.reference]
    width = source.shape[-1] // 3
    if row.op == "split":
        start, stop = row.columns
        for offset in (-2 * width, -width, width, 2 * width):
            if 0 <= start + offset and stop + offset <= source.shape[-1]:
                piece = source[..., start + offset:stop + offset]
                yield f"{row.reference}[{start + offset}:{stop + offset}]", piece.t() if piece.dim() == 2 else piece
        return
    pieces = source.split(width, dim=-1)
    for order in itertools.permutations(range(3)):
        if order != (0, 1, 2):
            fused = torch.cat([pieces[i] for i in order], dim=-1)
            names = ",".join("qkv"[i] for i in order)
            yield f"{row.reference} split as {names}", fused.t() if row.op == "transpose" else fused


def _other_tensors(row: MappingRow, theirs: dict):
    """GPT-2's other tensors, as they are and as they would load (the same piece of them, for a split): what
    a loader may have taken instead."""
    suffix = row.reference.split(".", 3)[-1]  # "attn.c_attn.weight" of "transformer.h.0.attn.c_attn.weight"
    for name, source in theirs.items():
        if name in (row.reference, "lm_head.weight"):
            continue
        if row.op == "split":
            if name.endswith(suffix):
                yield f"{name}[{row.columns[0]}:{row.columns[1]}]", expected(replace(row, reference=name), theirs)
            continue
        yield name, source
        if source.dim() == 2:
            yield f"{name}.t()", source.t()


# --- components --------------------------------------------------------------------------------------

class Variants:
    """Our GPT with each form of each mistake of the catalogue, run as the student's model was: each pass made
    once, when something needs naming with it."""

    def __init__(self, reference, ids: list[int], proof: Proof):
        self.reference, self.proof = reference, proof
        self.idx = torch.tensor([ids], device=reference.device)
        self._runs: dict[str, list] = {}

    def runs(self, run: str) -> list:
        """[(mistake form, its pass `run`)] for every form that changes what the model computes."""
        if run not in self._runs:
            self._runs[run] = []
            for mistake in MISTAKES.values():
                if mistake.refused or not mistake.changes_function:
                    continue
                for form in mistake.forms():
                    model = load_gpt(self.reference, form)
                    paths = component_modules(model, named_table(model, self.reference))
                    self._runs[run].append((form, component_runs(model, paths, self.proof.reference_run, self.idx,
                                                                 only=run)[run]))
                    del model  # only its pass is kept: a mistake's own tensors (a random head) go now
                    release_freed_memory()
        return self._runs[run]

    def matching(self, run: str, component: str, theirs: torch.Tensor, wanted: torch.Tensor) -> Diagnosis | None:
        """The mistake whose `component` (in the pass `run`) computes what theirs does, and differs from GPT-2's."""
        best = None
        for form, variant in self.runs(run):
            ours = variant.logits if component == "logits" else variant.outputs.get(component)
            if component == "logits":
                ours = ours[:, -theirs.size(1):]
            if ours is None or ours.shape != theirs.shape or close(ours, wanted) or not close(theirs, ours):
                continue
            distance = max_abs_diff(theirs, ours)
            if best is None or distance < best[0]:
                best = (distance, form)
        if best is None:
            return None
        distance, form = best
        evidence = {"max_abs_diff_to_variant": distance, "max_abs_diff_to_gpt2": max_abs_diff(theirs, wanted)}
        if form.form:
            evidence["form"] = form.form
        return Diagnosis(form.id, [], evidence)


def component_diagnoses(proof: Proof, variants: Variants, explained: set[str]) -> list[Diagnosis]:
    """Each component that computes otherwise, named; explained: the parameters a tensor's diagnosis covers
    already (their components differ because of them: the root cause is named)."""
    found: list[Diagnosis] = []
    checks = {check.name: check for check in proof.components}
    covered = _components_of(proof.mapping, explained)
    reference_run = proof.reference_run
    for name in component_names(len([c for c in checks if is_block(c)])):
        check = checks[name]
        if check.ok is not False or name in covered:
            continue
        if is_block(name) and any(checks[f"{name}.{part}"].ok is False for part in ("ln_1", "attn", "ln_2", "mlp")):
            continue  # a block is judged as a whole only where each part of it is right: its wiring
        run = "alone" if name == "embeddings" else "blocks" if is_block(name) else "components"
        theirs = proof.runs[run].outputs.get(name)
        where = check.module or name
        if theirs is not None:
            diagnosis = variants.matching(run, name, theirs, reference_run.outputs[name])
            evidence = {"max_abs_diff_to_gpt2": check.max_abs_diff, "first_differs_at": where}
        else:  # defined, never called: what the forward does without it shows in the logits
            diagnosis = logits_diagnosis(proof, variants)
            evidence = {"never_called": where}
        if diagnosis is None or diagnosis.id == "unknown":
            diagnosis = Diagnosis("unknown", [], evidence)
        diagnosis.where = [where]
        _add(found, diagnosis)
    return found


def logits_diagnosis(proof: Proof, variants: Variants) -> Diagnosis | None:
    """Where every component is right and the logits are not (ln_f or the positions left out of the forward)."""
    if proof.allclose:
        return None
    logits, wanted = proof.logits, compared_logits(proof.logits, proof.reference_run.logits)
    diagnosis = variants.matching("alone", "logits", logits, wanted)
    if diagnosis is None:
        diagnosis = Diagnosis("unknown", [], {"max_abs_diff_to_gpt2": proof.max_abs_logit_diff,
                                             "first_differs_at": "the logits"})
    diagnosis.where = ["the logits"]
    return diagnosis


def _components_of(rows: list[MappingRow], parameters: set[str]) -> set[str]:
    """The components the given parameters belong to, their blocks included."""
    embedding = next((row.name for row in rows if row.reference == "transformer.wte.weight"), None)
    components = set()
    for row in rows:
        if row.name not in parameters:
            continue
        if row.reference in ("transformer.wte.weight", "transformer.wpe.weight"):
            components.add("embeddings" if row.name == embedding or row.reference.endswith("wpe.weight") else "lm_head")
        elif (component := component_of_tensor(row.reference)) is not None:
            components |= {component, component.rsplit(".", 1)[0]}
    return components


def _add(found: list[Diagnosis], diagnosis: Diagnosis):
    """One diagnosis per mistake (and form): a second place adds to the first's."""
    for known in found:
        if (known.id, known.evidence.get("form")) == (diagnosis.id, diagnosis.evidence.get("form")):
            known.where += [where for where in diagnosis.where if where not in known.where]
            for key in ("max_abs_diff_to_variant", "max_abs_diff_to_gpt2"):
                if diagnosis.evidence.get(key) is not None and known.evidence.get(key) is not None:
                    known.evidence[key] = max(known.evidence[key], diagnosis.evidence[key])
            return
    found.append(diagnosis)
