"""The writer's attention for a written token: every row's new position, in one call a layer.

The course's CausalSelfAttention (model/gpt.py) attends row by row, each row over its own cache, with
PyTorch's fused attention: clear, and the right tool for a prompt's chunk of positions. Writing, each row
reads one new position, and that loop costs a dozen small operations a row and a layer. Our kernel
(`row_attention.cpp`, float32 or bfloat16 on x86 CPUs with AVX2, compiled on first use like the products' own) stores each
row's new key and value and attends each (row, head) on its own in one fixed order: a row's bits are the same
alone or among others, as the classroom engine needs (`check_row_invariance` confirms it where the app runs).
Where it cannot be built, a line on stderr says why and the course's attention does the work.
"""
import torch

from model.gpt import GPT, CausalSelfAttention, KVCache
from model.serving.kernels import load_kernel

KERNEL_DTYPES = (torch.float32, torch.bfloat16)  # what row_attention.cpp reads and writes


def row_attention_kernel():
    """Our attention for new positions (row_attention.cpp); None where it cannot run or be built here."""
    return load_kernel("row_attention", "the writer's attention for written tokens",
                       "attends row by row with PyTorch's attention")


class NewPositionAttention(CausalSelfAttention):
    """The course's attention (the very module, its parameters and all), a written token's step done by our kernel."""

    def forward(self, x: torch.Tensor, caches: list[KVCache] | None = None) -> torch.Tensor:
        if caches is None or x.size(1) != 1:  # a prompt's chunk, or no cache: the course's code
            return super().forward(x, caches)
        qkv = self.c_attn(x)  # (B, 1, 3 * C): each row's query, key and value for its new position
        y = row_attention_kernel().attend_new_positions(qkv, [cache.keys for cache in caches],
                                                        [cache.values for cache in caches], self.layer,
                                                        [cache.length for cache in caches], self.n_head)
        for cache in caches:
            cache.stored(self.layer, 1)
        return self.c_proj(y)  # y: (B, 1, C), heads side by side


def use_row_attention(model: GPT) -> GPT:
    """`model` (in place) with each layer's attention computing a written token by our kernel, where it runs: a
    float32 or bfloat16 writer on the CPU. Elsewhere `model` is returned as it is."""
    weight = model.transformer.wte.weight
    if weight.device.type != "cpu" or weight.dtype not in KERNEL_DTYPES or row_attention_kernel() is None:
        return model
    for block in model.transformer.h:
        if type(block.attn) is CausalSelfAttention:  # the course's own; a variant computes something else
            block.attn.__class__ = NewPositionAttention  # the same module, computed by the subclass from now on
    return model
