"""Reading many prompts in one pass: every row's chunk side by side, as one sequence of positions.

Students' prompts have as many lengths as there are students, and the course's GPT reads rows of one length
at a time (model/gpt.py: a (B, T) batch). Thirty prompts would take thirty passes, each a read of every weight for
a few positions, while the rows already writing wait. Packed, the chunks are one sequence of positions: each
product multiplies all of them at once (a position is a row to the products, with the same bits among any
others: model/serving/products.py), and attention runs chunk by chunk, each over its own row's cache, with the
course's own code. So a position gets the bits it gets when its prompt is read alone by the course's GPT;
`model.serving.engine.check_row_invariance` confirms it where the app runs.
"""
import torch

from model.gpt import GPT, Block, CausalSelfAttention, KVCache
from model.serving.written_token import WrittenTokenBlock


def read_packed(model: GPT, chunks: list[list[int]], caches: list[KVCache]) -> torch.Tensor:
    """Each row reads its chunk into its cache; the logits (rows, vocab) of each chunk's last position.

    What `model(idx, caches, last_only=True)` computes for rows of one length, for chunks of any lengths.
    """
    lengths = [len(chunk) for chunk in chunks]
    for cache, length in zip(caches, lengths):
        if cache.length + length > cache.capacity:
            raise ValueError(f"{cache.length + length} positions do not fit this cache of {cache.capacity}")
    device = model.transformer.wte.weight.device
    idx = torch.tensor([token for chunk in chunks for token in chunk], device=device)  # (positions,)
    pos = torch.cat([torch.arange(cache.length, cache.length + length, device=device)
                     for cache, length in zip(caches, lengths)])  # each row goes on from its own place
    x = (model.transformer.wte(idx) + model.transformer.wpe(pos)).unsqueeze(0)  # (1, positions, C)
    for block in model.transformer.h:  # the course's Block.forward, with attention chunk by chunk
        x = x + attend_chunks(block.attn, block.ln_1(x), caches, lengths)
        x = x + block.mlp(block.ln_2(x))
    last = torch.tensor(lengths, device=device).cumsum(0) - 1  # where each chunk ends
    return model.lm_head(model.transformer.ln_f(x[0, last]))  # (rows, vocab)


def attend_chunks(attn: CausalSelfAttention, x: torch.Tensor, caches: list[KVCache], lengths: list[int]) -> torch.Tensor:
    """The course's attention (CausalSelfAttention.forward) over packed chunks: each attends over its own row's cache."""
    C = x.size(2)
    q, k, v = attn.c_attn(x).split(C, dim=2)
    heads, ends = [], torch.tensor(lengths).cumsum(0).tolist()
    for cache, T, end in zip(caches, lengths, ends):
        # (1, T, C) -> (1, n_head, T, head_size): the chunk's positions, the very views a (1, T) batch would give.
        q_, k_, v_ = (t[:, end - T:end].view(1, T, attn.n_head, C // attn.n_head).transpose(1, 2) for t in (q, k, v))
        y = attn.attend(q_, *cache.update(attn.layer, k_, v_))
        heads.append(y.transpose(1, 2).contiguous().view(1, T, C))  # heads side by side again
    return attn.c_proj(torch.cat(heads, dim=1))  # (1, positions, C)


def composed_as_the_course(model: GPT) -> bool:
    """Whether `model` puts its modules together as model/gpt.py does, which `read_packed` repeats: not a variant
    whose GPT, Block or attention computes its own way (model/loading/mistakes.py's post-LayerNorm Block)."""
    return type(model).forward is GPT.forward and all(
        type(block).forward in (Block.forward, WrittenTokenBlock.forward)  # the latter, Block's for a prompt
        and type(block.attn).forward is CausalSelfAttention.forward for block in model.transformer.h)
