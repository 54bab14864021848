"""The verification report: each link of the chain of evidence, and what it says about each mistake.

every tensor -> every component -> every layer -> logits -> greedy tokens -> the same text.
"""
import json
import math
import re
from dataclasses import replace

import pytest
import torch
from transformers.pytorch_utils import Conv1D

from model.gpt import GPT, GPTConfig
from model.loading.mapping import (
    WeightMismatchError,
    audit,
    load_gpt,
    load_weights,
    mapping_for,
    naive_load_outcome,
    named_table,
)
from model.loading.mistakes import DEMONSTRATIONS, MISTAKES, changed
from model.proof.evidence import reference_greedy
from model.proof.tolerance import LESSON_ATOL, LOOSE_ATOL, TOLERANCE, atol_needed
from model.proof.verify import TEXT_SETTINGS, verify
from model.sampling import SamplingSettings
from model.serving.sequence import generate
from model.serving.text import complete
from model.serving.writer import in_dtype
from model.tokenizer import decode, encode
from tests.checkpoints import GPT2_PARAMETERS

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SILENT = [name for name in DEMONSTRATIONS if not MISTAKES[name].refused]
# Those whose text shows them too (layernorm_eps's epsilon matters little on these checkpoints)
GROSS = [name for name in SILENT if not MISTAKES[name].near_miss and name != "layernorm_eps"]
REFUSED = [name for name in DEMONSTRATIONS if MISTAKES[name].refused]
ARCHITECTURE = [name for name in SILENT if MISTAKES[name].kind == "architecture"]
# The tensors each load mistake leaves without the reference's values, by our name; n is the number of blocks.
WRONG_TENSORS = {
    "not_transposed": lambda n: [f"transformer.h.{i}.attn.c_proj.weight" for i in range(n)],
    "scrambled": lambda n: ["transformer.h.0.attn.c_attn.weight"],
    # Its biases are swapped too, but GPT-2's initial biases are zeros: swapped, the same values.
    "qkv_order": lambda n: [f"transformer.h.{i}.attn.c_attn.weight" for i in range(n)],
    "not_loaded": lambda n: ["lm_head.weight"],
    # Block 0's own tensors are right; every other block's come from block 0 (equal only where the values are).
    "wrong_tensor": lambda n: [],
    **{name: (lambda n: []) for name in ARCHITECTURE},  # every weight right: the architecture is what differs
}


@pytest.fixture(scope="module")
def gpt2_report(gpt2_reference, gpt2_ours):
    """The correct load at gpt2's full size and, beside it, the near miss of exact GELU."""
    return verify(gpt2_reference, mistake="exact_gelu", ours=gpt2_ours)


@pytest.fixture(scope="module")
def bug_reports(tiny_reference, tiny_ours):
    return {bug: verify(tiny_reference, mistake=bug, ours=tiny_ours) for bug in DEMONSTRATIONS}


def both_logits(model, reference, prompt):
    idx = torch.tensor([encode(prompt)])
    with torch.inference_mode():
        return model(idx), reference(idx).logits


# --- the correct load, at gpt2's full size -----------------------------------------------------------

def test_full_size_logits_match_within_the_stated_tolerance(gpt2_report, gpt2_ours, gpt2_reference):
    ours, theirs = both_logits(gpt2_ours, gpt2_reference, gpt2_report.prompt)
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


def test_lessons_atol_is_reported_as_measured(gpt2_report, gpt2_ours, gpt2_reference):
    ours, theirs = both_logits(gpt2_ours, gpt2_reference, gpt2_report.prompt)
    assert gpt2_report.lesson_atol == LESSON_ATOL == 1e-5
    assert gpt2_report.lesson_atol_holds == torch.allclose(ours, theirs, atol=LESSON_ATOL)


def test_top_k_gives_both_models_probabilities_for_the_references_likeliest_tokens(gpt2_report, gpt2_ours,
                                                                                  gpt2_reference):
    ours, theirs = both_logits(gpt2_ours, gpt2_reference, gpt2_report.prompt)
    top = torch.softmax(theirs[0, -1], dim=-1).topk(len(gpt2_report.top_k))
    assert [row["token"] for row in gpt2_report.top_k] == top.indices.tolist()
    assert [row["p_ours"] for row in gpt2_report.top_k] == pytest.approx(top.values.tolist(), abs=1e-6)


@pytest.mark.parametrize("bug", GROSS)
def test_full_size_gross_bugs_move_the_logits_far_outside_the_tolerance(gpt2_reference, gpt2_report, bug):
    ours, theirs = both_logits(load_gpt(gpt2_reference, MISTAKES[bug]), gpt2_reference, gpt2_report.prompt)
    assert (ours - theirs).abs().max().item() > 1000 * TOLERANCE["atol"]


@pytest.mark.parametrize("bug", REFUSED)
def test_full_size_refused_bugs_raise_the_mappings_message(gpt2_reference, bug):
    with pytest.raises(WeightMismatchError, match="refused to load: .* tensor\\(s\\) do not fit"):
        load_gpt(gpt2_reference, MISTAKES[bug])


# --- the near miss: exact GELU where GPT-2 has the tanh approximation --------------------------------

def test_full_size_exact_gelu_is_caught_at_the_projects_tolerance_and_passes_a_loose_one(gpt2_report,
                                                                                        gpt2_reference):
    ours, theirs = both_logits(load_gpt(gpt2_reference, MISTAKES["exact_gelu"]), gpt2_reference, gpt2_report.prompt)
    assert not torch.allclose(ours, theirs, **TOLERANCE) and gpt2_report.broken.caught
    assert torch.allclose(ours, theirs, atol=LOOSE_ATOL)  # the lesson's "passes at 1e-3: float noise"
    broken = gpt2_report.broken
    assert broken.max_abs_logit_diff > 100 * gpt2_report.max_abs_logit_diff  # far above float32's noise
    assert broken.max_abs_logit_diff < 1e-2


def test_full_size_exact_gelu_writes_the_references_greedy_tokens(gpt2_report):
    """The text looks right: only the logits tell."""
    assert gpt2_report.broken.greedy_tokens_agree == gpt2_report.greedy_tokens


@pytest.mark.parametrize("checkpoint", ["tiny", "trained"])
def test_exact_gelu_is_caught_yet_writes_the_same_tokens_and_text_on_small_checkpoints(request, checkpoint):
    reference = request.getfixturevalue(f"{checkpoint}_reference")
    report = verify(reference, mistake="exact_gelu", ours=request.getfixturevalue(f"{checkpoint}_ours"))
    broken = report.broken
    assert broken.caught and broken.atol_needed > TOLERANCE["atol"]
    assert broken.greedy_tokens_agree == report.greedy_tokens and broken.text_broken == broken.text_correct
    assert all(row["values_equal"] and row["shares_memory"] for row in broken.mapping)


# --- what each check can see: every tensor, every dtype --------------------------------------------

def test_every_tensor_of_the_correct_load_is_the_references_own_memory_and_values(bug_reports):
    mapping = bug_reports["not_transposed"].mapping
    assert mapping and all(row["values_equal"] and row["shares_memory"] for row in mapping)


@pytest.mark.parametrize("bug", [bug for bug in SILENT if bug != "wrong_tensor"])
def test_a_silent_bug_fails_the_audit_of_exactly_the_tensors_it_changes(bug_reports, tiny_reference, bug):
    broken = bug_reports[bug].broken
    wrong = [row["ours"] for row in broken.mapping if not row["values_equal"]]
    changed_rows = [row["ours"] for row in broken.changed_rows]  # the rows the table says it changes
    assert wrong == WRONG_TENSORS[bug](tiny_reference.config.n_layer)
    assert set(wrong) <= set(changed_rows) and (bug == "qkv_order" or wrong == changed_rows)
    copies = [row["ours"] for row in broken.mapping if not row["shares_memory"]]
    # The others read the reference's memory: a mistake that loads its own way made a tensor of its own.
    assert copies == {"not_loaded": ["lm_head.weight"], "qkv_order": changed_rows}.get(bug, [])


def test_wrong_tensor_gives_every_block_block_0s_tensors(bug_reports, tiny_reference):
    broken = bug_reports["wrong_tensor"].broken
    wrong = {row["ours"] for row in broken.mapping if not row["values_equal"]}
    from_block_0 = {row["ours"] for row in broken.changed_rows}
    assert from_block_0 == {row["ours"] for row in broken.mapping if row["ours"].startswith("transformer.h.1.")}
    assert wrong and wrong <= from_block_0  # LayerNorms at their initial ones and zeros are the same in every block


@pytest.mark.parametrize("bug", REFUSED)
def test_a_refused_bug_has_no_loaded_tensor_to_audit(bug_reports, bug):
    broken = bug_reports[bug].broken
    assert broken.mapping == [] and broken.greedy_tokens_agree is None and broken.top_k == []
    assert all(row["values_equal"] is None for row in broken.changed_rows)


def test_audit_tells_a_copy_from_the_references_memory_and_a_changed_value_from_an_equal_one(tiny_reference):
    model = load_gpt(tiny_reference)
    copy = tiny_reference.transformer.wpe.weight.detach().clone()
    model.transformer.wpe.weight = torch.nn.Parameter(copy, requires_grad=False)
    row = next(row for row in audit(model, tiny_reference, named_table(model, tiny_reference))
               if row.name == "transformer.wpe.weight")
    assert row.values_equal and not row.shares_memory
    copy[3, 5] = torch.nextafter(copy[3, 5], torch.tensor(math.inf))  # one value, one float32 step away
    row = next(row for row in audit(model, tiny_reference, named_table(model, tiny_reference))
               if row.name == "transformer.wpe.weight")
    assert not row.values_equal


def test_precision_rows_measure_each_dtype_against_the_float32_reference(bug_reports, tiny_reference):
    report = bug_reports["exact_gelu"]
    float32, bfloat16 = report.precision  # on a CPU: no float16
    assert float32["dtype"] == "float32" and float32["max_abs_logit_diff"] == report.max_abs_logit_diff
    assert float32["allclose"] == report.allclose and float32["greedy_tokens_agree"] == report.greedy_tokens_agree
    ours, theirs = both_logits(in_dtype(load_gpt(tiny_reference), "bfloat16"), tiny_reference, report.prompt)
    assert bfloat16["dtype"] == "bfloat16"
    assert bfloat16["max_abs_logit_diff"] == pytest.approx((ours.float() - theirs).abs().max().item(), rel=1e-3)
    assert bfloat16["max_abs_logit_diff"] > float32["max_abs_logit_diff"]
    assert bfloat16["allclose"] == torch.allclose(ours.float(), theirs, **TOLERANCE)


def test_full_size_bfloat16_is_further_from_the_reference_than_float32(gpt2_report):
    float32, bfloat16 = gpt2_report.precision
    assert (float32["dtype"], bfloat16["dtype"]) == ("float32", "bfloat16")
    assert bfloat16["max_abs_logit_diff"] > float32["max_abs_logit_diff"]


def test_a_reused_lower_precision_model_gives_the_same_row(tiny_reference, tiny_ours):
    bfloat16 = in_dtype(load_gpt(tiny_reference), "bfloat16")
    made = verify(tiny_reference, ours=tiny_ours, greedy_tokens=4).precision
    reused = verify(tiny_reference, ours=tiny_ours, greedy_tokens=4, lower_precision={"bfloat16": bfloat16})
    assert reused.precision == made


@pytest.mark.parametrize("model", ["bfloat16", *SILENT])
def test_greedy_agreement_counted_in_one_pass_is_what_the_model_writes(tiny_reference, bug_reports, model):
    """The report counts a broken or lower-precision model's greedy agreement in one forward pass over the
    reference's tokens; writing token by token must agree up to the same token."""
    report = bug_reports[model if model in MISTAKES else "exact_gelu"]
    if model in MISTAKES:
        writer, counted = load_gpt(tiny_reference, MISTAKES[model]), report.broken.greedy_tokens_agree
    else:
        writer, counted = in_dtype(load_gpt(tiny_reference), model), report.precision[1]["greedy_tokens_agree"]
    n = report.greedy_tokens
    written = generate(writer, report.prompt_tokens, SamplingSettings(max_new_tokens=n, temperature=0, top_k=None,
                                                                     stop_at_eot=False))
    theirs = reference_greedy(tiny_reference, report.prompt_tokens, n)
    assert counted == next((i for i, (a, b) in enumerate(zip(written, theirs)) if a != b), n)


def test_atol_needed_is_the_smallest_atol_allclose_accepts():
    generator = torch.Generator().manual_seed(0)
    reference = torch.randn(4, 50, generator=generator) * 30  # logits of tens: rtol forgives some of the diff
    ours = reference + torch.randn(4, 50, generator=generator) * 1e-3
    needed = atol_needed(ours, reference)
    assert 0 < needed < (ours - reference).abs().max().item()
    assert torch.allclose(ours, reference, atol=needed * 1.001, rtol=TOLERANCE["rtol"])
    assert not torch.allclose(ours, reference, atol=needed * 0.999, rtol=TOLERANCE["rtol"])


# --- what a naive load_state_dict would say --------------------------------------------------------

SIZE_MISMATCH = re.compile(r"size mismatch for (\S+): copying a param with shape torch\.Size\((\[[\d, ]*\])\) "
                           r"from checkpoint, the shape in current model is torch\.Size\((\[[\d, ]*\])\)")


def what_torch_reports(model: GPT, reference_state: dict) -> dict:
    """Ask torch itself. load_state_dict raises for shape mismatches even with strict=False: read
    them from its message, then load the rest to hear which keys are missing or unexpected."""
    try:
        model.load_state_dict(reference_state, strict=False)
        mismatches = []
    except RuntimeError as error:
        mismatches = [(key, json.loads(ours), json.loads(theirs))
                      for key, theirs, ours in SIZE_MISMATCH.findall(str(error))]
    refused = {key for key, _, _ in mismatches}
    rest = model.load_state_dict({k: v for k, v in reference_state.items() if k not in refused}, strict=False)
    return {"missing_keys": sorted(set(rest.missing_keys) - refused), "unexpected_keys": sorted(rest.unexpected_keys),
            "shape_mismatches": sorted(mismatches)}


@pytest.mark.parametrize("change", [
    lambda config: config,
    lambda config: replace(config, n_inner=config.n_inner + 1),
    lambda config: replace(config, n_layer=config.n_layer - 1),
    lambda config: replace(config, n_layer=config.n_layer + 1),
], ids=["same-architecture", "wider-mlp", "one-layer-fewer", "one-layer-more"])
def test_naive_load_outcome_is_what_torchs_load_state_dict_reports(tiny_reference, change):
    model = GPT(change(GPTConfig.from_hf(tiny_reference.config)))
    reference_state = tiny_reference.state_dict()
    outcome = naive_load_outcome(named_table(model, tiny_reference),
                                 {name: t.shape for name, t in reference_state.items()})
    torch_says = what_torch_reports(model, reference_state)
    assert outcome["missing_keys"] == torch_says["missing_keys"]
    assert outcome["unexpected_keys"] == torch_says["unexpected_keys"]
    mismatches = sorted((m["key"], m["ours"], m["reference"]) for m in outcome["shape_mismatches"])
    assert mismatches == torch_says["shape_mismatches"]


def test_square_conv1d_weights_are_accepted_by_load_state_dict_untransposed(tiny_reference, tiny_ours):
    report = verify(tiny_reference, ours=tiny_ours, greedy_tokens=1)
    naive = GPT(tiny_ours.config)
    reference_state = tiny_reference.state_dict()
    naive.load_state_dict({k: v for k, v in reference_state.items() if naive.state_dict()[k].shape == v.shape},
                          strict=False)
    conv1d = {f"{name}.weight" for name, m in tiny_reference.named_modules() if isinstance(m, Conv1D)}
    accepted = [key for key in conv1d if torch.equal(naive.state_dict()[key], reference_state[key])]
    assert sorted(report.silently_accepted) == sorted(accepted) != []


# --- the report as data --------------------------------------------------------------------------

def test_report_is_json_with_the_documented_keys(bug_reports):
    data = json.loads(json.dumps(bug_reports["not_transposed"].to_dict()))
    documented = {"max_abs_logit_diff", "allclose", "tolerance", "param_count_ours", "param_count_reference",
                  "missing_keys", "unexpected_keys", "shape_mismatches", "tied", "greedy_tokens_agree",
                  "layer_max_abs_diff", "broken", "mapping", "top_k", "verified", "precision", "loose_atol"}
    assert documented <= data.keys()
    broken = {"max_abs_logit_diff", "layer_max_abs_diff", "first_divergent_layer", "text_correct", "text_broken",
              "refusal", "caught", "greedy_tokens_agree", "top_k", "mapping", "atol_needed"}
    assert broken <= data["broken"].keys()
    for row in data["mapping"] + data["broken"]["mapping"]:
        assert {"ours", "reference", "op", "values_equal", "shares_memory"} <= row.keys()
    for row in data["precision"]:
        assert row.keys() == {"dtype", "max_abs_logit_diff", "allclose", "atol_needed", "greedy_tokens_agree"}
    assert data["broken"]["top_k"][0].keys() == {"token", "text", "p_correct", "p_broken", "p_reference"}


@pytest.mark.parametrize("words", [60, 100], ids=["fits-without-room-to-write", "longer-than-the-context"])
def test_a_long_prompt_keeps_its_end_leaving_room_for_the_greedy_tokens(tiny_reference, tiny_ours, words):
    prompt = " word" * words  # one token per word; the tiny context is 64 tokens
    report = verify(tiny_reference, prompt=prompt, ours=tiny_ours)
    assert len(report.prompt_tokens) + report.greedy_tokens == tiny_reference.config.n_positions
    assert report.verified


# --- the deliberate bugs ---------------------------------------------------------------------------

@pytest.mark.parametrize("bug", DEMONSTRATIONS)
def test_every_bug_is_caught_and_verification_still_passes(bug_reports, bug):
    report = bug_reports[bug]
    assert report.broken.caught and report.verified


@pytest.mark.parametrize("bug", GROSS)
def test_a_gross_bug_loads_and_its_logits_are_far_outside_the_tolerance(bug_reports, bug):
    broken = bug_reports[bug].broken
    assert not broken.refused and broken.allclose is False
    assert broken.max_abs_logit_diff > 1000 * TOLERANCE["atol"]


@pytest.mark.parametrize("bug, first_divergent", [
    ("not_transposed", "block 0"),  # every block's c_proj is wrong, the first one first
    ("scrambled", "block 0"),
    ("qkv_order", "block 0"),
    ("not_loaded", None),  # the residual stream is untouched: only the head that reads it is wrong
    ("wrong_tensor", "block 1"),  # block 0 is block 0; block 1 is block 0 again
    ("exact_gelu", "block 0"),  # block 0's MLP is the first to compute differently
    ("relu", "block 0"),
    ("missing_causal_mask", "block 0"),
    ("attention_scale", "block 0"),
    ("post_layernorm", "block 0"),
    ("layernorm_eps", "block 0"),
    ("missing_final_layernorm", None),  # every block is right: ln_f, after them, is what is missing
    ("missing_position_embedding", "embeddings"),
])
def test_layer_diffs_show_where_a_silent_bug_first_diverges(bug_reports, bug, first_divergent):
    report = bug_reports[bug]
    index = report.broken.first_divergent_layer
    assert (report.layer_names[index] if index is not None else None) == first_divergent
    # The embeddings are right in every case but the one that leaves the positions out.
    assert (report.broken.layer_max_abs_diff[0] == 0.0) is (bug != "missing_position_embedding")


@pytest.mark.parametrize("bug, differs", [
    ("not_transposed", "attn"), ("qkv_order", "attn"), ("missing_causal_mask", "attn"), ("attention_scale", "attn"),
    ("exact_gelu", "mlp"), ("relu", "mlp"),
])
def test_each_component_fed_the_references_input_shows_which_one_computes_otherwise(bug_reports, bug, differs):
    """Fed the reference's own input, only the mistaken kind of component differs, in every block."""
    components = {row["name"]: row for row in bug_reports[bug].broken.components}
    wrong = {name.split(".")[-1] for name, row in components.items() if row["ok"] is False and name.count(".") == 2}
    assert wrong == {differs}
    assert all(row["ok"] for row in bug_reports[bug].components)  # the correct load: every one OK


def test_post_layernorm_shows_in_the_block_alone_every_component_of_it_being_right(bug_reports):
    components = {row["name"]: row for row in bug_reports["post_layernorm"].broken.components}
    assert components["h.0"]["ok"] is False and components["h.0"]["module"] == "transformer.h.0"
    assert all(components[f"h.0.{part}"]["ok"] for part in ("ln_1", "attn", "ln_2", "mlp"))


@pytest.mark.parametrize("bug", GROSS)
def test_a_gross_bug_writes_other_text_from_the_same_prompt_and_seed(bug_reports, tiny_ours, bug):
    broken = bug_reports[bug].broken
    assert broken.text_correct == complete(tiny_ours, bug_reports[bug].prompt, TEXT_SETTINGS)
    assert broken.text_broken != broken.text_correct


@pytest.mark.parametrize("bug", REFUSED)
def test_a_refused_bug_reports_the_mappings_message_instead_of_text(bug_reports, bug):
    broken = bug_reports[bug].broken
    assert broken.refused and broken.text_broken is None and broken.max_abs_logit_diff is None
    assert broken.refused_keys and all(f"mismatch at {key}:" in broken.refusal for key in broken.refused_keys[:6])


def test_the_shape_check_refuses_exactly_the_non_square_conv1d_weights_left_untransposed(tiny_reference):
    """Why not_transposed leaves only the square weight so: every other one it would refuse."""
    conv1d = {f"{name}.weight": m.weight.shape for name, m in tiny_reference.named_modules() if isinstance(m, Conv1D)}
    non_square = [name for name, (rows, cols) in conv1d.items() if rows != cols]
    with torch.device("meta"):
        model = GPT(GPTConfig.from_hf(tiny_reference.config))
    untransposed = [changed(row, "copy") if row.op == "transpose" else row for row in named_table(model, tiny_reference)]
    with pytest.raises(WeightMismatchError) as refused:
        load_weights(model, tiny_reference, untransposed)
    assert refused.value.keys == non_square


def test_not_transposed_changes_exactly_the_square_weights(bug_reports, tiny_reference):
    rows = [row["ours"] for row in bug_reports["not_transposed"].broken.changed_rows]
    assert rows == [f"transformer.h.{i}.attn.c_proj.weight" for i in range(tiny_reference.config.n_layer)]


def test_raw_copy_reads_the_references_memory_in_the_wrong_shape(tiny_reference):
    weight = tiny_reference.transformer.h[0].attn.c_attn.weight  # Conv1D: (in, out) = (d, 3d)
    with pytest.raises(RuntimeError):
        torch.empty(weight.shape[::-1]).copy_(weight)  # why the bug needs raw memory: copy_ refuses
    broken = load_gpt(tiny_reference, MISTAKES["scrambled"]).transformer.h[0].attn.c_attn.weight
    assert broken.data_ptr() == weight.data_ptr()
    assert torch.equal(broken, weight.reshape(weight.shape[::-1])) and not torch.equal(broken, weight.t())


@pytest.mark.parametrize("bug", SILENT)
def test_a_broken_model_shares_every_untouched_tensor_with_the_correct_one(tiny_reference, tiny_ours, bug):
    untouched = {row.name for row in mapping_for(tiny_ours, tiny_reference, MISTAKES[bug]) if not row.bug}
    correct = tiny_ours.state_dict()
    for name, tensor in load_gpt(tiny_reference, MISTAKES[bug]).state_dict().items():
        same = tensor.data_ptr() == correct[name].data_ptr() and tensor.stride() == correct[name].stride()
        assert same == (name in untouched), name
