"""A student's GPT built from PyTorch's own modules: nn.MultiheadAttention (in_proj_weight, out_proj), the
MLP as an nn.Sequential, the position embedding a bare Parameter, and no head of its own: the logits are
x @ wte.weight.T. Written as a student writes it: it imports nothing of this project."""
from dataclasses import dataclass

import torch
import torch.nn as nn


@dataclass
class Config:
    vocab_size: int = 50257
    n_positions: int = 1024
    d_model: int = 768
    num_heads: int = 12
    num_layers: int = 12


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.norm_1 = nn.LayerNorm(config.d_model)
        self.attention = nn.MultiheadAttention(config.d_model, config.num_heads, batch_first=True)
        self.norm_2 = nn.LayerNorm(config.d_model)
        self.mlp = nn.Sequential(nn.Linear(config.d_model, 4 * config.d_model), nn.GELU(approximate="tanh"),
                                 nn.Linear(4 * config.d_model, config.d_model))

    def forward(self, x):
        T = x.size(1)
        future = torch.triu(torch.ones(T, T, dtype=torch.bool, device=x.device), diagonal=1)
        h = self.norm_1(x)
        x = x + self.attention(h, h, h, attn_mask=future, need_weights=False)[0]
        return x + self.mlp(self.norm_2(x))


class TinyGPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.positions = nn.Parameter(torch.zeros(1, config.n_positions, config.d_model))
        self.layers = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.norm = nn.LayerNorm(config.d_model)

    def forward(self, idx):
        x = self.embed(idx) + self.positions[:, :idx.size(1)]
        for layer in self.layers:
            x = layer(x)
        return self.norm(x) @ self.embed.weight.T


@torch.no_grad()
def load_gpt2(model, reference):
    """Copy GPT-2's tensors (a transformers GPT2LMHeadModel) into TinyGPT, layer by layer."""
    gpt2 = reference.transformer
    model.embed.weight.copy_(gpt2.wte.weight)
    model.positions.copy_(gpt2.wpe.weight.unsqueeze(0))
    for layer, block in zip(model.layers, gpt2.h):
        layer.norm_1.weight.copy_(block.ln_1.weight)
        layer.norm_1.bias.copy_(block.ln_1.bias)
        layer.attention.in_proj_weight.copy_(block.attn.c_attn.weight.t())
        layer.attention.in_proj_bias.copy_(block.attn.c_attn.bias)
        layer.attention.out_proj.weight.copy_(block.attn.c_proj.weight.t())
        layer.attention.out_proj.bias.copy_(block.attn.c_proj.bias)
        layer.norm_2.weight.copy_(block.ln_2.weight)
        layer.norm_2.bias.copy_(block.ln_2.bias)
        layer.mlp[0].weight.copy_(block.mlp.c_fc.weight.t())
        layer.mlp[0].bias.copy_(block.mlp.c_fc.bias)
        layer.mlp[2].weight.copy_(block.mlp.c_proj.weight.t())
        layer.mlp[2].bias.copy_(block.mlp.c_proj.bias)
    model.norm.weight.copy_(gpt2.ln_f.weight)
    model.norm.bias.copy_(gpt2.ln_f.bias)
