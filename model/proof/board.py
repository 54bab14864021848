"""The class board's judge: a student's logits on the board's prompt, judged against the app's own GPT-2
and the catalogue's mistakes. The app never runs a student's code: it only compares numbers.

The app asks every student the same question (`BoardQuestion`): a short prompt, and the vocabulary
entries whose logits to send at every one of its positions (the last position alone cannot show a
missing causal mask). The entries are the reference's likeliest at each position and a fixed sample
of the rest: a few thousand numbers, well inside the app's request limit. Then, against the app's
reference: verified (within the project's tolerance), else the mistake whose logits, computed once by
our GPT with that mistake built in, the student's reproduce (a near miss if that mistake is one, such
as exact GELU), else unknown with its max |Δ|. A submission made with other weights than the app's
(its fingerprint differs) is told so, and counted apart.
"""
import math
from dataclasses import asdict, dataclass

import torch

from model.loading.mapping import load_gpt
from model.loading.mistakes import MISTAKES
from model.proof.components import logits_of
from model.proof.tolerance import LOOSE_ATOL, close, max_abs_diff
from model.tokenizer import encode

BOARD_PROMPT = "Once upon a time, in a land far away, there lived"
LIKELIEST = 16  # of each position's likeliest entries, all sent
ENTRIES = 256  # entries sent at every position, the likeliest and a fixed sample of the others
SAMPLE_SEED = 0


def weights_fingerprint(reference) -> float:
    """A number that tells one checkpoint from another: what a submission says it was computed with."""
    return float(reference.transformer.wte.weight[:64, :64].double().sum())


@dataclass(frozen=True)
class BoardQuestion:
    prompt: str
    prompt_tokens: list[int]
    token_ids: list[int]  # the entries of the vocabulary whose logits are sent, at every position
    weights: float  # the app's reference's fingerprint

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Verdict:
    verdict: str  # "verified", "near_miss", "wrong", or "other_weights"
    mistake: str | None  # the catalogue's id (or "unknown") for a near miss or a wrong one
    form: str | None  # which form of the mistake, where it has several
    max_abs_diff: float | None  # against the app's GPT-2
    message: str  # what the student reads

    def to_dict(self) -> dict:
        return asdict(self)


class Judge:
    """The board's question and the logits to judge against, made once for the app's reference."""

    def __init__(self, reference, prompt: str = BOARD_PROMPT):
        ids = encode(prompt)
        idx = torch.tensor([ids], device=reference.device)
        with torch.inference_mode():
            logits = reference(idx).logits[0].float().cpu()  # (positions, vocab)
        likeliest = logits.topk(LIKELIEST, dim=-1).indices.flatten().unique()
        others = torch.randperm(logits.size(-1), generator=torch.Generator().manual_seed(SAMPLE_SEED))
        others = others[~torch.isin(others, likeliest)][:max(ENTRIES - len(likeliest), 0)]
        self.token_ids = sorted(likeliest.tolist() + others.tolist())
        self.question = BoardQuestion(prompt, ids, self.token_ids, weights_fingerprint(reference))
        self.expected = logits[:, self.token_ids]
        self.variants = []  # (mistake form, its logits on the question)
        for mistake in MISTAKES.values():
            if mistake.refused or not mistake.changes_function:
                continue
            for form in mistake.forms():
                with torch.inference_mode():
                    self.variants.append((form, load_gpt(reference, form)(idx)[0].float().cpu()[:, self.token_ids]))

    def judge(self, logits, weights: float | None = None) -> Verdict:
        """The verdict on a student's logits (a list per position of the question's entries); ValueError, saying
        what is wrong with them, for a submission that is not that."""
        theirs = self.checked(logits)
        if weights is not None and not math.isclose(weights, self.question.weights, rel_tol=1e-9):
            return Verdict("other_weights", None, None, None,
                           "Your logits were computed with other weights than this app's GPT-2 (another checkpoint, "
                           "or the app runs on random weights): counted apart, not judged. Load the weights of the "
                           "model the app names in its header, and submit again.")
        difference = max_abs_diff(theirs, self.expected)
        if close(theirs, self.expected):
            return Verdict("verified", None, None, difference, "Verified: your GPT computes GPT-2's function.")
        matches = [(max_abs_diff(theirs, ours), form) for form, ours in self.variants
                   if close(theirs, ours) and not close(ours, self.expected)]
        if matches:
            _, form = min(matches, key=lambda match: match[0])
            mistake = MISTAKES[form.id]
            kind = "near_miss" if mistake.near_miss else "wrong"
            return Verdict(kind, form.id, form.form, difference,
                           f"{'A near miss' if mistake.near_miss else 'Not GPT-2'}: {form.id}"
                           f"{f' ({form.form})' if form.form else ''}. {mistake.summary}")
        kind = "near_miss" if difference <= LOOSE_ATOL else "wrong"
        return Verdict(kind, "unknown", None, difference,
                       f"{'A near miss' if kind == 'near_miss' else 'Not GPT-2'}: max |Δ logit| {difference:.1e}, and "
                       f"no mistake of the catalogue computes this. python -m model.check names where it first "
                       f"differs.")

    def checked(self, logits) -> torch.Tensor:
        """The submission as a (positions, entries) tensor, or a ValueError that says what it should be."""
        positions, entries = len(self.question.prompt_tokens), len(self.token_ids)
        wanted = (f"a list of {positions} lists (one per position of the prompt) of {entries} numbers (the logits "
                  f"of the question's token_ids)")
        if not isinstance(logits, list) or len(logits) != positions:
            got = f"{len(logits)} positions" if isinstance(logits, list) else type(logits).__name__
            raise ValueError(f"logits must be {wanted}; got {got}")
        for position, row in enumerate(logits):
            if not isinstance(row, list) or len(row) != entries:
                got = f"{len(row)} numbers" if isinstance(row, list) else type(row).__name__
                raise ValueError(f"logits must be {wanted}; position {position} has {got}")
            not_numbers = [type(value).__name__ for value in row
                           if isinstance(value, bool) or not isinstance(value, (int, float))]
            if not_numbers:
                raise ValueError(f"logits must be numbers; position {position} holds {not_numbers[0]}")
            if not all(math.isfinite(value) for value in row):
                raise ValueError(f"logits must be finite numbers; position {position} holds NaN or infinity: is the "
                                 f"model's output broken?")
        return torch.tensor(logits, dtype=torch.float32)


def board_logits(model, question: dict) -> list[list[float]]:
    """A student's model's logits on the board's question, as the app asks for them: every position, the
    question's entries. A forward that returns the last position alone (nanoGPT's, without targets) is asked
    again with targets, which makes it return every position."""
    device = next(model.parameters()).device
    idx = torch.tensor([question["prompt_tokens"]], device=device)
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = logits_of(model(idx))
            if logits.size(1) == 1 < idx.size(1):
                logits = logits_of(model(idx, targets=idx))
    finally:
        model.train(training)
    return logits[0][:, question["token_ids"]].float().tolist()
