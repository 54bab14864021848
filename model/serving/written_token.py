"""The writer's step for a written token: each layer of the course's GPT in one C++ call for every row.

The course's Block (model/gpt.py) is clear, and the right code for a prompt's chunk of positions. Writing, each
row reads one new position, and a Block then makes a dozen PyTorch calls, with Python between them, around
products that take a few tenths of a millisecond: on the CPU, a sixth of a lone token's time. Our kernel
(`written_token.cpp`, float32 or bfloat16 on x86 CPUs with AVX2, built with the products' own) computes the same
function in one call a layer: LayerNorm, the products (GELU and the residual adds at their end), and the attention
of each (row, head) over the row's own cache, in one fixed order. A row's bits are the same alone or among
others, as the classroom engine needs (`check_row_invariance` confirms it where the app runs). Where our kernels
cannot be built, the course's Block does the work.
"""
import torch
from torch import nn

from model.gpt import GPT, MLP, Block, CausalSelfAttention, KVCache
from model.serving.kernels import writer_kernels
from model.serving.products import RowInvariantLinear

KERNEL_DTYPES = (torch.float32, torch.bfloat16)  # what written_token.cpp reads and writes


class WrittenTokenBlock(Block):
    """The course's Block (the very module, its parameters and all), a written token's step done by our kernel."""

    def forward(self, x: torch.Tensor, caches: list[KVCache] | None = None) -> torch.Tensor:
        if caches is None or x.size(1) != 1:  # a prompt's chunk, or no cache: the course's code
            return super().forward(x, caches)
        y = writer_kernels().written_token_layer(x, self.kernel_params, self.ln_1.eps, [cache.keys for cache in caches],
                                                 [cache.values for cache in caches], self.attn.layer,
                                                 [cache.length for cache in caches], self.attn.n_head)
        for cache in caches:
            cache.stored(self.attn.layer, 1)
        return y  # (B, 1, C)


def kernel_params(block: Block) -> list[torch.Tensor] | None:
    """The block's parameters in the order written_token.cpp reads them, or None where the kernel does not compute
    this block: a variant of the course's modules, or products that are not ours (oneDNN's, or GELU left out)."""
    attn, mlp = block.attn, block.mlp
    products = [attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj]
    if (type(block) is not Block or type(attn) is not CausalSelfAttention or type(mlp) is not MLP
            or type(mlp.gelu) is not nn.Identity or not mlp.c_fc.gelu  # GPT-2's GELU, at the end of c_fc
            or any(type(p) is not RowInvariantLinear or p.kernel != "row_products" or p.bias is None for p in products)
            or any(type(norm) is not nn.LayerNorm or norm.weight is None or norm.bias is None
                   for norm in (block.ln_1, block.ln_2))):
        return None
    return [block.ln_1.weight, block.ln_1.bias, attn.c_attn.packed_weight, attn.c_attn.bias, attn.c_proj.packed_weight,
            attn.c_proj.bias, block.ln_2.weight, block.ln_2.bias, mlp.c_fc.packed_weight, mlp.c_fc.bias,
            mlp.c_proj.packed_weight, mlp.c_proj.bias]


def use_written_token_step(model: GPT) -> GPT:
    """`model` (in place) with each layer computing a written token by our kernel, where it runs: a float32 or
    bfloat16 writer on the CPU whose products are ours (products.use_row_invariant_products, then gelu_in_products).
    Elsewhere `model` is returned as it is."""
    weight = model.transformer.wte.weight
    if weight.device.type != "cpu" or weight.dtype not in KERNEL_DTYPES or writer_kernels() is None:
        return model
    for block in model.transformer.h:
        written_token_block(block)
    return model


def written_token_block(block: Block) -> Block:
    """`block` (in place) computing a written token by our kernel, where its modules are the ones the kernel computes
    (`kernel_params`); otherwise `block` as it is."""
    params = kernel_params(block)
    if params is not None:
        block.kernel_params = [param.detach() for param in params]
        block.__class__ = WrittenTokenBlock  # the same module, computed by the subclass from now on
    return block
