"""The mapping table: which of the reference's tensors becomes which of our parameters, and how.

One row per parameter of ours, built from the two models themselves: the names line up one to one
(our classes use the checkpoint's names); what differs is the layout. transformers' Conv1D stores a
weight (in, out), nn.Linear stores it (out, in), so those are transposed; every other tensor is
copied as it is; lm_head is tied to the token embedding. The loader walks the table: it checks every
row's shape first, and only then loads. `audit` then checks, row by row, what arrived.
"""
import re
from dataclasses import asdict, dataclass, replace

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from model.bugs import broken_mapping


@dataclass(frozen=True)
class MappingRow:
    ours: str  # our parameter name
    reference: str  # the reference's tensor name
    our_shape: tuple
    reference_shape: tuple
    op: str  # copy | transpose | tied, or, in a broken load, the wrong thing done instead
    bug: bool = False  # True where a deliberate bug changed what this row does
    # Filled in by `audit`, once a model is loaded (None before):
    values_equal: bool | None = None  # our tensor holds exactly the reference's values, transposed where due
    shares_memory: bool | None = None  # it is the reference's own memory: no copy was made

    def to_dict(self) -> dict:
        return {**asdict(self), "our_shape": list(self.our_shape), "reference_shape": list(self.reference_shape)}


class WeightMismatchError(ValueError):
    """The mapping refused to load: shapes or names of the two models do not line up."""

    def __init__(self, mismatches: list[str], keys: list[str] | None = None):
        self.mismatches = mismatches  # one message per tensor that does not fit
        self.keys = keys if keys is not None else []  # our names of those tensors, in the same order
        shown = "\n  ".join(mismatches[:6]) + (f"\n  ... and {len(mismatches) - 6} more" if len(mismatches) > 6 else "")
        super().__init__(f"refused to load: {len(mismatches)} tensor(s) do not fit\n  {shown}")


def build_mapping(student: nn.Module, reference: nn.Module) -> list[MappingRow]:
    """The correct table: one row per parameter of ours, saying where its values come from."""
    ours = student.state_dict(keep_vars=True)
    theirs = reference.state_dict(keep_vars=True)
    conv1d_weights = {f"{name}.weight" for name, module in reference.named_modules() if isinstance(module, Conv1D)}
    rows = []
    for name, param in ours.items():
        if name == "lm_head.weight":  # the same tensor as wte in both models: tie, do not copy
            source, op = "transformer.wte.weight", "tied"
        else:
            source, op = name, "transpose" if name in conv1d_weights else "copy"
        reference_shape = tuple(theirs[source].shape) if source in theirs else ()
        rows.append(MappingRow(name, source, tuple(param.shape), reference_shape, op))
    return rows


def mapping_for(student: nn.Module, reference: nn.Module, bug: str | None = None) -> list[MappingRow]:
    """The mapping table as a load with `bug` walks it (the correct one for bug=None)."""
    return broken_mapping(build_mapping(student, reference), bug)


@torch.no_grad()
def audit(model: nn.Module, reference: nn.Module, bug: str | None = None) -> list[MappingRow]:
    """The table as `model` was loaded (with `bug`), every tensor checked against the reference, llm.c style.

    What a row should hold comes from the correct table, whatever the load did: the reference's tensor,
    transposed where the correct table transposes. A shape check cannot see a square weight left
    untransposed, nor a tensor read from the right memory in the wrong order; comparing values can.
    """
    ours, theirs = model.state_dict(), reference.state_dict()
    checked = []
    for row, correct in zip(mapping_for(model, reference, bug), build_mapping(model, reference)):
        tensor, source = ours[row.ours], theirs[correct.reference]
        expected = source.t() if correct.op == "transpose" else source
        checked.append(replace(
            row, values_equal=tensor.shape == expected.shape and torch.equal(tensor, expected),
            shares_memory=tensor.untyped_storage().data_ptr() == source.untyped_storage().data_ptr()))
    return checked


@torch.no_grad()
def load_weights(student: nn.Module, reference: nn.Module, bug: str | None = None) -> nn.Module:
    """Give `student` (built on the meta device: shapes only) the reference's weights, row by row.

    Nothing is copied: each of our parameters is the reference's tensor, or a transposed view of
    it, so the student costs no extra memory and every broken variant shares what it leaves alone.
    Every shape is checked before anything loads; a misfit raises WeightMismatchError.
    """
    rows = mapping_for(student, reference, bug)
    theirs = reference.state_dict()
    problems = {row.ours: problem for row in rows if (problem := shape_problem(row, theirs))}
    if problems:
        raise WeightMismatchError(list(problems.values()), list(problems))
    student.load_state_dict({row.ours: _load_one(row, theirs) for row in rows}, assign=True)
    if not any(row.op == "random" for row in rows):
        student.lm_head.weight = student.transformer.wte.weight  # one tensor, two names
    return student


def shape_problem(row: MappingRow, reference_keys) -> str | None:
    """Why this row cannot load, or None if it can."""
    if row.reference not in reference_keys:
        return f"{row.ours}: the reference has no tensor {row.reference!r}"
    ours, theirs = list(row.our_shape), list(row.reference_shape)
    if row.op == "transpose" and ours != theirs[::-1]:
        return (f"shape mismatch at {row.ours}: ours {ours}, reference {theirs} "
                f"(after transpose {theirs[::-1]}) — the architecture differs from the checkpoint")
    if row.op in ("copy", "tied") and ours != theirs:
        why = ("the same shape transposed: a Conv1D weight copied without .t()" if ours == theirs[::-1]
               else "the architecture differs from the checkpoint")
        return f"shape mismatch at {row.ours}: ours {ours}, reference {theirs} — {why}"
    if row.op == "raw" and row.reference_shape and torch.Size(ours).numel() != torch.Size(theirs).numel():
        return f"{row.ours}: {ours} and {theirs} hold different numbers of values"
    return None


def _load_one(row: MappingRow, theirs: dict) -> torch.Tensor:
    source = theirs[row.reference]
    if row.op == "transpose":
        return source.t()  # a view: nn.Linear's (out, in) over Conv1D's (in, out) memory
    if row.op == "raw":
        return source.reshape(row.our_shape)  # the bug: same memory, read with the wrong shape
    if row.op == "random":
        generator = torch.Generator().manual_seed(0)
        fresh = torch.empty(row.our_shape).normal_(0.0, 0.02, generator=generator)  # GPT-2's init
        return fresh.to(source.device)
    return source  # copy and tied: the very same tensor


# --- one name for a parameter of many blocks ------------------------------------------------------

LAYER_INDEX = re.compile(r"\.h\.(\d+)\.")


def block_pattern(name: str) -> tuple[str, int | None]:
    """'transformer.h.3.attn.c_attn.weight' -> ('transformer.h.{}.attn.c_attn.weight', 3); None outside blocks."""
    match = LAYER_INDEX.search(name)
    return LAYER_INDEX.sub(".h.{}.", name), int(match[1]) if match else None


def folded_name(pattern: str, blocks: list[int | None]) -> str:
    """One name for a parameter of several blocks: transformer.h.0–11.attn.c_attn.weight."""
    if blocks == [None]:
        return pattern
    if len(blocks) > 1 and blocks == list(range(blocks[0], blocks[-1] + 1)):
        return pattern.format(f"{blocks[0]}–{blocks[-1]}")
    return pattern.format(",".join(map(str, blocks)))


def fold_blocks(rows: list[dict], key) -> list[tuple[str, list[dict]]]:
    """Mapping rows (dicts) that differ only in their block and agree on key(row), as one (folded name, rows).

    In the model's order: a row a bug changes stays in its place, between the rows of its neighbours.
    """
    groups: dict[tuple, list[dict]] = {}
    order: dict[str, int] = {}  # name pattern -> its place in the model
    for row in rows:
        pattern, _ = block_pattern(row["ours"])
        order.setdefault(pattern, len(order))
        groups.setdefault((pattern, key(row)), []).append(row)

    def place(group):
        (pattern, _), members = group
        return order[pattern], block_pattern(members[0]["ours"])[1] or 0

    return [(folded_name(pattern, [block_pattern(row["ours"])[1] for row in members]), members)
            for (pattern, _), members in sorted(groups.items(), key=place)]
