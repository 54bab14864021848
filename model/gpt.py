"""The course's GPT, written from scratch: the same function as OpenAI's GPT-2.

Parameter names match the Hugging Face checkpoint (`transformer.h.0.attn.c_attn.weight`, ...), so
the mapping in `model/loading/mapping.py` is a table of names. Every projection is an `nn.Linear`,
whose weight is stored (out, in); GPT-2's checkpoint stores them (in, out), which is why loading
transposes. Writing text with this model is `model/serving/`'s business.
"""
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F


@dataclass
class GPTConfig:
    n_positions: int = 1024  # longest context the position embedding covers
    vocab_size: int = 50257
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    n_inner: int | None = None  # MLP hidden width; None means GPT-2's 4 * n_embd
    layer_norm_epsilon: float = 1e-5

    def __post_init__(self):
        if self.n_inner is None:
            self.n_inner = 4 * self.n_embd
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")

    @classmethod
    def from_hf(cls, hf_config) -> "GPTConfig":
        """Read the shape from a transformers `GPT2Config`: gpt2, gpt2-medium, -large and -xl alike."""
        return cls(
            n_positions=hf_config.n_positions,
            vocab_size=hf_config.vocab_size,
            n_layer=hf_config.n_layer,
            n_head=hf_config.n_head,
            n_embd=hf_config.n_embd,
            n_inner=hf_config.n_inner,
            layer_norm_epsilon=hf_config.layer_norm_epsilon,
        )


class KVCache:
    """The keys and values of every position one sequence has read so far, for every layer.

    Without it each new token would re-run the whole context through the model. The buffers are
    allocated once, for `length` positions (the whole context by default), so a new token writes one
    slot instead of copying the past.
    """

    def __init__(self, config: GPTConfig, device, dtype, length: int | None = None):
        self.capacity = min(length or config.n_positions, config.n_positions)
        self.last_layer = config.n_layer - 1
        # (n_layer, batch of 1, n_head, positions, head_size): a layer's slice is what attention reads.
        shape = (config.n_layer, 1, config.n_head, self.capacity, config.n_embd // config.n_head)
        # empty, not zeros: a slot is always written before it is read
        self.keys = torch.empty(shape, device=device, dtype=dtype)
        self.values = torch.empty(shape, device=device, dtype=dtype)
        self.length = 0  # positions stored by every layer

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this step's keys and values (1, n_head, T, head_size) for `layer`; return all so far."""
        end = self.length + k.size(2)
        if end > self.capacity:
            raise ValueError(f"{end} positions do not fit this cache of {self.capacity}")
        self.keys[layer, :, :, self.length:end] = k
        self.values[layer, :, :, self.length:end] = v
        keys, values = self.keys[layer, :, :, :end], self.values[layer, :, :, :end]
        self.stored(layer, k.size(2))
        return keys, values

    def stored(self, layer: int, positions: int):
        """Count `positions` more once the last layer has stored them: the next step starts after them."""
        if layer == self.last_layer:
            self.length += positions


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """softmax(q kᵀ · scale + mask) v, each head on its own; scale is 1/√head_size unless given.

    q: (B, n_head, T, head_size), the T newest positions; k, v: (B, n_head, past + T, head_size), every
    position so far. The causal mask is -inf where a key comes after the query: position i may look
    at positions 0 .. i only. PyTorch's fused kernel computes exactly this, without storing the
    (T, past + T) matrix of scores.
    """
    T, past = q.size(2), k.size(2) - q.size(2)
    if past == 0:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
    if T == 1:
        return F.scaled_dot_product_attention(q, k, v, scale=scale)  # one new token may look at every past one
    # New token i sits at position past + i and may look at positions 0 .. past + i.
    allowed = torch.ones(T, past + T, dtype=torch.bool, device=q.device).tril(diagonal=past)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=scale)


class CausalSelfAttention(nn.Module):

    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.layer = layer  # which slot of the KV cache is ours
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)  # query, key, value in one matmul
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x: torch.Tensor, caches: list[KVCache] | None = None) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        # (B, T, C) -> (B, n_head, T, head_size): each head attends on its own slice of C.
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if caches is None:
            y = self.attend(q, k, v)
        else:
            # Row by row: each row attends over its own past, however long, and never over another row's.
            y = torch.cat([self.attend(q[i:i + 1], *cache.update(self.layer, k[i:i + 1], v[i:i + 1]))
                           for i, cache in enumerate(caches)])
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # heads side by side again
        return self.c_proj(y)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return causal_attention(q, k, v)


class MLP(nn.Module):

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, config.n_inner)
        self.gelu = nn.GELU(approximate="tanh")  # GPT-2 was trained with GELU's tanh approximation
        self.c_proj = nn.Linear(config.n_inner, config.n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class Block(nn.Module):

    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, caches: list[KVCache] | None = None) -> torch.Tensor:
        # Pre-LayerNorm: normalise the input of each sub-layer, add its output to the residual stream.
        x = x + self.attn(self.ln_1(x), caches)
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.n_positions, config.n_embd),
            h=nn.ModuleList(Block(config, layer) for layer in range(config.n_layer)),
            ln_f=nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # Weight tying: reading a token in and writing one out use the same matrix, one tensor.
        self.lm_head.weight = self.transformer.wte.weight

    def num_parameters(self) -> int:
        """Counted once per tensor, so the tied lm_head/wte matrix counts once, as in transformers."""
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx: torch.Tensor, caches: list[KVCache] | None = None, last_only: bool = False) -> torch.Tensor:
        """Logits (B, T, vocab) for token ids (B, T).

        caches: one KVCache per row, read and extended: each row goes on from its own position.
        last_only: compute logits for the last position alone (all that sampling reads).
        """
        B, T = idx.size()
        pasts = [cache.length for cache in caches] if caches is not None else [0]
        if max(pasts) + T > self.config.n_positions:
            raise ValueError(f"{max(pasts) + T} positions do not fit the context of {self.config.n_positions}")
        pos = torch.stack([torch.arange(past, past + T, device=idx.device) for past in pasts])  # (B or 1, T)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)
        for block in self.transformer.h:
            x = block(x, caches)
        if last_only:
            x = x[:, -1:, :]
        return self.lm_head(self.transformer.ln_f(x))
