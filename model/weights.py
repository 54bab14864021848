"""OpenAI's GPT-2 weights, from Hugging Face transformers into our GPT.

Three things happen here, each in one place:
- `load_reference`: the transformers `GPT2LMHeadModel`, from the hub or a local folder.
- `build_mapping`: the mapping table, built from the two state dicts: which reference tensor goes
  to which of our parameters, and how (copied, transposed, or tied).
- `load_from_reference`: walks the table, checks every shape first, then loads. Its `bug` option
  loads wrongly on purpose, in one of the ways listed in `BUGS`, so verification can catch it.
"""
import os
import socket
import urllib.parse
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.pytorch_utils import Conv1D

from model.gpt import GPT, GPTConfig
from model.matvec import use_split_k

class ModelLoadError(Exception):
    """The reference weights cannot be had; the message says why and what to do."""


class WeightMismatchError(ValueError):
    """The mapping refused to load: shapes or names of the two models do not line up."""

    def __init__(self, mismatches: list[str], keys: list[str] | None = None):
        self.mismatches = mismatches  # one message per tensor that does not fit
        self.keys = keys if keys is not None else []  # our names of those tensors, in the same order
        shown = "\n  ".join(mismatches[:6]) + (f"\n  ... and {len(mismatches) - 6} more" if len(mismatches) > 6 else "")
        super().__init__(f"refused to load: {len(mismatches)} tensor(s) do not fit\n  {shown}")


# --- the reference -------------------------------------------------------------------------------

def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks cuda, then mps, then cpu; a named device that is absent is an error."""
    available = {
        "cuda": torch.cuda.is_available(),
        "mps": torch.backends.mps.is_available(),
        "cpu": True,
    }
    if name == "auto":
        return torch.device(next(kind for kind, present in available.items() if present))
    kind = name.split(":")[0]
    if kind not in available:
        raise ModelLoadError(f"unknown device {name!r}: use auto, cpu, cuda or mps")
    if not available[kind]:
        raise ModelLoadError(f"device {name!r} was asked for, but torch sees none on this machine: "
                             f"use --device auto (picks what is there) or --device cpu")
    return torch.device(name)


def load_reference(name_or_dir: str, device: str = "auto", allow_pickle: bool = False) -> GPT2LMHeadModel:
    """transformers' GPT2LMHeadModel in float32, eval mode, on `device`.

    name_or_dir: a hub id (gpt2, gpt2-medium, openai-community/gpt2, ...) or a folder written by
    `save_pretrained`. Weights load from safetensors only, unless allow_pickle permits a
    pytorch_model.bin (unpickling a file can run code hidden in it).
    """
    target = resolve_device(device)
    local = Path(name_or_dir).expanduser()
    if local.is_dir():
        _check_local_checkpoint(local, allow_pickle)
        source = str(local)
    elif _looks_like_path(name_or_dir):
        raise ModelLoadError(f"no folder at {name_or_dir!r}: pass a folder written by save_pretrained, "
                             f"or a hub id such as gpt2")
    else:
        source = name_or_dir
        if not _hub_cached(name_or_dir) and not _hub_reachable():
            raise ModelLoadError(
                f"cannot load {name_or_dir!r}: no network and no cached copy. Run once with a network "
                f"(the weights are cached for later), or pass a folder saved with save_pretrained: "
                f"--model ./gpt2-local")
    try:
        config, _ = GPT2Config.get_config_dict(source)  # the plain dict: its model_type is the checkpoint's own
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"cannot read a GPT-2 config from {name_or_dir!r}: {_first_line(error)}") from None
    if config.get("model_type") != "gpt2":
        raise ModelLoadError(f"{name_or_dir!r} is a {config.get('model_type')!r} checkpoint, not GPT-2")
    try:
        # device_map hands placement to accelerate: tensors go straight to the device, no CPU copy first.
        reference = GPT2LMHeadModel.from_pretrained(
            source, dtype=torch.float32, device_map=str(target),
            use_safetensors=None if allow_pickle else True)
    except Exception as error:  # noqa: BLE001 - every cause gets one readable line
        raise ModelLoadError(f"cannot load the weights of {name_or_dir!r}: {_first_line(error)} "
                             f"(a truncated or damaged file? download or save it again)") from None
    reference.eval().requires_grad_(False)  # read-only: the reference is what we check against
    return reference


def _check_local_checkpoint(folder: Path, allow_pickle: bool):
    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"{str(folder)!r} is not a GPT-2 checkpoint: it has no config.json "
                             f"(make one with GPT2LMHeadModel.save_pretrained)")
    has_safetensors = any(folder.glob("*.safetensors"))
    has_pickle = any(folder.glob("pytorch_model*.bin"))
    if not has_safetensors and not (allow_pickle and has_pickle):
        hint = (" It has a pickle checkpoint (pytorch_model.bin): convert it with save_pretrained, "
                "or pass --allow-pickle if you trust its source." if has_pickle else "")
        raise ModelLoadError(f"{str(folder)!r} has no .safetensors weights.{hint}")


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or os.sep in name and name.count("/") != 1


def _hub_cached(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache
    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick look before asking the hub: without a network it would retry for half a minute."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    from huggingface_hub import constants
    host = urllib.parse.urlparse(constants.ENDPOINT).hostname
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


# --- the mapping table ---------------------------------------------------------------------------

@dataclass(frozen=True)
class MappingRow:
    ours: str  # our parameter name
    reference: str  # the reference's tensor name
    our_shape: tuple
    reference_shape: tuple
    op: str  # copy | transpose | tied, or, in a broken load, the wrong thing done instead
    bug: bool = False  # True where a deliberate bug changed what this row does

    def to_dict(self) -> dict:
        return {**asdict(self), "our_shape": list(self.our_shape), "reference_shape": list(self.reference_shape)}


def build_mapping(student: GPT, reference: GPT2LMHeadModel) -> list[MappingRow]:
    """One row per parameter of ours: where its values come from in the reference.

    The names line up one to one (our classes use the checkpoint's names). What differs is the
    layout: transformers' Conv1D stores a weight (in, out), nn.Linear stores it (out, in).
    """
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


def _shape_problem(row: MappingRow, reference_keys) -> str | None:
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


# --- broken loads, on purpose --------------------------------------------------------------------

@dataclass(frozen=True)
class Bug:
    name: str
    summary: str  # one sentence a teacher can read aloud
    silent: bool  # True: loads and runs, but computes the wrong thing; False: the mapping refuses it
    explanation: str  # what the lesson takes from it


BUGS = {bug.name: bug for bug in [
    Bug("skip_transpose_square",
        "Forget to transpose attn.c_proj, the one square (768×768) weight of every block.",
        silent=True,
        explanation="A square matrix fits either way round, so no shape check can notice: the model "
                    "loads, runs, and writes nonsense. Only comparing outputs catches it."),
    Bug("raw_copy_block0_c_attn",
        "Copy block 0's c_attn as raw memory, without transposing: [768, 2304] read as [2304, 768].",
        silent=True,
        explanation="A plain copy_ of a [768, 2304] tensor into [2304, 768] raises a shape error; "
                    "copying the raw memory instead goes through and scrambles every value's place."),
    Bug("skip_transpose_strict",
        "Forget every transpose, but check shapes before copying.",
        silent=False,
        explanation="The shape check refuses all the non-square weights: the mapping catches the bug "
                    "before any wrong number is computed. (The square ones would have passed.)"),
    Bug("untied_head",
        "Leave lm_head as its own randomly initialised matrix instead of tying it to wte.",
        silent=True,
        explanation="GPT-2 has no separate output matrix: lm_head is the token embedding. A head "
                    "left untied loads fine and predicts random tokens."),
    Bug("ffn_off_by_one",
        "Build our MLP with 4·d+1 hidden units instead of 4·d.",
        silent=False,
        explanation="The parameter count is almost the same, but the mapping refuses at the first MLP "
                    "tensor: checking every shape turns an architecture slip into a clear message."),
]}


def _apply_bug(rows: list[MappingRow], bug: str | None) -> list[MappingRow]:
    """The mapping as the buggy loader would walk it; rows a bug changes get bug=True."""
    def broken(row, op):
        return replace(row, op=op, bug=True)

    if bug == "skip_transpose_square":
        return [broken(r, "copy") if r.op == "transpose" and r.our_shape[0] == r.our_shape[1] else r for r in rows]
    if bug == "skip_transpose_strict":
        return [broken(r, "copy") if r.op == "transpose" else r for r in rows]
    if bug == "raw_copy_block0_c_attn":
        return [broken(r, "raw") if r.ours == "transformer.h.0.attn.c_attn.weight" else r for r in rows]
    if bug == "untied_head":
        return [broken(r, "random") if r.op == "tied" else r for r in rows]
    return rows  # ffn_off_by_one changes the architecture, not the table


def mapping_for(student: GPT, reference: GPT2LMHeadModel, bug: str | None = None) -> list[MappingRow]:
    """The mapping table as a load with `bug` walks it (the correct one for bug=None)."""
    return _apply_bug(build_mapping(student, reference), bug)


def check_bug(bug: str | None):
    if bug is not None and bug not in BUGS:
        raise ValueError(f"unknown bug {bug!r}: choose one of {', '.join(BUGS)} (or none)")


# --- loading -------------------------------------------------------------------------------------

@torch.no_grad()
def load_from_reference(reference: GPT2LMHeadModel, bug: str | None = None) -> GPT:
    """Our GPT with the reference's weights, loaded by walking the mapping table.

    Nothing is copied: each of our parameters is the reference's tensor, or a transposed view of
    it, so the student costs no extra memory and every broken variant shares what it leaves alone.
    Every shape is checked before anything loads; a misfit raises WeightMismatchError.
    """
    check_bug(bug)
    config = GPTConfig.from_hf(reference.config)
    if bug == "ffn_off_by_one":
        config = replace(config, n_inner=config.n_inner + 1)
    with torch.device("meta"):  # shapes only: the values come from the reference below
        student = GPT(config)
    rows = mapping_for(student, reference, bug)
    theirs = reference.state_dict()
    problems = {row.ours: problem for row in rows if (problem := _shape_problem(row, theirs))}
    if problems:
        raise WeightMismatchError(list(problems.values()), list(problems))
    loaded = {row.ours: _load_one(row, theirs) for row in rows}
    student.load_state_dict(loaded, assign=True)
    if not any(row.op == "random" for row in rows):
        student.lm_head.weight = student.transformer.wte.weight  # one tensor, two names
    return student.eval()


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


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_student(reference: GPT2LMHeadModel, dtype: str = "float32") -> GPT:
    """The correctly loaded GPT that writes, laid out for the speed of writing one token at a time.

    float32 shares the reference's memory. On the CPU it computes each new token's matrix-vector
    products split-K (model/matvec.py), for which it keeps one copy of the tied embedding the other
    way round. bfloat16 and float16 are a copy, which halves the bytes read per token. Verification
    always uses float32. On CUDA it turns cuDNN's attention off for the process (see below).
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    device = reference.device
    if DTYPES[dtype] == torch.float16 and device.type == "cpu":
        raise ValueError("float16 is for GPUs; on the CPU use --dtype bfloat16")
    if device.type == "cuda":
        # Process-wide: in half precision SDPA would pick cuDNN's attention, which builds a plan for each
        # new sequence length (40-95 ms each on an H100), and writing reaches a new length every token.
        torch.backends.cuda.enable_cudnn_sdp(False)
    student = load_from_reference(reference)
    if dtype != "float32":
        # Each matrix in nn.Linear's own (out, in) layout, not GPT-2's (in, out): oneDNN's bfloat16
        # matrix-vector product reads it 1.3-1.6x faster on a CPU. The tied matrix is one parameter.
        for param in student.parameters():
            param.data = param.data.to(DTYPES[dtype], memory_format=torch.contiguous_format)
        return student
    if device.type != "cpu":
        return student
    # Split-K needs every matrix stored (in, out). The block matrices are (GPT-2's Conv1D layout); the tied
    # wte/lm_head is (vocab, n_embd), so it gets one copy the other way round: 154 MB for gpt2, and still
    # one tensor under both names.
    by_column = student.lm_head.weight.t().contiguous()
    student.lm_head.weight = student.transformer.wte.weight = torch.nn.Parameter(by_column.t(), requires_grad=False)
    return use_split_k(student)


# --- no weights at hand --------------------------------------------------------------------------

# The hub models' shapes (GPT2Config's defaults are gpt2's), so a stand-in can be built offline.
HUB_SHAPES = {
    "gpt2": {},
    "gpt2-medium": dict(n_layer=24, n_head=16, n_embd=1024),
    "gpt2-large": dict(n_layer=36, n_head=20, n_embd=1280),
    "gpt2-xl": dict(n_layer=48, n_head=25, n_embd=1600),
}


def random_reference(name: str, device: str = "auto") -> GPT2LMHeadModel:
    """A randomly initialised GPT2LMHeadModel of hub model `name`'s shape, for when its weights
    cannot be had: loading and verifying work the same, but the text it writes is gibberish."""
    shape = HUB_SHAPES.get(name.removeprefix("openai-community/"))
    if shape is None:
        raise ModelLoadError(f"no random stand-in for {name!r}: one exists for {', '.join(HUB_SHAPES)}")
    target = resolve_device(device)
    with torch.random.fork_rng(devices=[]):  # the same stand-in every time, global RNG untouched
        torch.manual_seed(0)
        reference = GPT2LMHeadModel(GPT2Config(**shape))
    return reference.to(target).eval().requires_grad_(False)
