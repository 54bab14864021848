"""The catalogue of mistakes: every way of getting GPT-2 wrong that this project names.

Each mistake is one object: its id, a sentence a teacher can read aloud, what the lesson takes from
it, and what it does, declared by the mistake itself:
- a load mistake changes rows of the mapping table (`table`), and loads the rows it changed its own
  way where the loader's copy, transpose and tied do not say it (`load`);
- an architecture mistake changes our GPT (`config`: its shape; `build`: how a component computes),
  keeping every weight.
`load_gpt(reference, mistake)` (model/loading/mapping.py) builds our GPT with the mistake in it, so
one catalogue drives the Verify tab's broken-versus-correct demonstrations, the naming of what a
student's component computes (model/proof/diagnosis.py), and the class board's verdicts.

To add a mistake: a class here, one instance of it in MISTAKES, and its tests.
"""
import math
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.nn import functional as F

from model.gpt import Block, CausalSelfAttention, GPT, GPTConfig, causal_attention


class Mistake:
    """One way to get GPT-2 wrong. The defaults do nothing: each mistake overrides what it changes."""
    id: str
    kind: str  # "load" (the weights go to the wrong places) or "architecture" (the model computes otherwise)
    summary: str  # one sentence a teacher can read aloud
    explanation: str  # what the lesson takes from it
    refused = False  # the mapping's shape check refuses the load: no wrong number is ever computed
    near_miss = False  # so close that the text comes out the same: only the logits, held tight, show it
    changes_function = True  # False for a note: the same function, at another cost

    def config(self, config: GPTConfig) -> GPTConfig:
        """The shape of the GPT a load with this mistake builds."""
        return config

    def table(self, rows: list) -> list:
        """The mapping table as a loader making this mistake walks it; a changed row has bug=True."""
        return rows

    def load(self, row, theirs: dict) -> torch.Tensor | None:
        """The tensor for a changed row this mistake loads its own way; None leaves it to the loader."""
        return None

    def build(self, model: GPT) -> None:
        """Change, in place, how the loaded model computes."""

    def forms(self) -> list["Mistake"]:
        """Every form the mistake comes in (a mistaken scale: which one), this one first."""
        return [self]

    @property
    def form(self) -> str | None:
        """Which form this is, in words, where there are several."""
        return None

    def __repr__(self) -> str:
        return f"<mistake {self.id}{f' ({self.form})' if self.form else ''}>"


def changed(row, op: str, **fields):
    """A row of the table as a mistake leaves it: another operation, marked as the mistake's."""
    return replace(row, op=op, bug=True, **fields)


def computed_as(module: nn.Module, variant: type) -> None:
    """The same module, its parameters and all, from now on computed by `variant` (a subclass of its class)."""
    module.__class__ = variant


def _is_square(row) -> bool:
    return len(row.shape) == 2 and row.shape[0] == row.shape[1]


# --- load mistakes: the right weights, in the wrong places -----------------------------------------

class NotTransposed(Mistake):
    id, kind = "not_transposed", "load"
    summary = "attn.c_proj, the one square (768×768) weight of every block, is left untransposed."
    explanation = ("A square matrix fits either way round, so no shape check can notice: the model loads, runs, "
                   "and writes nonsense. Left untransposed, every other Conv1D weight would be refused for its "
                   "shape; only comparing outputs catches the square one.")

    def table(self, rows):
        return [changed(row, "copy") if row.op == "transpose" and _is_square(row) else row for row in rows]


class Scrambled(Mistake):
    id, kind = "scrambled", "load"
    summary = ("The right values in the wrong places: raw memory read in another shape (block 0's c_attn, [768, 2304] "
               "read as [2304, 768], without transposing).")
    explanation = ("A plain copy_ of a [768, 2304] tensor into [2304, 768] raises a shape error; copying the raw "
                   "memory instead goes through and scrambles every value's place.")

    def table(self, rows):
        return [changed(row, "raw memory") if row.name == "transformer.h.0.attn.c_attn.weight" else row
                for row in rows]

    def load(self, row, theirs):
        return theirs[row.reference].reshape(row.shape)  # the same memory, read with the wrong shape


class QkvOrder(Mistake):
    id, kind = "qkv_order", "load"
    summary = "c_attn is split in another order than query, key, value."
    explanation = ("The three pieces of c_attn have the same shape, so any order loads. GPT-2's is query, key, "
                   "value; swapping query and key turns each score q·k into k·q of other positions: every "
                   "shape fits and the attention looks in the wrong places.")

    def table(self, rows):
        return [changed(row, "split k,q,v") if ".attn.c_attn." in row.name else row for row in rows]

    def load(self, row, theirs):
        q, k, v = theirs[row.reference].chunk(3, dim=-1)
        swapped = torch.cat([k, q, v], dim=-1)
        return swapped.t() if swapped.dim() == 2 else swapped


class NotLoaded(Mistake):
    id, kind = "not_loaded", "load"
    summary = "A tensor is left at its initialisation: lm_head, its own random matrix instead of tied to wte."
    explanation = ("GPT-2 has no separate output matrix: lm_head is the token embedding. A head left untied "
                   "loads fine and predicts random tokens; so does any tensor a loader forgets.")

    def table(self, rows):
        return [changed(row, "left at init") if row.op == "tied" else row for row in rows]

    def load(self, row, theirs):
        generator = torch.Generator().manual_seed(0)
        fresh = torch.empty(row.shape).normal_(0.0, 0.02, generator=generator)  # GPT-2's initialisation
        return fresh.to(theirs[row.reference].device)


class WrongTensor(Mistake):
    id, kind = "wrong_tensor", "load"
    summary = "A tensor holds another one's values: every block loaded from block 0's (h.0 where the loop meant h.{i})."
    explanation = ("Every block's tensors have the same shapes, so another block's fit perfectly: the model "
                   "loads, runs, and repeats one layer twelve times.")

    def table(self, rows):
        return [changed(row, row.op, reference=_block_zero(row.reference)) if _block_zero(row.reference) !=
                row.reference else row for row in rows]


def _block_zero(name: str) -> str:
    parts = name.split(".")
    if parts[:2] == ["transformer", "h"]:
        parts[2] = "0"
    return ".".join(parts)


class NotTied(Mistake):
    id, kind = "not_tied", "load"
    summary = "lm_head is a copy of wte instead of the same tensor (tied)."
    explanation = ("The copy computes the same function, so nothing fails; it costs a second "
                   "[vocab, n_embd] matrix of memory, and the two would drift apart in training.")
    changes_function = False

    def table(self, rows):
        return [changed(row, "copy of wte") if row.op == "tied" else row for row in rows]

    def load(self, row, theirs):
        return theirs[row.reference].clone()


# --- architecture mistakes: every weight right, another computation -------------------------------

class CannotHold(Mistake):
    id, kind = "cannot_hold", "architecture"
    summary = "Sizes or biases that cannot hold GPT-2's tensors: an MLP of 4·d+1 hidden units instead of 4·d."
    explanation = ("The parameter count is almost the same, but the mapping refuses at the first MLP tensor: "
                   "checking every shape turns an architecture slip into a clear message.")
    refused = True

    def config(self, config):
        return replace(config, n_inner=config.n_inner + 1)


class ExactGelu(Mistake):
    id, kind = "exact_gelu", "architecture"
    summary = ("The MLP uses exact GELU (nn.GELU(), as nanoGPT's model.py has it) instead of the tanh "
               "approximation GPT-2 was trained with.")
    explanation = ("Every tensor arrives intact and the text comes out the same; only the logits differ, by around "
                   "1e-3: hundreds of times float32's noise. The lesson's rule 'fails at atol 1e-5 but passes at "
                   "1e-3: floating-point noise' calls it correct wherever the difference stays under 1e-3, as it "
                   "does at gpt2's shape. It is not the same function: a tolerance set just above the measured "
                   "noise catches it.")
    near_miss = True

    def build(self, model):
        for block in model.transformer.h:
            block.mlp.gelu = nn.GELU()


class Relu(Mistake):
    id, kind = "relu", "architecture"
    summary = "The MLP uses ReLU, as the lecture's first GPT does, instead of GPT-2's GELU."
    explanation = ("ReLU and GELU agree for large inputs and differ near zero, where most of the MLP's "
                   "activations are: every weight is right and the model writes a worse, other text.")

    def build(self, model):
        for block in model.transformer.h:
            block.mlp.gelu = nn.ReLU()


class UnmaskedAttention(CausalSelfAttention):
    def attend(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v)  # every position sees every other, the future too


class MissingCausalMask(Mistake):
    id, kind = "missing_causal_mask", "architecture"
    summary = "No causal mask: every position attends to the positions after it too."
    explanation = ("Reading a prompt, each position then sees the words that follow it, which GPT-2 never saw "
                   "in training. The last position, which sees nothing after it, is unchanged: checking only "
                   "the next token cannot show it, checking every position can.")

    def build(self, model):
        for block in model.transformer.h:
            computed_as(block.attn, UnmaskedAttention)


class WronglyScaledAttention(CausalSelfAttention):
    wrong_scale: float  # set per module by AttentionScale

    def attend(self, q, k, v):
        return causal_attention(q, k, v, scale=self.wrong_scale)


@dataclass(frozen=True, repr=False)
class AttentionScale(Mistake):
    divide_by: str = "head_size"  # what the scores are divided by, instead of √head_size
    id, kind = "attention_scale", "architecture"
    summary = "The attention scores are divided by something other than √head_size."
    explanation = ("Softmax is sensitive to the scale of its inputs: divided by too much it spreads its attention "
                   "evenly, by too little it picks one position. GPT-2 divides q·k by √head_size.")
    DIVISORS = ("head_size", "nothing", "√n_embd")

    def build(self, model):
        head_size = model.config.n_embd // model.config.n_head
        divisor = {"head_size": head_size, "nothing": 1, "√n_embd": math.sqrt(model.config.n_embd)}[self.divide_by]
        for block in model.transformer.h:
            computed_as(block.attn, WronglyScaledAttention)
            block.attn.wrong_scale = 1 / divisor

    def forms(self):
        return [AttentionScale(divisor) for divisor in self.DIVISORS]

    @property
    def form(self):
        return f"divided by {self.divide_by}"


class PostNormBlock(Block):
    def forward(self, x, caches=None):
        # The original Transformer's order: add first, then normalise the residual stream itself.
        x = self.ln_1(x + self.attn(x, caches))
        x = self.ln_2(x + self.mlp(x))
        return x


class PostLayerNorm(Mistake):
    id, kind = "post_layernorm", "architecture"
    summary = "LayerNorm after each residual add (the 2017 Transformer's order) instead of before each sub-layer."
    explanation = ("Both orders use the same two LayerNorms per block, so every tensor loads. GPT-2 normalises "
                   "each sub-layer's input and leaves the residual stream alone; the other order rescales the "
                   "stream itself in every block.")

    def build(self, model):
        for block in model.transformer.h:
            computed_as(block, PostNormBlock)


@dataclass(frozen=True, repr=False)
class LayerNormEps(Mistake):
    eps: float = 1e-12
    id, kind = "layernorm_eps", "architecture"
    summary = "LayerNorm's epsilon is another than GPT-2's 1e-5."
    explanation = ("The epsilon keeps a division away from zero; its size matters wherever a vector's variance is "
                   "small. GPT-2's is 1e-5 (layer_norm_epsilon in its config), BERT's 1e-12.")
    EPSILONS = (1e-12, 1e-6, 1e-8, 0.0, 1e-3)

    def build(self, model):
        for module in model.modules():
            if isinstance(module, nn.LayerNorm):
                module.eps = self.eps

    def forms(self):
        return [LayerNormEps(eps) for eps in self.EPSILONS]

    @property
    def form(self):
        return f"eps {self.eps:g}"


class SkippedLayerNorm(nn.LayerNorm):
    def forward(self, x):
        return x


class MissingFinalLayerNorm(Mistake):
    id, kind = "missing_final_layernorm", "architecture"
    summary = "No final LayerNorm (ln_f) between the last block and lm_head."
    explanation = ("GPT-2 normalises the residual stream once more before reading the next token out of it. "
                   "Without ln_f the head reads the raw stream, whose scale grows block after block.")

    def build(self, model):
        computed_as(model.transformer.ln_f, SkippedLayerNorm)


class UnusedPositions(nn.Embedding):
    def forward(self, positions):
        return torch.zeros(*positions.shape, self.embedding_dim, dtype=self.weight.dtype, device=self.weight.device)


class MissingPositionEmbedding(Mistake):
    id, kind = "missing_position_embedding", "architecture"
    summary = "No position embedding: the model sees which tokens, not in which order."
    explanation = ("Attention alone has no notion of order: without wpe, 'dog bites man' and 'man bites dog' "
                   "look alike to every block but for the causal mask.")

    def build(self, model):
        computed_as(model.transformer.wpe, UnusedPositions)


MISTAKES: dict[str, Mistake] = {mistake.id: mistake for mistake in [
    NotTransposed(), Scrambled(), QkvOrder(), NotLoaded(), WrongTensor(), NotTied(),
    CannotHold(), ExactGelu(), Relu(), MissingCausalMask(), AttentionScale(), PostLayerNorm(), LayerNormEps(),
    MissingFinalLayerNorm(), MissingPositionEmbedding(),
]}
# What the Verify tab can demonstrate on our GPT: every mistake that changes what the model computes.
DEMONSTRATIONS = [mistake_id for mistake_id, mistake in MISTAKES.items() if mistake.changes_function]


def mistake_named(mistake_id: str | None) -> Mistake | None:
    """The catalogue's entry for `mistake_id` (None for none), or a ValueError listing the ids."""
    if mistake_id is None:
        return None
    if mistake_id not in MISTAKES:
        raise ValueError(f"unknown mistake {mistake_id!r}: choose one of {', '.join(DEMONSTRATIONS)} (or none)")
    return MISTAKES[mistake_id]
