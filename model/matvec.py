"""One token's matrix-vector products, spread over the CPU's cores ("split-K").

Writing one token multiplies one vector by every weight matrix once: for gpt2 in float32 that reads
495 MB per token, so the speed of memory sets the speed of writing. For a product with a single row,
x @ W, the BLAS behind nn.Linear (MKL, on the CPUs the project was measured on) streams W at about
one core's share of the memory bandwidth, whether it is given one thread or two.

Split-K cuts the dimension the product sums over (K, the input features) into one part per thread.
Each part of x meets its own rows of W, stored one after the other in memory; `torch.bmm` runs the
parts side by side, each thread streaming its own block of W; the partial products add up to x @ W:

    x @ W  =  x[:384] @ W[:384]  +  x[384:] @ W[384:]          (768 inputs, two threads)

The same products, added up in another order: the result differs from F.linear's in float32's last
digits (at most 1e-6 of the largest output on gpt2's matrices), as the results of any two BLAS kernels do.
"""
import torch
import torch.nn as nn
from torch.nn import functional as F


class SplitKLinear(nn.Module):
    """nn.Linear's function, with the matrix-vector product of a single token computed split-K.

    It holds the very weight and bias of the nn.Linear it replaces (no copy). The weight must be
    stored (in, out) in memory, as GPT-2's checkpoint stores it, so each part is one contiguous block.
    Anything but a single token (a prompt of many) goes to F.linear, whose matrix product already uses
    every core.
    """

    def __init__(self, linear: nn.Linear, parts: int):
        super().__init__()
        if not linear.weight.t().is_contiguous():
            raise ValueError("split-K needs the weight stored (in, out): nn.Linear's weight as a transposed view")
        if linear.in_features % parts:
            raise ValueError(f"{linear.in_features} input features do not split into {parts} equal parts")
        self.weight, self.bias = linear.weight, linear.bias  # the same Parameters: ties and sharing survive
        self.in_features, self.out_features, self.parts = linear.in_features, linear.out_features, parts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[:-1].numel() != 1:
            return F.linear(x, self.weight, self.bias)
        # (in, out) memory as `parts` blocks of rows: a view, nothing moves.
        rows = self.weight.t().view(self.parts, self.in_features // self.parts, self.out_features)
        partial = torch.bmm(x.reshape(self.parts, 1, -1), rows)  # (parts, 1, out): one product per thread
        out = partial.sum(0)
        if self.bias is not None:
            out += self.bias
        return out.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, parts={self.parts}"


def use_split_k(model: nn.Module, threads: int | None = None) -> nn.Module:
    """Replace every nn.Linear of `model` (in place) by a SplitKLinear with one part per thread.

    threads: torch's thread count by default. Each layer takes the largest number of parts, up to
    `threads`, that divides its input features; with one part nothing is replaced.
    """
    threads = threads or torch.get_num_threads()
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.Linear):
                parts = max(p for p in range(1, threads + 1) if child.in_features % p == 0)
                if parts > 1:
                    setattr(parent, name, SplitKLinear(child, parts))
    return model
