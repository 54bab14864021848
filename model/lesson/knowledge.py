"""The architecture is the vessel, the weights are the knowledge.

The very same GPT class, given GPT-2's random initialisation instead of OpenAI's weights, knows
nothing: it predicts each next token of an English paragraph about as well as a uniform guess over
the vocabulary (a mean cross-entropy near ln 50257 ≈ 10.8 for GPT-2). With the loaded weights the
same code predicts it far better, and exactly as well as the reference does.
"""
import math
from dataclasses import asdict, dataclass

import torch
from torch.nn import functional as F

from model.gpt import GPT, GPTConfig
from model.tokenizer import encode
from model.proof.tolerance import TOLERANCE

# The fixed paragraph every model is scored on: plain English, written for this lesson, so no model has
# seen it word for word.
PARAGRAPH = (
    "The river rises in the hills north of the town and flows south for about forty miles before it "
    "reaches the sea. For most of the year it is slow and shallow, and in summer children wade across it. "
    "In spring, when the snow melts, it can rise several feet in a single night. The old stone bridge in "
    "the middle of the town was built more than two hundred years ago, and it has survived every flood "
    "since. Farmers along its banks grow wheat, barley and potatoes, and on Saturday mornings the market "
    "by the bridge sells what they bring in from the fields."
)
INIT_STD = 0.02  # GPT-2's initializer_range: the standard deviation of every initial weight
INIT_SEED = 0


def random_init(config: GPTConfig, device="cpu", seed: int = INIT_SEED) -> GPT:
    """Our GPT with GPT-2's initialisation, seeded: the same class, before any training.

    As transformers and nanoGPT initialise GPT-2: every weight matrix and embedding drawn from
    N(0, 0.02²), the projections back into the residual stream (each c_proj) scaled down by
    √(2 · n_layer), since each block adds two of them to it; biases 0, LayerNorms the identity.
    """
    with torch.device("meta"):  # shapes only: every value is drawn below, once
        model = GPT(config)
    model.to_empty(device="cpu")
    model.lm_head.weight = model.transformer.wte.weight  # to_empty parts the tie: one tensor again
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():  # the tied matrix once
            if name.endswith("bias"):
                param.zero_()
            elif ".ln_" in name:
                param.fill_(1.0)
            else:
                scale = math.sqrt(2 * config.n_layer) if name.endswith("c_proj.weight") else 1.0
                param.normal_(0.0, INIT_STD / scale, generator=generator)
    return model.to(device).eval().requires_grad_(False)


@dataclass(frozen=True)
class Loss:
    model: str  # which model: ours, the reference, or the random initialisation
    cross_entropy: float  # mean over the paragraph's next-token predictions, in nats
    perplexity: float  # e^cross_entropy: as unsure as a uniform choice among this many tokens


@dataclass(frozen=True)
class ParagraphLosses:
    text: str
    tokens: int  # tokens scored: the paragraph's first ones, as many as the context holds
    vocab_size: int
    ours: Loss
    reference: Loss
    random_init: Loss

    @property
    def uniform_guess(self) -> float:
        """ln(vocab): the cross-entropy of giving every token the same probability."""
        return math.log(self.vocab_size)

    @property
    def ours_equals_reference(self) -> bool:
        return math.isclose(self.ours.cross_entropy, self.reference.cross_entropy,
                            rel_tol=TOLERANCE["rtol"], abs_tol=TOLERANCE["atol"])

    def to_dict(self) -> dict:
        return {**asdict(self), "uniform_guess": self.uniform_guess,
                "ours_equals_reference": self.ours_equals_reference, "tolerance": dict(TOLERANCE)}


@torch.inference_mode()
def paragraph_losses(reference, ours: GPT, untrained: GPT, text: str = PARAGRAPH) -> ParagraphLosses:
    """How well ours, the reference (transformers' GPT2LMHeadModel) and `untrained` predict `text`."""
    ids = encode(text)[:ours.config.n_positions]
    if len(ids) < 2:
        raise ValueError("the text must be at least two tokens long: a loss needs a token to predict")
    idx = torch.tensor([ids], device=reference.device)
    return ParagraphLosses(
        text=text, tokens=len(ids), vocab_size=ours.config.vocab_size,
        ours=_loss("ours", ours(idx), idx),
        reference=_loss("reference", reference(idx).logits, idx),
        random_init=_loss("random init", untrained(idx), idx),
    )


def _loss(model: str, logits: torch.Tensor, idx: torch.Tensor) -> Loss:
    """Each position predicts the next token: the logits up to the last, against the tokens from the second."""
    cross_entropy = F.cross_entropy(logits[0, :-1].float(), idx[0, 1:]).item()
    return Loss(model, cross_entropy, math.exp(cross_entropy))
