"""GPT-2's components, found in any model, each fed the reference's own input and compared alone.

A component is named as GPT-2 names it, in the order data flows: "embeddings", then for each block i
"h.i.ln_1", "h.i.attn", "h.i.ln_2", "h.i.mlp" and the block itself "h.i", then "ln_f" and "lm_head".
In a model being checked, a component is the smallest module that owns every parameter the mapping
table gives that component's tensors (the model's own names need not be GPT-2's). Forward hooks then
record what each module takes and gives, and can hand it the reference's input instead of its own:
so a component is judged on exactly the input the reference's gave its counterpart, whatever the
components before it computed.
"""
from dataclasses import dataclass

import torch
from torch import nn

SUB_LAYERS = ("ln_1", "attn", "ln_2", "mlp")
EMBEDDING = "transformer.wte.weight"


def component_names(n_layer: int) -> list[str]:
    """Every component, in the order data flows through GPT-2."""
    blocks = [f"h.{i}.{part}" for i in range(n_layer) for part in (*SUB_LAYERS, "")]
    return ["embeddings", *[name.rstrip(".") for name in blocks], "ln_f", "lm_head"]


def is_block(name: str) -> bool:
    return name.startswith("h.") and name.count(".") == 1


def reference_modules(reference: nn.Module) -> dict[str, nn.Module]:
    """transformers' GPT2LMHeadModel's module for each component (the embeddings are a sum, no module)."""
    modules = {}
    for i, block in enumerate(reference.transformer.h):
        modules.update({f"h.{i}.{part}": getattr(block, part) for part in SUB_LAYERS})
        modules[f"h.{i}"] = block
    return {**modules, "ln_f": reference.transformer.ln_f, "lm_head": reference.lm_head}


def component_of_tensor(reference_name: str) -> str | None:
    """'transformer.h.3.attn.c_attn.weight' -> 'h.3.attn'; the embeddings' tensors belong to no module."""
    parts = reference_name.split(".")
    if parts[:2] == ["transformer", "h"]:
        return f"h.{parts[2]}.{parts[3]}"
    if parts[:2] == ["transformer", "ln_f"]:
        return "ln_f"
    return None


def component_modules(model: nn.Module, rows) -> dict[str, str]:
    """The name of `model`'s module computing each component, from its mapping table's rows.

    The smallest module owning every parameter of the component; a component whose parameters share
    their smallest module with another component's has no module of its own, and is left out. The head
    is the module of the second parameter that takes wte's values (the first is the token embedding):
    a model that multiplies by wte itself, with no lm_head module, has none.
    """
    owners: dict[str, list[str]] = {}
    embedding_rows = [row for row in rows if row.reference == EMBEDDING]
    for row in rows:
        if row.reference == EMBEDDING:
            component = "lm_head" if row is not embedding_rows[0] else None
        else:
            component = component_of_tensor(row.reference)
        if component is not None:
            owners.setdefault(component, []).append(_owner(row.name))
            if component.startswith("h."):
                owners.setdefault(component.rsplit(".", 1)[0], []).append(_owner(row.name))
    found = {component: _common_prefix(names) for component, names in owners.items()}
    shared: dict[str, int] = {}
    for module in found.values():
        shared[module] = shared.get(module, 0) + 1
    return {component: module for component, module in found.items()
            if is_block(component) or shared[module] == 1}


def _owner(parameter: str) -> str:
    return parameter.rpartition(".")[0]


def _common_prefix(names: list[str]) -> str:
    parts = [name.split(".") for name in names]
    common = []
    for pieces in zip(*parts):
        if len(set(pieces)) > 1:
            break
        common.append(pieces[0])
    return ".".join(common)


@dataclass
class Run:
    """One forward pass, recorded: each component's input and output, and the logits."""
    inputs: dict[str, torch.Tensor]
    outputs: dict[str, torch.Tensor]
    logits: torch.Tensor


def logits_of(output) -> torch.Tensor:
    """A forward's logits, whether it returns them, (logits, loss), or an object with .logits."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    if isinstance(getattr(output, "logits", None), torch.Tensor):
        return output.logits
    raise TypeError(f"the forward returned {type(output).__name__}: return the logits, (logits, loss), or an "
                    f"object with .logits")


@torch.inference_mode()
def record(model: nn.Module, modules: dict[str, nn.Module], idx: torch.Tensor, fed: Run | None = None,
           feeding: set[str] = frozenset()) -> Run:
    """Run `model` once on `idx`, recording what each of `modules` (by component) takes and gives.

    fed, feeding: the components in `feeding` take fed.inputs[component] (the reference's) instead of
    their own input. When the head has no module, ln_f hands on fed's output too: then the logits are
    the head's own output on the reference's input.
    """
    inputs, outputs = {}, {}
    handles = []
    head_from_logits = "lm_head" not in modules and "ln_f" in feeding

    def before(name):
        def hook(module, args, kwargs):
            given = _first_tensor(args, kwargs)
            if name in feeding and fed is not None and name in fed.inputs:
                args, kwargs = _replaced(args, kwargs, given, fed.inputs[name])
                given = fed.inputs[name]
            inputs[name] = given.detach()
            return args, kwargs
        return hook

    def after(name):
        def hook(module, args, kwargs, output):
            outputs[name] = _first(output).detach()
            if name == "ln_f" and head_from_logits:
                return fed.outputs["ln_f"]
            return None
        return hook

    for name, module in modules.items():
        handles.append(module.register_forward_pre_hook(before(name), with_kwargs=True))
        handles.append(module.register_forward_hook(after(name), with_kwargs=True))
    try:
        logits = logits_of(model(idx)).float()
    finally:
        for handle in handles:
            handle.remove()
    if "h.0" in inputs:
        outputs["embeddings"] = inputs["h.0"]  # the sum of the two embeddings: the first block's input
    if head_from_logits:
        outputs["lm_head"] = logits
    return Run(inputs, outputs, logits)


def record_reference(reference: nn.Module, idx: torch.Tensor) -> Run:
    """The reference's run on `idx`: what every component takes and gives."""
    return record(reference, reference_modules(reference), idx)


def _first(output):
    return output[0] if isinstance(output, (tuple, list)) else output


def _first_tensor(args: tuple, kwargs: dict) -> torch.Tensor:
    return next(value for value in (*args, *kwargs.values()) if isinstance(value, torch.Tensor))


def _replaced(args: tuple, kwargs: dict, given: torch.Tensor, instead: torch.Tensor) -> tuple[tuple, dict]:
    """Every argument that is the module's input (nn.MultiheadAttention takes it three times) replaced."""
    args = tuple(instead if value is given else value for value in args)
    kwargs = {key: instead if value is given else value for key, value in kwargs.items()}
    return args, kwargs
