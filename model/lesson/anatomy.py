"""Where a GPT's parameters live, and why the same model is quoted as 85M, 124M and 163M.

Every parameter belongs to one of five groups: the token embedding (which is also the output head:
lm_head is tied to wte), the position embedding, attention, the MLP, and the LayerNorms. The three
totals people quote for one model count the same tensors differently; each is computed here, from
the model itself, so they are right for any size.
"""
from dataclasses import asdict, dataclass

from torch import nn

from model.gpt import GPT


@dataclass(frozen=True)
class ParameterAnatomy:
    groups: dict[str, int]  # group (a key of GROUPS) → parameters, in the order data flows through the model
    tied: int  # every tensor once (wte and lm_head are one): transformers' num_parameters(), the model card's
    untied: int  # every name of the state dict counted: lm_head again, as a plain sum over a state dict does
    token_embedding: int  # wte, which is also lm_head
    position_embedding: int  # wpe

    @property
    def without_embeddings(self) -> int:
        """Neither wte nor wpe: the count scaling-law papers use, since the embeddings do little compute."""
        return self.tied - self.token_embedding - self.position_embedding

    def share(self, group: str) -> float:
        """The fraction of the model (counted tied) that `group` holds."""
        return self.groups[group] / self.tied

    def to_dict(self) -> dict:
        return {**asdict(self), "without_embeddings": self.without_embeddings,
                "shares": {group: self.share(group) for group in self.groups}}


def parameter_anatomy(model: GPT) -> ParameterAnatomy:
    """Count each group of `model`'s parameters; works on the meta device too (it only reads shapes)."""
    parts = model.transformer
    blocks = list(parts.h)
    groups = {
        "token_embedding": count(parts.wte),  # which is lm_head too
        "position_embedding": count(parts.wpe),
        "attention": sum(count(block.attn) for block in blocks),
        "mlp": sum(count(block.mlp) for block in blocks),
        "layernorms": sum(count(block.ln_1) + count(block.ln_2) for block in blocks) + count(parts.ln_f),
    }
    return ParameterAnatomy(
        groups=groups,
        tied=model.num_parameters(),
        untied=sum(tensor.numel() for tensor in model.state_dict().values()),
        token_embedding=groups["token_embedding"],
        position_embedding=groups["position_embedding"],
    )


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
