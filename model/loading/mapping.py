"""The mapping table: which of the reference's tensors becomes which parameter, and how; and the one
loader that walks it.

One row per parameter. For our GPT the table is built from the two models themselves: the names
line up one to one (our classes use the checkpoint's names); what differs is the layout.
transformers' Conv1D stores a weight (in, out), nn.Linear stores it (out, in), so those are
transposed; every other tensor is copied as it is; lm_head is tied to the token embedding. A
student's GPT gets a table of the same kind from its structure (model/proof/structure.py), where a
parameter may also take a split of one: query, key and value are columns of GPT-2's c_attn.

The loader checks every row's shape first, and only then loads. `audit` then checks, row by row,
what arrived.
"""
from dataclasses import asdict, dataclass, replace

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from model.gpt import GPT, GPTConfig

OPS = {
    "copy": "copied as it is",
    "transpose": "transposed: Conv1D stores (in, out), nn.Linear (out, in)",
    "tied": "tied: the very same tensor as wte",
    "split": "a split of it: some of its columns (query, key or value), laid out as nn.Linear stores them",
}


@dataclass(frozen=True)
class MappingRow:
    name: str  # the parameter of the model being loaded
    reference: str  # the reference's tensor it takes its values from
    shape: tuple
    reference_shape: tuple
    op: str  # one of OPS, or, where a mistake loads this row, what it does instead
    columns: tuple[int, int] | None = None  # split: the reference's output features [start, stop)
    by: str = "name"  # how the row was found: "name" (the checkpoint's own name) or "structure"
    bug: bool = False  # True where a mistake changed what this row does
    # Filled in by `audit`, once a model is loaded (None before):
    values_equal: bool | None = None  # the parameter holds exactly what the correct row gives it
    shares_memory: bool | None = None  # it is the reference's own memory: no copy was made

    def to_dict(self, model: str = "ours", shape: str = "our_shape") -> dict:
        """The row as JSON, naming the loaded model's side `model` (and its shape `shape`)."""
        data = asdict(self)
        data[model], data[shape] = data.pop("name"), list(data.pop("shape"))
        data["reference_shape"] = list(self.reference_shape)
        return data


class WeightMismatchError(ValueError):
    """The mapping refused to load: shapes or names of the two models do not line up."""

    def __init__(self, mismatches: list[str], keys: list[str] | None = None):
        self.mismatches = mismatches  # one message per tensor that does not fit
        self.keys = keys if keys is not None else []  # the parameters' names, in the same order
        shown = "\n  ".join(mismatches[:6]) + (f"\n  ... and {len(mismatches) - 6} more" if len(mismatches) > 6 else "")
        super().__init__(f"refused to load: {len(mismatches)} tensor(s) do not fit\n  {shown}")


def conv1d_weights(reference: nn.Module) -> set[str]:
    """The reference's weights stored (in, out): every Conv1D's."""
    return {f"{name}.weight" for name, module in reference.named_modules() if isinstance(module, Conv1D)}


def named_table(model: nn.Module, reference: nn.Module) -> list[MappingRow]:
    """The correct table for a model that uses the checkpoint's own names, as ours does."""
    theirs = reference.state_dict(keep_vars=True)
    transposed = conv1d_weights(reference)
    rows = []
    for name, param in model.state_dict(keep_vars=True).items():
        if name == "lm_head.weight":  # the same tensor as wte in both models: tie, do not copy
            source, op = "transformer.wte.weight", "tied"
        else:
            source, op = name, "transpose" if name in transposed else "copy"
        reference_shape = tuple(theirs[source].shape) if source in theirs else ()
        rows.append(MappingRow(name, source, tuple(param.shape), reference_shape, op))
    return rows


def mapping_for(model: nn.Module, reference: nn.Module, mistake=None) -> list[MappingRow]:
    """Our table as a load with `mistake` (from model/loading/mistakes.py) walks it; the correct one for None."""
    rows = named_table(model, reference)
    return mistake.table(rows) if mistake is not None else rows


def expected(row: MappingRow, theirs: dict) -> torch.Tensor:
    """What the parameter of a correct row holds: the reference's tensor, laid out as the row says."""
    source = theirs[row.reference]
    if row.op == "transpose":
        return source.t()  # a view: nn.Linear's (out, in) over Conv1D's (in, out) memory
    if row.op == "split":
        start, stop = row.columns
        piece = source[..., start:stop]  # (in, out) columns of a weight, or a piece of a bias
        return piece.t() if piece.dim() == 2 else piece
    if tuple(source.shape) != row.shape:
        return source.view(row.shape)  # the same values in a shape with extra dimensions of size one: (1, positions, width)
    return source  # copy and tied: the very same tensor


def shape_problem(row: MappingRow, theirs) -> str | None:
    """Why this row cannot load, or None if it can. A row a mistake loads its own way is the mistake's to check."""
    if row.reference not in theirs:
        return f"{row.name}: the reference has no tensor {row.reference!r}"
    if row.op not in OPS:
        return None
    ours, reference = list(row.shape), list(row.reference_shape)
    if row.op == "transpose" and ours != reference[::-1]:
        return (f"shape mismatch at {row.name}: ours {ours}, reference {reference} "
                f"(after transpose {reference[::-1]}) — the architecture differs from the checkpoint")
    if row.op == "split":
        start, stop = row.columns
        piece = reference[:-1] + [stop - start]
        wanted = piece[::-1] if len(piece) == 2 else piece
        return None if ours == wanted else (f"shape mismatch at {row.name}: ours {ours}, the split of "
                                            f"{row.reference} [{start}:{stop}] is {wanted}")
    if row.op in ("copy", "tied") and ours != reference:
        if torch.Size(ours).numel() == torch.Size(reference).numel() and _squeezed(ours) == _squeezed(reference):
            return None  # the same values, with extra dimensions of size one
        why = ("the same shape transposed: a Conv1D weight copied without .t()" if ours == reference[::-1]
               else "the architecture differs from the checkpoint")
        return f"shape mismatch at {row.name}: ours {ours}, reference {reference} — {why}"
    return None


def _squeezed(shape: list[int]) -> list[int]:
    return [size for size in shape if size != 1]


@torch.no_grad()
def load_weights(model: nn.Module, reference: nn.Module, rows: list[MappingRow], load_row=None) -> nn.Module:
    """Give `model` the reference's weights, row by row: the one loader.

    A model built on the meta device (shapes only: ours) gets the reference's tensors themselves, or
    views of them, so it costs no extra memory and every broken variant shares what it leaves alone.
    A model with tensors of its own (a student's) gets the values copied into them.
    load_row(row, theirs): a mistake's own way of loading the rows it changed (None for the others).
    Every shape is checked before anything loads; a misfit raises WeightMismatchError.
    """
    theirs = reference.state_dict()
    problems = {row.name: problem for row in rows if (problem := shape_problem(row, theirs))}
    if problems:
        raise WeightMismatchError(list(problems.values()), list(problems))
    values = {}
    for row in rows:
        own = load_row(row, theirs) if load_row is not None and row.bug else None
        values[row.name] = own if own is not None else expected(row, theirs)
    if any(param.is_meta for param in model.parameters()):
        model.load_state_dict(values, assign=True)
        for row in rows:  # assigning gave each name a tensor of its own: tied rows become one tensor again
            if row.op == "tied":
                owner, _, attribute = row.name.rpartition(".")
                setattr(model.get_submodule(owner), attribute, model.get_parameter(row.reference))
    else:
        params = dict(model.named_parameters(remove_duplicate=False))
        for name, value in values.items():
            params[name].copy_(value.reshape(params[name].shape))
    return model


def load_gpt(reference: nn.Module, mistake=None) -> GPT:
    """Our GPT carrying the weights of a transformers `GPT2LMHeadModel`, loaded by walking the mapping table.

    mistake: load it wrongly on purpose, as this entry of the catalogue (model/loading/mistakes.py) says:
    another architecture, another table, or both.
    """
    config = GPTConfig.from_hf(reference.config)
    if mistake is not None:
        config = mistake.config(config)
    with torch.device("meta"):  # shapes only: the values come from the reference
        model = GPT(config)
    load_weights(model, reference, mapping_for(model, reference, mistake),
                 mistake.load if mistake is not None else None)
    if mistake is not None:
        mistake.build(model)
    return model.eval()


@torch.no_grad()
def audit(model: nn.Module, reference: nn.Module, rows: list[MappingRow],
          correct: list[MappingRow] | None = None) -> list[MappingRow]:
    """The table as `model` was loaded, every tensor checked against the reference, llm.c style.

    What a row should hold comes from the correct table (`correct`, the same as `rows` unless a mistake
    changed them), whatever the load did: the reference's tensor, transposed or split where the correct
    table says. A shape check cannot see a square weight left untransposed, nor a tensor read from the
    right memory in the wrong order; comparing values can.
    """
    params = dict(model.named_parameters(remove_duplicate=False))
    theirs = reference.state_dict()
    checked = []
    for row, right in zip(rows, correct if correct is not None else rows):
        tensor, wanted = params[row.name], expected(right, theirs)
        checked.append(replace(
            row, values_equal=tensor.numel() == wanted.numel() and torch.equal(tensor.reshape(wanted.shape), wanted),
            shares_memory=tensor.untyped_storage().data_ptr() == theirs[right.reference].untyped_storage().data_ptr()))
    return checked


def naive_load_outcome(rows: list[MappingRow], reference_shapes: dict) -> dict:
    """What `model.load_state_dict(reference.state_dict())` would report, key by key.

    reference_shapes: {name: shape} of the reference's whole state dict, matched by name as torch does.
    For GPT-2 our names are the checkpoint's, so no key is missing or unexpected; every non-square
    Conv1D weight is refused for its shape, and the square ones are accepted, un-transposed and wrong.
    """
    theirs = {name: tuple(shape) for name, shape in reference_shapes.items()}
    ours = {row.name: tuple(row.shape) for row in rows}
    transposed = {row.name for row in rows if row.op == "transpose"}
    both = [name for name in ours if name in theirs]
    return {
        "missing_keys": sorted(ours.keys() - theirs.keys()),
        "unexpected_keys": sorted(theirs.keys() - ours.keys()),
        "shape_mismatches": [{"key": name, "ours": list(ours[name]), "reference": list(theirs[name])}
                             for name in both if ours[name] != theirs[name]],
        "silently_accepted": [name for name in both if name in transposed and ours[name] == theirs[name]],
    }
