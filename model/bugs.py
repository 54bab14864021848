"""Broken loads, on purpose: each way of getting the weights wrong that verification must catch.

A bug either changes what the mapping table does with some rows (`broken_mapping`), or changes
the architecture the weights are loaded into (`broken_config`). `GPT.from_hf(reference, bug)`
applies both, so there is one loader and every bug goes through it.
"""
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Bug:
    name: str
    summary: str  # one sentence a teacher can read aloud
    silent: bool  # True: loads and runs, but computes the wrong thing; False: the mapping refuses it
    explanation: str  # what the lesson takes from it
    near_miss: bool = False  # so close that the text comes out the same: only the logits, held tight, show it


BUGS = {bug.name: bug for bug in [
    Bug("skip_transpose_square",
        "Forget to transpose attn.c_proj, the one square (768×768) weight of every block.",
        silent=True,
        explanation="A square matrix fits either way round, so no shape check can notice: the model "
                    "loads, runs, and writes nonsense. Only comparing outputs catches it."),
    Bug("raw_copy_block0_c_attn",
        "Copy block 0's c_attn as raw memory, without transposing: [768, 2304] read as [2304, 768].",
        silent=True,
        explanation="A plain copy_ of a [768, 2304] tensor into [2304, 768] raises a shape error; "
                    "copying the raw memory instead goes through and scrambles every value's place."),
    Bug("skip_transpose_strict",
        "Forget every transpose, but check shapes before copying.",
        silent=False,
        explanation="The shape check refuses all the non-square weights: the mapping catches the bug "
                    "before any wrong number is computed. (The square ones would have passed.)"),
    Bug("untied_head",
        "Leave lm_head as its own randomly initialised matrix instead of tying it to wte.",
        silent=True,
        explanation="GPT-2 has no separate output matrix: lm_head is the token embedding. A head "
                    "left untied loads fine and predicts random tokens."),
    Bug("ffn_off_by_one",
        "Build our MLP with 4·d+1 hidden units instead of 4·d.",
        silent=False,
        explanation="The parameter count is almost the same, but the mapping refuses at the first MLP "
                    "tensor: checking every shape turns an architecture slip into a clear message."),
    Bug("exact_gelu",
        "Build our MLP with exact GELU, as nanoGPT's model.py does (nn.GELU()), instead of the tanh "
        "approximation GPT-2 was trained with.",
        silent=True, near_miss=True,
        explanation="Every tensor arrives intact and the text comes out the same; only the logits differ, "
                    "by around 1e-3: hundreds of times float32's noise. The lesson's rule 'fails at atol 1e-5 "
                    "but passes at 1e-3: floating-point noise' calls it correct wherever the difference stays "
                    "under 1e-3, as it does at gpt2's shape. It is not the same function: a tolerance set just "
                    "above the measured noise catches it."),
]}


def check_bug(bug: str | None):
    if bug is not None and bug not in BUGS:
        raise ValueError(f"unknown bug {bug!r}: choose one of {', '.join(BUGS)} (or none)")


def broken_config(config, bug: str | None):
    """The architecture a load with `bug` builds (GPTConfig; the same one for most bugs)."""
    check_bug(bug)
    if bug == "ffn_off_by_one":
        return replace(config, n_inner=config.n_inner + 1)
    if bug == "exact_gelu":
        return replace(config, gelu_approximate="none")
    return config


def broken_mapping(rows: list, bug: str | None) -> list:
    """The mapping table (MappingRows) as the buggy loader walks it; rows a bug changes get bug=True."""
    check_bug(bug)

    def broken(row, op):
        return replace(row, op=op, bug=True)

    if bug == "skip_transpose_square":
        return [broken(r, "copy") if r.op == "transpose" and r.our_shape[0] == r.our_shape[1] else r for r in rows]
    if bug == "skip_transpose_strict":
        return [broken(r, "copy") if r.op == "transpose" else r for r in rows]
    if bug == "raw_copy_block0_c_attn":
        return [broken(r, "raw") if r.ours == "transformer.h.0.attn.c_attn.weight" else r for r in rows]
    if bug == "untied_head":
        return [broken(r, "random") if r.op == "tied" else r for r in rows]
    return rows  # ffn_off_by_one and exact_gelu change the architecture, not the table
