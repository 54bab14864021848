"""demo/views.py: what the page shows, from real verification reports, without a server."""
import copy
import math
import re

import pytest
import torch

from demo import views
from model.loading.mapping import load_gpt
from model.loading.mistakes import DEMONSTRATIONS, MISTAKES
from model.proof.tolerance import LESSON_ATOL, LOOSE_ATOL, TOLERANCE
from model.proof.verify import verify
from model.tokenizer import encode

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def reports(tiny_reference):
    """The JSON report for the correct load and for each mistake, keyed by its id ("none" for none)."""
    return {bug: verify(tiny_reference, PROMPT, None if bug == "none" else bug).to_dict()
            for bug in ["none", *DEMONSTRATIONS]}


def silent_and_loud():
    return ([name for name in DEMONSTRATIONS if not MISTAKES[name].refused],
            [name for name in DEMONSTRATIONS if MISTAKES[name].refused])


def test_verdict_of_the_correct_load_names_the_diff_and_the_tolerance(reports):
    report = reports["none"]
    html = views.verdict_html(report)
    assert "✓ Correct load: the same function" in html
    assert f"{report['max_abs_logit_diff']:.2e}" in html
    assert "torch.allclose(atol=0.0001, rtol=1e-05) is <b>True</b>" in html
    assert html.count("<div class='card ") == 1  # no bug asked for: no second card


def test_verdict_turns_red_when_the_logits_differ(reports):
    report = copy.deepcopy(reports["none"])
    report.update(allclose=False, max_abs_logit_diff=3.5)
    html = views.verdict_html(report)
    assert "card fail" in html and "✗ Correct load: NOT the same function" in html and "3.50e+00" in html


@pytest.mark.parametrize("bug", silent_and_loud()[0])
def test_verdict_of_a_silent_bug_shows_how_far_off_it_is(reports, bug):
    report = reports[bug]
    html = views.verdict_html(report)
    assert f"✓ Bug {bug}: caught" in html
    assert "loads without a complaint" in html and f"{report['broken']['max_abs_logit_diff']:.2e}" in html
    layer = report["broken"]["first_divergent_layer"]
    assert (f"First diverges at <b>{report['layer_names'][layer]}</b>" if layer is not None
            else "the output head (lm_head) makes the difference") in html


@pytest.mark.parametrize("bug", silent_and_loud()[1])
def test_verdict_of_a_refused_bug_says_the_mapping_refused(reports, bug):
    html = views.verdict_html(reports[bug])
    assert f"✓ Bug {bug}: caught" in html
    assert f"refused to load</b> it: {len(reports[bug]['broken']['refused_keys'])} tensor(s)" in html


def test_checks_table_has_one_row_per_check(reports):
    report = reports["not_transposed"]
    table = views.checks_table(report)
    assert list(table["check"]) == [c["check"] for c in report["checks"]]
    assert set(table[""]) == {"✓"}


def test_facts_show_counts_tying_and_what_a_naive_load_would_say(reports):
    report = reports["none"]
    html = views.facts_html(report)
    assert f"ours {report['param_count_ours']:,}, reference {report['param_count_reference']:,}" in html
    assert "<code>lm_head.weight</code> <b>is</b> <code>transformer.wte.weight</code>" in html
    assert f"{len(report['shape_mismatches'])} shape mismatches" in html
    # tiny has 2 blocks, each with one square Conv1D weight: attn.c_proj, folded into one name
    assert "2 square weights silently" in html and "transformer.h.0–1.attn.c_proj.weight" in html


def test_mapping_table_folds_the_blocks_and_colours_each_operation(reports):
    report = reports["none"]
    html = views.mapping_html(report)
    for op in ("copy", "transpose", "tied"):  # ours splits nothing: no "split" in the legend
        count = sum(row["op"] == op for row in report["mapping"])
        assert f"{op} ×{count}</span>" in html
    assert "split ×" not in html
    rows = html.split("<tr ")[1:]
    patterns = {row["ours"].replace(".h.0.", ".h.{}.").replace(".h.1.", ".h.{}.") for row in report["mapping"]}
    assert len(rows) == len(patterns)  # one row per parameter of a block, not per block
    colour_of = {row.split("<code>")[1].split("</code>")[0]: row for row in rows}
    assert views.OP_COLOURS["transpose"] in colour_of["transformer.h.0–1.attn.c_attn.weight"]
    assert views.OP_COLOURS["copy"] in colour_of["transformer.h.0–1.attn.c_attn.bias"]
    assert views.OP_COLOURS["tied"] in colour_of["lm_head.weight"]
    assert views.OP_COLOURS["bug"] not in html


def test_mapping_table_marks_the_rows_a_bug_changes_in_place(reports):
    html = views.mapping_html(reports["scrambled"])
    rows = html.split("<tr ")[1:]
    names = [row.split("<code>")[1].split("</code>")[0] for row in rows]
    broken = names.index("transformer.h.0.attn.c_attn.weight")
    assert names[broken + 1] == "transformer.h.1.attn.c_attn.weight"  # block 1's row, still right, follows it
    assert views.OP_COLOURS["bug"] in rows[broken] and "<s>transpose</s> <b>raw memory</b>" in rows[broken]
    assert views.OP_COLOURS["transpose"] in rows[broken + 1]
    assert "bug ×1</span>" in html


def test_layer_plot_has_whole_layers_in_order_for_each_load(reports):
    report = reports["not_transposed"]
    frame = views.layer_plot(report)
    n = len(report["layer_names"])
    assert views.layer_axis(report) == [str(i) for i in range(n)]  # one label per layer: no 0.5 between
    for load, diffs in [("correct load", report["layer_max_abs_diff"]),
                        ("broken load", report["broken"]["layer_max_abs_diff"])]:
        series = frame[frame["load"] == load]
        assert list(series["layer"]) == views.layer_axis(report) and list(series["name"]) == report["layer_names"]
        assert list(series["max_abs_diff"]) == diffs
        assert list(series["log10_diff"]) == [math.log10(max(d, views.EXACT_MATCH_DRAWN_AT)) for d in diffs]


@pytest.mark.parametrize("bug", ["none", "cannot_hold"])
def test_layer_plot_keeps_an_empty_broken_series_when_there_is_no_broken_forward(reports, bug):
    frame = views.layer_plot(reports[bug])
    assert list(frame["load"].unique()) == list(views.PLOT_COLOURS)  # the same colours on every run
    assert frame[frame["load"] == "broken load"]["log10_diff"].isna().all()


def test_top_k_table_compares_ours_with_the_reference(reports):
    report = reports["none"]
    table = views.top_k_table(report)
    assert list(table["next token"]) == [repr(row["text"]) for row in report["top_k"]]
    assert list(table["p reference"]) == [f"{row['p_reference']:.6f}" for row in report["top_k"]]


def test_texts_of_a_silent_bug_stand_side_by_side(reports):
    broken = reports["not_loaded"]["broken"]
    html = views.texts_html(reports["not_loaded"])
    assert html.count("<div class='column ") == 2
    assert views._model_text(broken["text_correct"]) in html and views._model_text(broken["text_broken"]) in html
    assert broken["explanation"] in html


def test_texts_of_a_refused_bug_show_the_refusal_and_why_it_is_good_news(reports):
    html = views.texts_html(reports["cannot_hold"])
    assert "refused to load" in html and "Why this is good news" in html


def test_texts_without_a_bug_show_the_greedy_text_and_invite_a_bug(reports):
    html = views.texts_html(reports["none"])
    assert views._model_text(reports["none"]["greedy_text"]) in html and "Pick a bug" in html


def test_model_text_is_escaped_and_end_of_text_runs_are_folded(reports):
    report = copy.deepcopy(reports["not_loaded"])
    report["broken"]["text_broken"] = " <b>bold?</b><|endoftext|><|endoftext|><|endoftext|>"
    html = views.texts_html(report)
    assert "&lt;b&gt;bold?&lt;/b&gt;" in html and "<b>bold?" not in html
    assert "&lt;|endoftext|&gt; ×3</span>" in html


def test_header_shows_weights_device_and_the_start_up_verdict(reports):
    html = views.header_html("gpt2", "cpu", "bfloat16", reports["none"], None)
    assert "<b>gpt2</b>" in html and "<b>cpu</b>" in html and "generating in bfloat16 (verified in float32)" in html
    assert "✓ verified</b> at start-up" in html and f"{reports['none']['max_abs_logit_diff']:.1e}" in html
    assert "offline-banner" not in html


def test_header_of_random_weights_carries_the_offline_banner(reports):
    html = views.header_html("gpt2", "cpu", "float32", reports["none"], "cannot load 'gpt2': no network")
    assert "<div class='offline-banner'>" in html
    assert "randomly initialised GPT-2 of the same shape" in html and "gibberish" in html
    assert "Why: cannot load &#x27;gpt2&#x27;: no network" in html
    assert "python -m demo --model ./gpt2-local" in html  # how to get the real weights


@pytest.mark.parametrize("bug", DEMONSTRATIONS)
def test_bug_description_says_silent_or_loud(bug):
    text = views.bug_description(bug)
    assert MISTAKES[bug].summary in text
    assert ("refuses" if MISTAKES[bug].refused else "silent") in text


# --- the tolerance axis --------------------------------------------------------------------------

def dot_positions(html: str) -> dict[str, float]:
    """Each axis row's label and the left position (%) of its dot."""
    rows = re.findall(r"<div class='what'>([^<]+)</div><div class='track'>(?:(?!axis-row).)*?"
                      r"class='dot' style='left:([\d.]+)%", html)
    return {label: float(left) for label, left in rows}


def mark_positions(html: str) -> dict[str, float]:
    return {label: float(left) for left, label in
            re.findall(r"class='mark-label' style='left:([\d.]+)%;[^']*'>([^<]+)</span>", html)}


def test_tolerance_axis_places_noise_precision_and_the_bug_against_three_labelled_tolerances(reports):
    html = views.tolerance_axis_html(reports["exact_gelu"])
    marks = mark_positions(html)
    assert list(marks) == [f"lesson {LESSON_ATOL:.0e}", f"project {TOLERANCE['atol']:.0e}", f"loose {LOOSE_ATOL:.0e}"]
    assert sorted(marks.values()) == list(marks.values())  # tightest first, left to right
    dots = dot_positions(html)
    assert list(dots) == ["float32: the noise floor", "bfloat16", "bug exact_gelu"]
    lesson, project, _ = marks.values()
    assert dots["float32: the noise floor"] < lesson  # float32's noise is under every tolerance
    assert dots["bug exact_gelu"] > project and dots["bfloat16"] > project


def test_tolerance_table_says_what_torch_allclose_says_at_each_tolerance(reports, tiny_reference):
    report = reports["exact_gelu"]
    with torch.inference_mode():
        idx = torch.tensor([encode(PROMPT)])
        broken, reference = load_gpt(tiny_reference, MISTAKES["exact_gelu"])(idx), tiny_reference(idx).logits
    html = views.tolerance_axis_html(report)
    row = html.split("<tr><td>bug exact_gelu</td>")[1].split("</tr>")[0]
    said = re.findall(r"<td class='(same|differs)'>", row)
    atols = [LESSON_ATOL, TOLERANCE["atol"], LOOSE_ATOL]
    assert said == ["same" if torch.allclose(broken, reference, atol=atol, rtol=TOLERANCE["rtol"]) else "differs"
                    for atol in atols]
    needed = report["precision"][1]["atol_needed"]
    assert f"bfloat16 would need atol ≥ {needed:.1e}" in html


def test_tolerance_axis_of_a_refused_bug_has_no_dot_for_it(reports):
    html = views.tolerance_axis_html(reports["cannot_hold"])
    assert "bug cannot_hold" not in dot_positions(html) and "refused: no logits to compare" in html


# --- every tensor, and the broken load's next token ----------------------------------------------

NOT_OK_ROWS = {"none": [], "exact_gelu": [], "not_loaded": ["lm_head.weight"],
               "scrambled": ["transformer.h.0.attn.c_attn.weight"],
               "not_transposed": ["transformer.h.0–1.attn.c_proj.weight"]}  # tiny: blocks 0 and 1, folded


@pytest.mark.parametrize("bug", NOT_OK_ROWS)
def test_mapping_table_shows_not_ok_on_exactly_the_tensors_a_bug_left_wrong(reports, bug):
    html = views.mapping_html(reports[bug])
    rows = html.split("<tr ")[1:]
    not_ok = [row.split("<code>")[1].split("</code>")[0] for row in rows if "✗ NOT OK" in row]
    assert not_ok == NOT_OK_ROWS[bug]
    assert all(row.count("✓ OK") == (1 if bug == "none" else 2) for row in rows if "NOT OK" not in row)


def test_audit_of_a_near_miss_says_the_weights_are_right_and_the_architecture_is_not(reports):
    html = views.audit_summary_html(reports["exact_gelu"])
    assert "every tensor OK" in html and "The weights are right; the architecture is not." in html
    assert f"{len(reports['exact_gelu']['mapping'])} of {len(reports['exact_gelu']['mapping'])} tensors" in html


def test_audit_of_a_refused_load_says_there_is_nothing_to_check(reports):
    html = views.mapping_html(reports["cannot_hold"])
    assert "No tensor was loaded, so there is none to check." in html
    assert "<th>broken load" not in html  # no column for tensors that do not exist


def test_broken_top_k_shows_the_three_probabilities_and_greedy_agreement(reports):
    report = reports["exact_gelu"]
    broken = report["broken"]
    html = views.broken_top_k_html(report)
    assert html.count("<tr><td><code>") == len(broken["top_k"]) >= 5
    first = broken["top_k"][0]
    assert f"{first['p_correct']:.6f}</td><td class='broken'>{first['p_broken']:.6f}</td><td>" \
           f"{first['p_reference']:.6f}" in html
    assert f"<b>{broken['greedy_tokens_agree']} of {report['greedy_tokens']}</b>" in html
    assert "The text agrees; the logits do not" in html  # tiny: all 16 greedy tokens agree


@pytest.mark.parametrize("bug, says", [("none", "Pick a bug"), ("cannot_hold", "it predicts nothing"),
                                       ("not_loaded", "0 of 16")])
def test_broken_top_k_without_a_broken_forward_says_why(reports, bug, says):
    html = views.broken_top_k_html(reports[bug])
    assert says in html and ("The text agrees" not in html)
