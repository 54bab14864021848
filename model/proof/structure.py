"""A student's GPT mapped to GPT-2's tensors by its structure, whatever its parameters are called.

Every GPT-2 holds the same roles: a token and a position embedding, then blocks, each with two
LayerNorms, attention's query, key and value and its output projection, the MLP's two projections,
then a final LayerNorm and the head. In a student's model the blocks are the list of n_layer modules
of one class; inside them, shapes tell most roles apart (query/key/value in one [3·d, d] matrix, the
MLP's [4·d, d] and [d, 4·d]), names tell the rest (query, key, value, proj), and order decides where
names do not (the first LayerNorm is ln_1). The result is a mapping table of the same kind as ours
(model/loading/mapping.py): each parameter, the GPT-2 tensor it takes, and how (copy, transpose,
tied, or split: a piece of c_attn for a separate query, key or value, per projection or per head).

What cannot hold GPT-2's tensors is said per parameter (`problems`: the mistake cannot_hold); a
model of another size altogether cannot be checked (`CannotCheck`).
"""
import re
from dataclasses import dataclass, field

from torch import nn

from model.loading.mapping import MappingRow, conv1d_weights


class CannotCheck(ValueError):
    """The student's model or file cannot be checked at all; the message says what to do (the command lines
    answer it as every bad input: one `error:` line, exit status 2)."""


@dataclass
class StructureMapping:
    rows: list[MappingRow]  # one per parameter name of the student's model (a tied tensor's names: one each)
    problems: list[str] = field(default_factory=list)  # what cannot hold GPT-2's tensors, per parameter
    missing: list[str] = field(default_factory=list)  # GPT-2's tensors of a module the model does not have


# The words a module is called by, for each role only names decide: "W_query", "q_proj", "to_k", "value".
ROLE_WORDS = {"q": {"q", "query", "queries"}, "k": {"k", "key", "keys"}, "v": {"v", "value", "values"},
              "proj": {"proj", "out", "o", "dense", "wo"}}
BIAS_WORDS = {"bias", "shift", "beta", "b"}
GPT2_BLOCK = ["ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight",
              "attn.c_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight",
              "mlp.c_proj.bias"]


@dataclass(frozen=True)
class _Shape:
    width: int
    heads: int
    inner: int
    vocab: int
    positions: int

    @property
    def head_size(self) -> int:
        return self.width // self.heads


def map_by_structure(model: nn.Module, reference: nn.Module) -> StructureMapping:
    """The mapping table of `model` onto the reference GPT-2, found from the model's structure."""
    config = reference.config
    shape = _Shape(config.n_embd, config.n_head, config.n_inner or 4 * config.n_embd, config.vocab_size,
                   config.n_positions)
    params = list(model.named_parameters(remove_duplicate=False))
    blocks_name, blocks = _blocks(model, config.n_layer)
    mapping = StructureMapping(rows=[])
    places: dict[str, tuple[str, str, tuple | None]] = {}  # parameter -> (reference tensor, op, columns)
    _outside_blocks(model, [(n, p) for n, p in params if not n.startswith(f"{blocks_name}.")], shape, places, mapping)
    for i, block in enumerate(blocks):
        _block(_BlockTensors(f"{blocks_name}.{i}", f"transformer.h.{i}", places, mapping), block, shape)
    theirs = reference.state_dict()
    stored_in_out = conv1d_weights(reference)
    for name, param in params:
        if name not in places:
            continue
        source, op, columns = places[name]
        if op == "copy" and source in stored_in_out:
            op = "transpose"  # a weight stored as GPT-2 stores it would be a copy: nn.Linear's is (out, in)
        by = "name" if name.removeprefix("transformer.") == source.removeprefix("transformer.") else "structure"
        mapping.rows.append(MappingRow(name, source, tuple(param.shape), tuple(theirs[source].shape), op, columns, by))
    return mapping


def _blocks(model: nn.Module, n_layer: int) -> tuple[str, list[nn.Module]]:
    """The list of blocks: modules of one class in a ModuleList or Sequential (the largest such list)."""
    lists = []
    for name, module in model.named_modules():
        children = list(module.children())
        if isinstance(module, (nn.ModuleList, nn.Sequential)) and children and \
                len({type(child) for child in children}) == 1 and any(True for _ in children[0].parameters()):
            lists.append((sum(p.numel() for p in module.parameters()), name, children))
    if not lists:
        raise CannotCheck("no list of blocks found in the model: GPT-2's blocks are n_layer modules of one class in "
                          "an nn.ModuleList or nn.Sequential")
    _, name, children = max(lists, key=lambda found: found[0])
    if len(children) != n_layer:
        raise CannotCheck(f"the model has {len(children)} blocks ({name}), the reference {n_layer}: build it with "
                          f"n_layer={n_layer}")
    return name, children


def _outside_blocks(model: nn.Module, params: list, shape: _Shape, places: dict, mapping: StructureMapping):
    """The embeddings, the final LayerNorm and the head."""
    matrices = [(name, p) for name, p in params if p.dim() >= 2]
    vectors = [(name, p) for name, p in params if p.dim() == 1]
    embeddings = [m.weight for m in model.modules() if isinstance(m, nn.Embedding) and m.num_embeddings == shape.vocab]
    embedding = next(iter(embeddings), None)
    if embedding is None:
        embedding = next((p for _, p in matrices if p.shape[0] == shape.vocab), None)
    if embedding is None:
        vocab = [f"{name} of {m.num_embeddings}" for name, m in model.named_modules() if isinstance(m, nn.Embedding)]
        found = f" (its embeddings: {', '.join(vocab)})" if vocab else ""
        raise CannotCheck(f"no token embedding of {shape.vocab} rows in the model{found}: build it with "
                          f"vocab_size={shape.vocab}")
    if embedding.shape[-1] != shape.width:
        raise CannotCheck(f"the model is {embedding.shape[-1]} wide, the reference {shape.width}: build it with "
                          f"n_embd={shape.width}")
    positions = False
    for name, p in matrices:
        rows = [size for size in p.shape if size != 1]  # a position embedding may be a bare (1, positions, width)
        if p is embedding:
            # Its first name is the token embedding; another name of the very same tensor is a tied head.
            places[name] = ("transformer.wte.weight", "tied" if _taken(places, "transformer.wte.weight") else "copy",
                            None)
        elif rows == [shape.vocab, shape.width]:
            places[name] = ("transformer.wte.weight", "copy", None)  # a head of its own: a copy of wte
        elif rows == [shape.width, shape.vocab]:
            places[name] = ("transformer.wte.weight", "transpose", None)  # a head stored (in, out)
        elif len(rows) == 2 and rows[1] == shape.width and not positions:
            positions = True
            if rows[0] == shape.positions:
                places[name] = ("transformer.wpe.weight", "copy", None)
            else:
                mapping.problems.append(f"{name}: {list(p.shape)} cannot hold GPT-2's transformer.wpe.weight "
                                        f"[{shape.positions}, {shape.width}]: build it with a context of "
                                        f"{shape.positions} positions (block_size, context_length)")
        else:
            mapping.problems.append(f"{name}: {list(p.shape)} has no counterpart in GPT-2")
    if not positions:
        mapping.missing.append("transformer.wpe.weight")
    final = [(name, p) for name, p in vectors if p.shape == (shape.width,)]
    for (name, _), role in zip(final, _weight_and_bias(final)):
        places[name] = (f"transformer.ln_f.{role}", "copy", None)
    if not final:
        mapping.missing += ["transformer.ln_f.weight", "transformer.ln_f.bias"]
    for name, p in vectors:
        if p.shape == (shape.vocab,):
            mapping.problems.append(f"{name}: GPT-2's lm_head has no bias: build the head with bias=False")
        elif name not in places:
            mapping.problems.append(f"{name}: {list(p.shape)} has no counterpart in GPT-2")


def _taken(places: dict, tensor: str) -> bool:
    """Whether some parameter already takes the reference's `tensor`."""
    return any(source == tensor for source, _, _ in places.values())


def _weight_and_bias(vectors: list) -> list[str]:
    """A LayerNorm's roles by name (bias, shift, beta), else in order: the weight first."""
    named = ["bias" if set(_words(name.rsplit(".", 1)[-1])) & BIAS_WORDS else "weight" for name, _ in vectors]
    in_order = ["weight", "bias"][:len(vectors)]
    return named if sorted(named) == sorted(in_order) else in_order


def _words(name: str) -> list[str]:
    """'W_query' -> ['w', 'query']; 'toQ' -> ['to', 'q']; 'c_proj' -> ['c', 'proj']."""
    return [word.lower() for word in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+", name)]


@dataclass(frozen=True)
class _Linear:
    owner: str  # the module's name in the block
    weight: str  # its parameters' names in the block
    bias: str | None
    shape: list[int]


def _join(owner: str, attribute: str) -> str:
    return f"{owner}.{attribute}" if owner else attribute


class _BlockTensors:
    """Where each of GPT-2's tensors of one block goes, and what cannot hold one, said once per tensor."""

    def __init__(self, prefix: str, h: str, places: dict, mapping: StructureMapping):
        self.prefix, self.h, self.places, self.mapping = prefix, h, places, mapping
        self.accounted: set[str] = set()  # GPT-2's tensors of this block placed, or said to have no place

    def put(self, relative: str, tensor: str, op: str = "copy", columns: tuple | None = None):
        self.places[f"{self.prefix}.{relative}"] = (f"{self.h}.{tensor}", op, columns)
        self.accounted.add(tensor)

    def problem(self, message: str, *tensors: str):
        if not tensors or not set(tensors) <= self.accounted:
            self.mapping.problems.append(message)
        self.accounted.update(tensors)

    def linear(self, linear: _Linear, gpt2: str, width: int, fits: bool = True, wanted: str = ""):
        if not fits:
            self.problem(f"{self.prefix}.{linear.weight}: {linear.shape} cannot hold GPT-2's {self.h}.{gpt2}.weight "
                         f"{wanted}", f"{gpt2}.weight", f"{gpt2}.bias")
            return
        self.put(linear.weight, f"{gpt2}.weight")
        if linear.bias:
            self.put(linear.bias, f"{gpt2}.bias")
        else:
            self.problem(f"{self.prefix}.{linear.owner} has no bias: GPT-2's {gpt2} has {width} bias values per block "
                         f"— use bias=True", f"{gpt2}.bias")

    def piece(self, linear: _Linear, start: int, size: int, width: int):
        """Query, key or value (of one head or all): the columns [start, start + size) of c_attn."""
        self.put(linear.weight, "attn.c_attn.weight", "split", (start, start + size))
        if linear.bias:
            self.put(linear.bias, "attn.c_attn.bias", "split", (start, start + size))
        else:
            self.problem(f"{self.prefix}: key/query/value have no bias: GPT-2's c_attn has {3 * width} bias values "
                         f"per block — use bias=True", "attn.c_attn.bias")

    def no_counterpart(self, owner: str, tensors: dict):
        for attribute, p in tensors.items():
            self.problem(f"{self.prefix}.{_join(owner, attribute)}: {list(p.shape)} has no counterpart in GPT-2's block")

    def complete(self):
        for tensor in GPT2_BLOCK:
            if tensor not in self.accounted:
                self.problem(f"{self.prefix}: nothing in the block can hold GPT-2's {self.h}.{tensor}", tensor)


def _block(block_tensors: _BlockTensors, block: nn.Module, shape: _Shape):
    """Every parameter of one block, given the GPT-2 tensor of that block it takes."""
    d, hs = shape.width, shape.head_size
    owners: dict[str, dict] = {}  # module (its name in the block) -> {attribute: parameter}, in order
    for name, p in block.named_parameters(remove_duplicate=False):
        owner, _, attribute = name.rpartition(".")
        owners.setdefault(owner, {})[attribute] = p
    attention = next((name for name, m in block.named_modules() if isinstance(m, nn.MultiheadAttention)), None)
    if attention is not None:
        _multihead_attention(block.get_submodule(attention), attention, block_tensors)
    layernorms, squares, per_head = [], [], []
    for owner, tensors in owners.items():
        if attention is not None and (owner == attention or owner.startswith(f"{attention}.")):
            continue
        module = block.get_submodule(owner) if owner else block
        weight = next((p for p in tensors.values() if p.dim() == 2), None)
        if weight is None:
            if all(p.shape == (d,) for p in tensors.values()) and len(tensors) <= 2:
                layernorms.append((owner, tensors))
            else:
                block_tensors.no_counterpart(owner, tensors)
            continue
        bias = next((a for a, p in tensors.items() if p.dim() == 1), None)
        out, inn = weight.shape if isinstance(module, nn.Linear) else weight.shape[::-1]
        linear = _Linear(owner, _join(owner, next(a for a, p in tensors.items() if p is weight)),
                         bias and _join(owner, bias), list(weight.shape))
        if (inn, out) == (d, 3 * d):
            block_tensors.linear(linear, "attn.c_attn", 3 * d)
        elif (inn, out) == (d, d):
            squares.append(linear)
        elif (inn, out) == (d, hs) and shape.heads > 1:
            per_head.append(linear)
        elif inn == d:  # into the MLP's width: c_fc
            block_tensors.linear(linear, "mlp.c_fc", shape.inner, fits=out == shape.inner,
                                 wanted=f"[{d}, {shape.inner}] (as nn.Linear: [{shape.inner}, {d}])")
        elif out == d:  # back out of it: the MLP's c_proj
            block_tensors.linear(linear, "mlp.c_proj", d, fits=inn == shape.inner,
                                 wanted=f"[{shape.inner}, {d}] (as nn.Linear: [{d}, {shape.inner}])")
        else:
            block_tensors.no_counterpart(owner, tensors)
    _attention(squares, per_head, shape, block_tensors)
    ordered = _ordered_layernorms(layernorms)
    for (owner, tensors), gpt2 in zip(ordered, ("ln_1", "ln_2")):
        for (attribute, _), role in zip(tensors.items(), _weight_and_bias(list(tensors.items()))):
            block_tensors.put(_join(owner, attribute), f"{gpt2}.{role}")
    for owner, tensors in ordered[2:]:
        block_tensors.no_counterpart(owner, tensors)  # GPT-2's block has two LayerNorms
    block_tensors.complete()


def _multihead_attention(attention: nn.MultiheadAttention, name: str, block_tensors: _BlockTensors):
    """nn.MultiheadAttention stores query, key and value as one [3·d, d] in_proj_weight: c_attn transposed."""
    prefix = f"{name}." if name else ""
    block_tensors.put(f"{prefix}in_proj_weight", "attn.c_attn.weight", "transpose")
    block_tensors.put(f"{prefix}out_proj.weight", "attn.c_proj.weight", "transpose")
    for attribute, tensor, present in [("in_proj_bias", "attn.c_attn.bias", attention.in_proj_bias is not None),
                                       ("out_proj.bias", "attn.c_proj.bias", attention.out_proj.bias is not None)]:
        if present:
            block_tensors.put(f"{prefix}{attribute}", tensor)
        else:
            block_tensors.problem(f"{block_tensors.prefix}.{prefix}{attribute}: none (bias=False): GPT-2's attention "
                                  f"has biases — build nn.MultiheadAttention with bias=True", tensor)


def _attention(squares: list[_Linear], per_head: list[_Linear], shape: _Shape, block_tensors: _BlockTensors):
    """Query, key and value as pieces of c_attn (per projection or per head), and the output projection."""
    d, hs = shape.width, shape.head_size
    offsets = {"q": 0, "k": d, "v": 2 * d}
    heads = _heads(per_head, shape.heads)
    if len(squares) not in (0, 1, 4) or (per_head and not heads):
        block_tensors.problem(f"{block_tensors.prefix}: attention's query, key and value are neither one [{3 * d}, {d}] "
                              f"matrix, nor three of [{d}, {d}], nor three of [{hs}, {d}] per head: they cannot hold "
                              f"GPT-2's c_attn", "attn.c_attn.weight", "attn.c_attn.bias")
        return
    for linear, role in zip(squares, _roles(squares, ["q", "k", "v", "proj"] if len(squares) == 4 else ["proj"])):
        if role == "proj":
            block_tensors.linear(linear, "attn.c_proj", d)
        else:
            block_tensors.piece(linear, offsets[role], d, d)
    for head, members in enumerate(heads):
        for linear, role in zip(members, _roles(members, ["q", "k", "v"])):
            block_tensors.piece(linear, offsets[role] + head * hs, hs, d)


def _roles(linears: list[_Linear], order: list[str]) -> list[str]:
    """Each linear's role by the words of its name (W_query, to_k, out_proj), else by its place in `order`."""
    named = []
    for linear in linears:
        words = set(_words(linear.owner.rsplit(".", 1)[-1]))
        role = next((role for role in ("q", "k", "v") if words & ROLE_WORDS[role]), None)
        named.append(role or ("proj" if words & ROLE_WORDS["proj"] else None))
    return named if sorted(map(str, named)) == sorted(order) else order[:len(linears)]


def _heads(per_head: list[_Linear], n_head: int) -> list[list[_Linear]]:
    """The per-head projections grouped by head (their owners' parent), heads in order; [] if they do not add up."""
    heads: dict[str, list[_Linear]] = {}
    for linear in per_head:
        heads.setdefault(linear.owner.rpartition(".")[0], []).append(linear)
    groups = list(heads.values())
    return groups if len(groups) == n_head and all(len(group) == 3 for group in groups) else []


def _ordered_layernorms(layernorms: list) -> list:
    """ln_1 then ln_2: by the digit in their names (ln1, norm_2), else in the order they were defined."""
    digits = [re.findall(r"\d", owner.rsplit(".", 1)[-1]) for owner, _ in layernorms]
    if len(layernorms) == 2 and all(digits) and digits[0][-1] != digits[1][-1]:
        return sorted(layernorms, key=lambda found: re.findall(r"\d", found[0].rsplit(".", 1)[-1])[-1])
    return layernorms
