"""The writing model's matrix products: a row gets the same bits alone or among other rows.

The classroom engine (model/serving/engine.py) multiplies every student's row by each weight matrix at
once. A BLAS picks its kernel by the number of rows: a single row goes through a matrix-vector
kernel, several through a matrix-matrix kernel, and the two add the same products up in different
orders. So the last bits of a student's logits, and now and then a sampled token, would depend on
how many others are writing. Two kernels here do not:

- **Our own, in float32** (`row_products.cpp`, on x86 CPUs with AVX2): each output is one running sum over
  the inputs in order, for any number of rows, and each weight is packed once in blocks of 32 outputs that
  read as one stream of memory. PyTorch compiles it on first use (model/serving/kernels.py: a C++ compiler and
  ninja are needed) and keeps the build; where it cannot be built, a line on stderr says why and oneDNN multiplies.
- **oneDNN's** (the library behind PyTorch's CPU convolutions), in bfloat16, and in float32 where ours
  cannot run. It adds up every row the same way for any number of rows from two up, whatever the other rows
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

from model.serving.kernels import load_kernel

EXACT_ROWS = 32  # up to this many rows (a class writing one token each) a product runs on exactly its rows
ROW_STEP = 32  # past EXACT_ROWS (prompts read together), on the next multiple of this: a few zero rows at most
KERNELS = ("row_products", "onednn")


def available() -> bool:
    """oneDNN is built into PyTorch's CPU wheels for x86; elsewhere the writer keeps nn.Linear."""
    return torch.backends.mkldnn.is_available()


def bfloat16_available() -> bool:
    """Whether the writer can multiply in bfloat16 here. oneDNN does it on x86 CPUs with AVX-512 (BW, VL and
    DQ) or AVX-NE-CONVERT; one with AVX2 only (many laptops, AMD's before Zen 4) has neither, and packing a
    bfloat16 weight fails there. Without oneDNN the writer keeps nn.Linear, which multiplies bfloat16 anywhere."""
    return not available() or torch.ops.mkldnn._is_mkldnn_bf16_supported()


def row_products_kernel():
    """Our float32 kernel (row_products.cpp), compiled on first use; None where it cannot run or be built here."""
    return load_kernel("row_products", "the writer's float32 products", "multiplies with oneDNN")


def default_kernel(dtype: torch.dtype) -> str:
    """Ours for float32 where it runs, oneDNN's otherwise (bfloat16 always)."""
    return "row_products" if dtype == torch.float32 and row_products_kernel() is not None else "onednn"


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
            self.packed_weight = row_products_kernel().pack(weight)  # (out, in) -> (out / 32, in, 32)
        else:
            self.packed_weight = torch.ops.mkldnn._reorder_linear_weight(weight, None)
        self.pad_lone_row = not self._lone_row_sums_as_among_others()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)  # (B, T, in) -> (B*T, in): every token is a row
        n = rows.size(0)
        computed = rows_computed(n, self.pad_lone_row)
        if computed > n:
            rows = F.pad(rows, (0, 0, 0, computed - n))  # rows of zeros, which change no other row's bits
        return self._product(rows)[:n].view(*x.shape[:-1], self.out_features)

    def _product(self, rows: torch.Tensor) -> torch.Tensor:
        if self.kernel == "row_products":
            return row_products_kernel().linear(rows, self.packed_weight, self.bias, self.out_features)
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
                f"{', a lone row padded' if self.pad_lone_row else ''}")


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
