"""The proof, read top to bottom as minGPT's import test reads: GPT-2's weights (a checkpoint trained here,
since this machine cannot download OpenAI's) loaded into our GPT through the mapping table compute the
reference's function.

    logits match -> greedy tokens match -> the text matches
"""
import torch

from model.loading.mapping import load_gpt, named_table
from model.proof.evidence import prove, reference_greedy
from model.proof.tolerance import TOLERANCE
from model.serving.sequence import write_greedily
from model.tokenizer import decode, encode
from tests.checkpoints import MEMORISED, RECITATION_PROMPTS

PROMPT, SENTENCE = RECITATION_PROMPTS[0], MEMORISED[0]  # "The capital of France is" ... "Rome."


def test_our_gpt_with_gpt2s_weights_computes_gpt2s_function(trained_reference):
    ours = load_gpt(trained_reference)  # every tensor through the mapping table: copy, transpose, tied
    ids = encode(PROMPT)

    # 1. The logits: every position, within the stated tolerance.
    idx = torch.tensor([ids])
    with torch.inference_mode():
        logits, expected = ours(idx), trained_reference(idx).logits
    assert logits.shape == expected.shape
    assert torch.allclose(logits, expected, **TOLERANCE), (logits - expected).abs().max()

    # 2. The greedy tokens: ours (with its KV cache) writes what transformers' own generate writes.
    n = len(encode(SENTENCE)) - len(ids)
    theirs = reference_greedy(trained_reference, ids, n)
    assert write_greedily(ours, ids, n) == theirs

    # 3. The text: the sentence the checkpoint learned by heart.
    assert PROMPT + decode(theirs) == SENTENCE


def test_every_link_of_the_chain_holds_for_our_gpt(trained_reference):
    """The same, link by link, as the Verify tab and `python -m model.verify` show it."""
    ours, ids = load_gpt(trained_reference), encode(PROMPT)
    theirs = reference_greedy(trained_reference, ids, 8)
    proof = prove(ours, trained_reference, named_table(ours, trained_reference), ids, theirs,
                  write_greedily(ours, ids, 8))
    assert all(row.values_equal and row.shares_memory for row in proof.mapping)  # every tensor, no copy
    assert all(check.ok for check in proof.components)  # every component, fed the reference's input
    assert proof.layers_allclose and proof.allclose  # every layer, then the logits
    assert proof.greedy_tokens_agree == 8
