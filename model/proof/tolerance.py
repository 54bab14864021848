"""What "the same function" means here: the tolerance every comparison of the proof uses.

Float32 sums of hundreds of products, done in another order by another kernel, differ in the last
bits; allclose passes when |ours - reference| <= atol + rtol * |reference| everywhere.
"""
import torch

TOLERANCE = {"atol": 1e-4, "rtol": 1e-5}
LESSON_ATOL = 1e-5  # the lesson's torch.allclose(..., atol=1e-5): reported, not required
# A loose tolerance, the kind that calls any small difference "floating-point noise": it passes
# exact_gelu's near miss. Like the lesson's, it keeps torch's default rtol, which is the project's.
LOOSE_ATOL = 1e-3


def close(ours: torch.Tensor, reference: torch.Tensor) -> bool:
    """Equal within the project's tolerance (and of the same shape)."""
    return ours.shape == reference.shape and torch.allclose(ours.float(), reference.float(), **TOLERANCE)


def max_abs_diff(ours: torch.Tensor, reference: torch.Tensor) -> float:
    return (ours.float() - reference.float()).abs().max().item()


def atol_needed(ours: torch.Tensor, reference: torch.Tensor) -> float:
    """The smallest atol at which torch.allclose(ours, reference, atol, rtol=TOLERANCE's rtol) holds.

    allclose asks |ours - reference| <= atol + rtol * |reference| everywhere; rtol forgives a little
    more where the logits are large, so this is at most the max abs difference, and near it for
    logits of a few units.
    """
    excess = (ours.float() - reference).abs() - TOLERANCE["rtol"] * reference.abs()
    return max(excess.max().item(), 0.0)
