"""The verification report: each link of the chain of evidence, and what it says about each bug.

logits match -> every layer matches -> greedy tokens match -> the same text.
"""
import json
import re
from dataclasses import replace

import pytest
import torch
from transformers.pytorch_utils import Conv1D

from model.bugs import BUGS
from model.generate import complete
from model.gpt import GPT, GPTConfig
from model.mapping import WeightMismatchError, build_mapping, mapping_for
from model.tokenizer import decode, encode
from model.verify import (
    LESSON_ATOL,
    TEXT_SETTINGS,
    TOLERANCE,
    naive_load_outcome,
    reference_greedy,
    verify,
)
from tests.checkpoints import GPT2_PARAMETERS

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SILENT = [name for name, bug in BUGS.items() if bug.silent]
REFUSED = [name for name, bug in BUGS.items() if not bug.silent]


@pytest.fixture(scope="module")
def gpt2_report(gpt2_reference, gpt2_student):
    return verify(gpt2_reference, student=gpt2_student)


@pytest.fixture(scope="module")
def bug_reports(tiny_reference, tiny_student):
    return {bug: verify(tiny_reference, bug=bug, student=tiny_student) for bug in BUGS}


def both_logits(student, reference, prompt):
    idx = torch.tensor([encode(prompt)])
    with torch.inference_mode():
        return student(idx), reference(idx).logits


# --- the correct load, at gpt2's full size -----------------------------------------------------------

def test_full_size_logits_match_within_the_stated_tolerance(gpt2_report, gpt2_student, gpt2_reference):
    ours, theirs = both_logits(gpt2_student, gpt2_reference, gpt2_report.prompt)
    assert gpt2_report.allclose and torch.allclose(ours, theirs, **TOLERANCE)
    assert gpt2_report.max_abs_logit_diff == pytest.approx((ours - theirs).abs().max().item(), abs=1e-6)
    assert gpt2_report.max_abs_logit_diff <= TOLERANCE["atol"]


def test_full_size_every_layers_residual_stream_matches(gpt2_report, gpt2_reference):
    assert gpt2_report.layers_allclose
    n_layer = gpt2_reference.config.n_layer
    assert len(gpt2_report.layer_max_abs_diff) == len(gpt2_report.layer_names) == 1 + n_layer  # embeddings, blocks


def test_full_size_greedy_tokens_and_text_agree(gpt2_report, gpt2_reference):
    theirs = reference_greedy(gpt2_reference, gpt2_report.prompt_tokens, gpt2_report.greedy_tokens)
    assert gpt2_report.greedy_tokens_agree == gpt2_report.greedy_tokens
    assert gpt2_report.greedy_text == decode(theirs)


def test_full_size_report_counts_parameters_keys_and_tying(gpt2_report, gpt2_reference):
    assert gpt2_report.param_count_ours == gpt2_report.param_count_reference == GPT2_PARAMETERS
    assert gpt2_report.key_count_ours == gpt2_report.key_count_reference == len(gpt2_reference.state_dict())
    assert gpt2_report.tied


def test_lessons_atol_is_reported_as_measured(gpt2_report, gpt2_student, gpt2_reference):
    ours, theirs = both_logits(gpt2_student, gpt2_reference, gpt2_report.prompt)
    assert gpt2_report.lesson_atol == LESSON_ATOL == 1e-5
    assert gpt2_report.lesson_atol_holds == torch.allclose(ours, theirs, atol=LESSON_ATOL)


def test_top_k_gives_both_models_probabilities_for_the_references_likeliest_tokens(gpt2_report, gpt2_student,
                                                                                  gpt2_reference):
    ours, theirs = both_logits(gpt2_student, gpt2_reference, gpt2_report.prompt)
    top = torch.softmax(theirs[0, -1], dim=-1).topk(len(gpt2_report.top_k))
    assert [row["token"] for row in gpt2_report.top_k] == top.indices.tolist()
    assert [row["p_ours"] for row in gpt2_report.top_k] == pytest.approx(top.values.tolist(), abs=1e-6)


@pytest.mark.parametrize("bug", SILENT)
def test_full_size_silent_bugs_move_the_logits_far_outside_the_tolerance(gpt2_reference, gpt2_report, bug):
    ours, theirs = both_logits(GPT.from_hf(gpt2_reference, bug), gpt2_reference, gpt2_report.prompt)
    assert (ours - theirs).abs().max().item() > 1000 * TOLERANCE["atol"]


@pytest.mark.parametrize("bug", REFUSED)
def test_full_size_refused_bugs_raise_the_mappings_message(gpt2_reference, bug):
    with pytest.raises(WeightMismatchError, match="refused to load: .* tensor\\(s\\) do not fit"):
        GPT.from_hf(gpt2_reference, bug)


# --- what a naive load_state_dict would say --------------------------------------------------------

SIZE_MISMATCH = re.compile(r"size mismatch for (\S+): copying a param with shape torch\.Size\((\[[\d, ]*\])\) "
                           r"from checkpoint, the shape in current model is torch\.Size\((\[[\d, ]*\])\)")


def what_torch_reports(student: GPT, reference_state: dict) -> dict:
    """Ask torch itself. load_state_dict raises for shape mismatches even with strict=False: read
    them from its message, then load the rest to hear which keys are missing or unexpected."""
    try:
        student.load_state_dict(reference_state, strict=False)
        mismatches = []
    except RuntimeError as error:
        mismatches = [(key, json.loads(ours), json.loads(theirs))
                      for key, theirs, ours in SIZE_MISMATCH.findall(str(error))]
    refused = {key for key, _, _ in mismatches}
    rest = student.load_state_dict({k: v for k, v in reference_state.items() if k not in refused}, strict=False)
    return {"missing_keys": sorted(set(rest.missing_keys) - refused), "unexpected_keys": sorted(rest.unexpected_keys),
            "shape_mismatches": sorted(mismatches)}


@pytest.mark.parametrize("change", [
    lambda config: config,
    lambda config: replace(config, n_inner=config.n_inner + 1),
    lambda config: replace(config, n_layer=config.n_layer - 1),
    lambda config: replace(config, n_layer=config.n_layer + 1),
], ids=["same-architecture", "wider-mlp", "one-layer-fewer", "one-layer-more"])
def test_naive_load_outcome_is_what_torchs_load_state_dict_reports(tiny_reference, change):
    student = GPT(change(GPTConfig.from_hf(tiny_reference.config)))
    reference_state = tiny_reference.state_dict()
    outcome = naive_load_outcome(build_mapping(student, tiny_reference),
                                 {name: t.shape for name, t in reference_state.items()})
    torch_says = what_torch_reports(student, reference_state)
    assert outcome["missing_keys"] == torch_says["missing_keys"]
    assert outcome["unexpected_keys"] == torch_says["unexpected_keys"]
    mismatches = sorted((m["key"], m["ours"], m["reference"]) for m in outcome["shape_mismatches"])
    assert mismatches == torch_says["shape_mismatches"]


def test_square_conv1d_weights_are_accepted_by_load_state_dict_untransposed(tiny_reference, tiny_student):
    report = verify(tiny_reference, student=tiny_student, greedy_tokens=1)
    naive = GPT(tiny_student.config)
    reference_state = tiny_reference.state_dict()
    naive.load_state_dict({k: v for k, v in reference_state.items() if naive.state_dict()[k].shape == v.shape},
                          strict=False)
    conv1d = {f"{name}.weight" for name, m in tiny_reference.named_modules() if isinstance(m, Conv1D)}
    accepted = [key for key in conv1d if torch.equal(naive.state_dict()[key], reference_state[key])]
    assert sorted(report.silently_accepted) == sorted(accepted) != []


# --- the report as data --------------------------------------------------------------------------

def test_report_is_json_with_the_documented_keys(bug_reports):
    data = json.loads(json.dumps(bug_reports["skip_transpose_square"].to_dict()))
    documented = {"max_abs_logit_diff", "allclose", "tolerance", "param_count_ours", "param_count_reference",
                  "missing_keys", "unexpected_keys", "shape_mismatches", "tied", "greedy_tokens_agree",
                  "layer_max_abs_diff", "broken", "mapping", "top_k", "verified"}
    assert documented <= data.keys()
    broken = {"max_abs_logit_diff", "layer_max_abs_diff", "first_divergent_layer", "text_correct", "text_broken",
              "refusal", "caught"}
    assert broken <= data["broken"].keys()


@pytest.mark.parametrize("words", [60, 100], ids=["fits-without-room-to-write", "longer-than-the-context"])
def test_a_long_prompt_keeps_its_end_leaving_room_for_the_greedy_tokens(tiny_reference, tiny_student, words):
    prompt = " word" * words  # one token per word; the tiny context is 64 tokens
    report = verify(tiny_reference, prompt=prompt, student=tiny_student)
    assert len(report.prompt_tokens) + report.greedy_tokens == tiny_reference.config.n_positions
    assert report.verified


# --- the deliberate bugs ---------------------------------------------------------------------------

@pytest.mark.parametrize("bug", BUGS)
def test_every_bug_is_caught_and_verification_still_passes(bug_reports, bug):
    report = bug_reports[bug]
    assert report.broken.caught and report.verified


@pytest.mark.parametrize("bug", SILENT)
def test_a_silent_bug_loads_and_its_logits_are_far_outside_the_tolerance(bug_reports, bug):
    broken = bug_reports[bug].broken
    assert not broken.refused and broken.allclose is False
    assert broken.max_abs_logit_diff > 1000 * TOLERANCE["atol"]


@pytest.mark.parametrize("bug, first_divergent", [
    ("skip_transpose_square", "block 0"),  # every block's c_proj is wrong, the first one first
    ("raw_copy_block0_c_attn", "block 0"),
    ("untied_head", None),  # the residual stream is untouched: only the head that reads it is wrong
])
def test_layer_diffs_show_where_a_silent_bug_first_diverges(bug_reports, bug, first_divergent):
    report = bug_reports[bug]
    index = report.broken.first_divergent_layer
    assert (report.layer_names[index] if index is not None else None) == first_divergent
    assert report.broken.layer_max_abs_diff[0] == 0.0  # the embeddings are loaded correctly in every case


@pytest.mark.parametrize("bug", SILENT)
def test_a_silent_bug_writes_other_text_from_the_same_prompt_and_seed(bug_reports, tiny_student, bug):
    broken = bug_reports[bug].broken
    assert broken.text_correct == complete(tiny_student, bug_reports[bug].prompt, TEXT_SETTINGS)
    assert broken.text_broken != broken.text_correct


@pytest.mark.parametrize("bug", REFUSED)
def test_a_refused_bug_reports_the_mappings_message_instead_of_text(bug_reports, bug):
    broken = bug_reports[bug].broken
    assert broken.refused and broken.text_broken is None and broken.max_abs_logit_diff is None
    assert broken.refused_keys and all(f"mismatch at {key}:" in broken.refusal for key in broken.refused_keys[:6])


def test_skip_transpose_strict_refuses_exactly_the_non_square_conv1d_weights(bug_reports, tiny_reference):
    conv1d = {f"{name}.weight": m.weight.shape for name, m in tiny_reference.named_modules() if isinstance(m, Conv1D)}
    non_square = [name for name, (rows, cols) in conv1d.items() if rows != cols]
    assert bug_reports["skip_transpose_strict"].broken.refused_keys == non_square


def test_skip_transpose_square_changes_exactly_the_square_weights(bug_reports, tiny_reference):
    changed = [row["ours"] for row in bug_reports["skip_transpose_square"].broken.changed_rows]
    assert changed == [f"transformer.h.{i}.attn.c_proj.weight" for i in range(tiny_reference.config.n_layer)]


def test_raw_copy_reads_the_references_memory_in_the_wrong_shape(tiny_reference):
    weight = tiny_reference.transformer.h[0].attn.c_attn.weight  # Conv1D: (in, out) = (d, 3d)
    with pytest.raises(RuntimeError):
        torch.empty(weight.shape[::-1]).copy_(weight)  # why the bug needs raw memory: copy_ refuses
    broken = GPT.from_hf(tiny_reference, "raw_copy_block0_c_attn").transformer.h[0].attn.c_attn.weight
    assert broken.data_ptr() == weight.data_ptr()
    assert torch.equal(broken, weight.reshape(weight.shape[::-1])) and not torch.equal(broken, weight.t())


@pytest.mark.parametrize("bug", SILENT)
def test_a_broken_model_shares_every_untouched_tensor_with_the_correct_one(tiny_reference, tiny_student, bug):
    changed = {row.ours for row in mapping_for(tiny_student, tiny_reference, bug) if row.bug}
    correct = tiny_student.state_dict()
    for name, tensor in GPT.from_hf(tiny_reference, bug).state_dict().items():
        same = tensor.data_ptr() == correct[name].data_ptr() and tensor.stride() == correct[name].stride()
        assert same == (name not in changed), name
