"""The writing model's matrix products: a row gets the same bits alone or among other rows.

The classroom engine (model/serving/engine.py) multiplies every student's row by each weight matrix at
once. A BLAS picks its kernel by the number of rows: a single row goes through a matrix-vector
kernel, several through a matrix-matrix kernel, and the two add the same products up in different
orders. So the last bits of a student's logits, and now and then a sampled token, would depend on
how many others are writing. Two kernels here do not:

- **Our own** (`row_products.cpp`, on x86 CPUs with AVX2), in float32, and in bfloat16 where oneDNN cannot
  multiply it: each output is one float32 running sum over the inputs in order, for any number of rows, and each
  weight is packed once in blocks of 32 outputs that read as one stream of memory (in bfloat16, half the bytes:
  any AVX2 CPU widens them to float32 exactly, with no bfloat16 instructions). PyTorch compiles it on first use
  (model/serving/kernels.py: a C++ compiler and ninja are needed) and keeps the build; where it cannot be built,
  a line on stderr says why and oneDNN multiplies.
- **oneDNN's** (the library behind PyTorch's CPU convolutions), in bfloat16 on CPUs with AVX-512 (there its
  bfloat16 instructions do twice the multiply-adds, which a class's many rows use), and where ours cannot run.
  It adds up every row the same way for any number of rows from two up, whatever the other rows
  hold. A lone row mostly takes that same path too, but for some shapes (a long sum, such as the MLP's
  second product) oneDNN splits a lone row's sum over the cores instead: there, and only there, a lone row
  is padded with a row of zeros. Each weight is packed once into oneDNN's own blocked layout.

`model.serving.engine.check_row_invariance` confirms the property on the machine the app runs on.

oneDNN also builds a kernel for each number of rows it meets, and keeps it: memory that grows with
every new group size a class happens to make. Past EXACT_ROWS a product is padded up to a multiple of
ROW_STEP, so a server meets a bounded set of row counts, and `build_kernels` builds them all at start.
"""
import torch
import torch.nn as nn
from torch.nn import functional as F

from model.gpt import MLP
from model.serving.kernels import writer_kernels

EXACT_ROWS = 32  # up to this many rows (a class writing one token each) a product runs on exactly its rows
ROW_STEP = 32  # past EXACT_ROWS (prompts read together), on the next multiple of this: a few zero rows at most
KERNELS = ("row_products", "onednn")


def available() -> bool:
    """oneDNN is built into PyTorch's CPU wheels for x86; elsewhere the writer keeps nn.Linear."""
    return torch.backends.mkldnn.is_available()


def onednn_multiplies_bfloat16() -> bool:
    """Whether oneDNN multiplies bfloat16 here: on x86 CPUs with AVX-512 (BW, VL and DQ) or AVX-NE-CONVERT. One
    with AVX2 only (many laptops, AMD's before Zen 4) has neither, and packing a bfloat16 weight fails there."""
    return available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def bfloat16_available() -> bool:
    """Whether the writer can multiply in bfloat16 here: with oneDNN, or else with our kernel (any x86 CPU with
    AVX2 and a C++ compiler). Without oneDNN (not an x86 build of PyTorch) the writer keeps nn.Linear, which
    multiplies bfloat16 anywhere."""
    return not available() or onednn_multiplies_bfloat16() or writer_kernels() is not None


def default_kernel(dtype: torch.dtype) -> str:
    """Ours where it runs, but oneDNN's for bfloat16 where oneDNN multiplies it; oneDNN's otherwise. One kernel
    for every number of rows: a row alone and among others must be added up by the same one."""
    if dtype == torch.bfloat16 and onednn_multiplies_bfloat16():
        return "onednn"
    ours = dtype in (torch.float32, torch.bfloat16) and writer_kernels() is not None
    return "row_products" if ours else "onednn"


class RowInvariantLinear(nn.Module):
    """nn.Linear's function (inference only), computed by a row-invariant kernel with the weight packed once.

    It keeps the very weight and bias of the nn.Linear it replaces (the same Parameters: the checkpoint's
    names, the tie and the sharing with the reference survive), and multiplies by a packed copy of the
    weight in its kernel's own layout. kernel: "row_products" or "onednn"; by default `default_kernel`.
    """

    def __init__(self, linear: nn.Linear, kernel: str | None = None):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias
        self.kernel = kernel or default_kernel(linear.weight.dtype)
        if self.kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, got {self.kernel!r}")
        weight = linear.weight.detach().contiguous()
        if self.kernel == "row_products":
            self.packed_weight = writer_kernels().pack(weight)  # (out, in) -> (out / 32, in, 32)
        else:
            self.packed_weight = torch.ops.mkldnn._reorder_linear_weight(weight, None)
        self.gelu = False  # whether our kernel applies GELU to the outputs too (see `gelu_in_products`)
        self.pad_lone_row = not self._lone_row_sums_as_among_others()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)  # (B, T, in) -> (B*T, in): every token is a row
        if self.kernel == "row_products":  # one path for any number of rows: nothing to pad
            return self._product(rows).view(*x.shape[:-1], self.out_features)
        n = rows.size(0)
        computed = rows_computed(n, self.pad_lone_row)
        if computed > n:
            rows = F.pad(rows, (0, 0, 0, computed - n))  # rows of zeros, which change no other row's bits
        return self._product(rows)[:n].view(*x.shape[:-1], self.out_features)

    def _product(self, rows: torch.Tensor) -> torch.Tensor:
        if self.kernel == "row_products":
            return writer_kernels().linear(rows, self.packed_weight, self.bias, self.out_features, self.gelu, None)
        return torch.ops.mkldnn._linear_pointwise(rows, self.packed_weight, self.bias, "none", [], "")

    @torch.inference_mode()
    def _lone_row_sums_as_among_others(self) -> bool:
        """Whether a row alone gets the very bits it gets among others, with this shape on this many cores
        (oneDNN chooses its path by shape and cores, never by the values; ours has one path). Eight probe rows,
        each alone: a half-precision output can round two different sums to the same number, never eight rows'."""
        probe = torch.randn(8, self.in_features, generator=torch.Generator().manual_seed(0)).to(self.weight.dtype)
        among = self._product(probe)
        return all(torch.equal(self._product(probe[i:i + 1]), among[i:i + 1]) for i in range(len(probe)))

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, packed for {self.kernel}"
                f"{', then GELU' if self.gelu else ''}{', a lone row padded' if self.pad_lone_row else ''}")


def rows_computed(n: int, pad_lone_row: bool = False) -> int:
    """How many rows a product of `n` rows runs on: n itself up to EXACT_ROWS, else the next multiple of ROW_STEP.
    A lone row becomes two where oneDNN would sum it on another path (see RowInvariantLinear)."""
    if n == 1 and pad_lone_row:
        return 2  # a lone row would take another path here
    return n if n <= EXACT_ROWS else -(-n // ROW_STEP) * ROW_STEP


_built: set[tuple] = set()  # (in, out, dtype, bias?, rows): the kernels this process has built


@torch.inference_mode()
def build_kernels(model: nn.Module, most_rows: int) -> int:
    """Run each shape of product in `model` once for every row count a product of up to `most_rows` rows runs on,
    so that oneDNN builds its kernels now, before the first request, and memory stays flat afterwards.
    Returns how many row counts there are; a kernel this process has built already is not built again.
    Our own kernel (row_products.cpp) has nothing to build: one code for every count."""
    counts = sorted({rows_computed(n) for n in range(1, most_rows + 1)})
    for layer in model.modules():
        if not isinstance(layer, RowInvariantLinear) or layer.kernel != "onednn":
            continue
        for n in counts:  # oneDNN keys a kernel by shapes and types, never by which weight
            key = (layer.in_features, layer.out_features, layer.weight.dtype, layer.bias is None, n)
            if key not in _built:
                layer._product(torch.zeros(n, layer.in_features, dtype=layer.weight.dtype))
                _built.add(key)
    return len(counts)


def use_row_invariant_products(model: nn.Module, kernel: str | None = None) -> nn.Module:
    """Replace every nn.Linear of `model` (in place) by a RowInvariantLinear (its kernel: see RowInvariantLinear)."""
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.Linear):
                setattr(parent, name, RowInvariantLinear(child, kernel))
    return model


def gelu_in_products(model: nn.Module) -> nn.Module:
    """`model` (in place) with each MLP's GELU computed by our kernel at the end of the MLP's first product (c_fc),
    where that product is ours: one call instead of two, and the MLP's wide hidden layer written once. The MLP's
    `gelu` becomes nn.Identity, so that its forward (model/gpt.py) is unchanged and GELU is applied once."""
    for mlp in model.modules():
        if (isinstance(mlp, MLP) and isinstance(mlp.c_fc, RowInvariantLinear) and mlp.c_fc.kernel == "row_products"
                and type(mlp.gelu) is nn.GELU and mlp.gelu.approximate == "tanh"):  # GPT-2's; another GELU stays
            mlp.c_fc.gelu, mlp.gelu = True, nn.Identity()
    return model
