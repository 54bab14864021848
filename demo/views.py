"""What the app shows, computed from what `model/` reports: HTML, tables and plot data.

Pure functions of a verification report (the dict `python -m model.verify --json` prints), so the
page shows exactly what the `/verify_report` endpoint returns, and every view is testable without
a server. Model text is always escaped: GPT-2 writes angle brackets too.
"""
import math
import re
from html import escape

import pandas as pd

from model.loading.mapping import OPS
from model.loading.mistakes import MISTAKES
from model.proof.wording import (
    AXIS_DECADES,
    audit_sentences,
    axis_fraction,
    caught_at,
    fold_blocks,
    folded_names,
    mark,
    tolerance_marks,
    tolerance_points,
    where_it_diverges,
)

LESSON_PROMPTS = [
    "The meaning of life is",
    "The capital of France is",
    "Once upon a time in a land far away",
    "The transformer architecture consists of",
]
# The mapping table's colours, one per way a tensor is loaded (a bug's rows are red).
OP_COLOURS = {"copy": "#dbeafe", "transpose": "#fde68a", "tied": "#bbf7d0", "split": "#e9d5ff", "bug": "#fecaca"}
PLOT_COLOURS = {"correct load": "#15803d", "broken load": "#dc2626"}
# A log scale has no 0: a layer that matches to the last bit is drawn at this height.
EXACT_MATCH_DRAWN_AT = 1e-8
PLOT_LOG10_RANGE = [-9, 4]  # the same axis on every run: exact matches at the bottom, broken loads high up
# The tolerance axis: a colour for each kind of thing it places.
AXIS_COLOURS = {"float32": "#15803d", "bfloat16": "#2563eb", "float16": "#7c3aed", "bug": "#dc2626"}
EOT_RUN = re.compile(f"(?:{re.escape(escape('<|endoftext|>'))})+")


# --- the header ----------------------------------------------------------------------------------

def header_html(model_name: str, device: str, dtype: str, report: dict, fallback_reason: str | None,
                serving: dict | None = None) -> str:
    """Which weights, where, how a class is served, and the start-up verdict; above it, the banner for
    random weights. serving: the engine's rows and its start-up check, or None (each generation alone)."""
    weights = f"random weights in {escape(model_name)}'s shape" if fallback_reason else escape(model_name)
    ok = report["allclose"]
    verdict = (f"<b>{mark(ok)} {'verified' if ok else 'NOT verified'}</b> at start-up: "
               f"max |Δ logit| {report['max_abs_logit_diff']:.1e} "
               f"({'within' if ok else 'outside'} atol {report['tolerance']['atol']:g})")
    facts = [f"<b>{weights}</b>", f"{report['param_count_ours']:,} parameters", f"on <b>{escape(device)}</b>",
             f"generating in {escape(dtype)}" + ("" if dtype == "float32" else " (verified in float32)"),
             f"<span class='{'pass' if ok else 'fail'}'>{verdict}</span>"]
    banner = fallback_banner_html(model_name, fallback_reason) if fallback_reason else ""
    return (f"{banner}<div class='app-header'><h1>Our GPT, OpenAI's GPT-2 weights</h1>"
            f"<p>{' · '.join(facts)}</p><p class='serving'>{serving_html(serving)}</p></div>")


def serving_html(serving: dict | None) -> str:
    """One line: one shared loop for the class (and whether a text is the same in it as alone), or one per request."""
    if serving is None:
        return "Each generation runs on its own (a ZeroGPU Space lends a GPU per call)."
    same = serving["row_invariance"]
    check = ("a text is bit for bit what it would be alone" if same else
             f"batched rows round differently here (by up to {serving['max_abs_diff']:.0e}): a sampled text may "
             f"differ from the same seed written alone")
    return (f"One shared decoding loop writes for up to {serving['rows']} students at once · "
            f"<span class='{'pass' if same else 'fail'}'>{mark(same)} {check}</span> (checked at start-up)")


def fallback_banner_html(model_name: str, reason: str) -> str:
    name = escape(model_name)
    return (f"<div class='offline-banner'><b>⚠ The {name} weights could not be loaded, so this app runs on a "
            f"randomly initialised GPT-2 of the same shape.</b><br>"
            f"Verification still shows the mapping and that our logits equal the reference's; "
            f"the text it generates is gibberish.<br>"
            f"Why: {escape(reason.split('. ')[0])}.<br>"  # its first sentence: the advice follows in full
            f"To get the real weights: start <code>python -m demo --model {name}</code> once with a network "
            f"(the weights are cached for later), or, on a machine with one, run "
            f"<code>hf download {name} config.json model.safetensors --local-dir gpt2-local</code>, copy the "
            f"folder here and start <code>python -m demo --model ./gpt2-local</code>.</div>")


# --- the Verify tab -----------------------------------------------------------------------------------

def report_panels(report: dict) -> dict:
    """Every view of a report, by the name of the Verify tab's panel that shows it."""
    return dict(verdict=verdict_html(report), texts=texts_html(report), layers=layer_plot(report),
                top_k=top_k_table(report), broken_top_k=broken_top_k_html(report),
                tolerance=tolerance_axis_html(report), checks=checks_table(report), facts=facts_html(report),
                mapping=mapping_html(report), json=report)


# --- the verdict ---------------------------------------------------------------------------------

def verdict_html(report: dict) -> str:
    """One card for the correct load and, when a bug was asked for, one for the broken load."""
    tol = report["tolerance"]
    ok = report["allclose"]
    correct = _card(
        ok, "Correct load: the same function" if ok else "Correct load: NOT the same function",
        f"max |Δ logit| = <b>{report['max_abs_logit_diff']:.2e}</b> → torch.allclose(atol={tol['atol']:g}, "
        f"rtol={tol['rtol']:g}) is <b>{ok}</b>. The lesson's atol={report['lesson_atol']:g} "
        f"{'holds too' if report['lesson_atol_holds'] else 'does not hold'}. Verification runs in float32.")
    broken = report["broken"]
    if broken is None:
        return f"<div class='verdict-cards'>{correct}</div>"
    if broken["refused"]:
        detail = (f"The mapping <b>refused to load</b> it: {len(broken['refused_keys'])} tensor(s) do not fit. "
                  "No wrong number was ever computed.")
    else:
        detail = (f"It loads without a complaint, yet max |Δ logit| = <b>{broken['max_abs_logit_diff']:.2e}</b> → "
                  f"allclose is <b>{broken['allclose']}</b>. {where_it_diverges(report, _bold)}")
    title = f"Bug {broken['bug']}: {'caught' if broken['caught'] else 'NOT caught'}"
    return f"<div class='verdict-cards'>{correct}{_card(broken['caught'], title, detail)}</div>"


def checks_table(report: dict) -> pd.DataFrame:
    return pd.DataFrame([(mark(c["ok"]), c["check"], c["detail"]) for c in report["checks"]],
                        columns=["", "check", "detail"])


def facts_html(report: dict) -> str:
    """Parameter counts, the tying check, and what a naive load_state_dict would have said."""
    counts_ok = report["param_count_ours"] == report["param_count_reference"]
    square = report["silently_accepted"]
    mismatches = "".join(f"<li><code>{escape(m['key'])}</code>: ours {m['ours']}, reference {m['reference']}</li>"
                         for m in report["shape_mismatches"])
    return (
        "<ul class='facts'>"
        f"<li>{_mark_html(counts_ok)} <b>Parameters</b>: ours {report['param_count_ours']:,}, "
        f"reference {report['param_count_reference']:,}</li>"
        f"<li>{_mark_html(report['tied'])} <b>Tying</b>: <code>lm_head.weight</code> "
        f"{'<b>is</b>' if report['tied'] else 'is <b>not</b>'} <code>transformer.wte.weight</code> "
        f"({'one tensor, two names' if report['tied'] else 'two tensors'})</li>"
        f"<li><b>A naive <code>load_state_dict(reference.state_dict())</code></b> would report "
        f"{len(report['missing_keys'])} missing and {len(report['unexpected_keys'])} unexpected keys, "
        f"<details><summary>{len(report['shape_mismatches'])} shape mismatches (the Conv1D weights)</summary>"
        f"<ul>{mismatches}</ul></details>"
        f"and accept <b class='fail'>{len(square)} square weights silently</b>, un-transposed and wrong: "
        f"{_layer_span(square)}</li></ul>")


# --- the mapping table ---------------------------------------------------------------------------

def mapping_html(report: dict) -> str:
    """The mapping table, one row per parameter pattern (block rows folded), coloured by operation, with
    each tensor's audit: OK where it holds exactly the reference's values, for the correct load and a broken one.
    """
    broken = report["broken"] or {}
    changed = {row["ours"]: row["op"] for row in broken.get("changed_rows", [])}
    audited = {row["ours"]: row for row in broken.get("mapping", [])}  # empty when no broken load ran

    def key(row):  # rows fold together only where everything shown about them is the same
        theirs = audited.get(row["ours"], {})
        return (tuple(row["our_shape"]), tuple(row["reference_shape"]), row["op"], changed.get(row["ours"]),
                row["values_equal"], row["shares_memory"], theirs.get("values_equal"), theirs.get("shares_memory"))

    counts = {op: sum(row["op"] == op for row in report["mapping"]) for op in OPS}
    legend = "".join(f"<span class='chip' style='background:{OP_COLOURS[op]}'>{op} ×{counts[op]}</span> "
                     f"{OPS[op]} " for op in OPS if counts[op])
    if changed:
        legend += (f"<span class='chip' style='background:{OP_COLOURS['bug']}'>bug ×{len(changed)}</span> "
                   "what the bug does instead")
    broken_column = f"<th>broken load ({escape(broken['bug'])})</th>" if audited else ""
    rows = "".join(_mapping_row(name, group[0], changed.get(group[0]["ours"]), audited.get(group[0]["ours"]))
                   for name, group in fold_blocks(report["mapping"], key))
    return (f"{audit_summary_html(report)}<div class='legend'>{legend}</div><div class='mapping'><table>"
            f"<tr><th>our parameter</th><th class='shape'>ours</th><th>operation</th><th class='shape'>reference</th>"
            f"<th>correct load</th>"
            f"{broken_column}</tr>{rows}</table></div>")


def _mapping_row(name: str, row: dict, bug_op: str | None, broken_row: dict | None) -> str:
    op = row["op"]
    colour = OP_COLOURS["bug" if bug_op else op]
    doing = f"<s>{op}</s> <b>{bug_op}</b>" if bug_op else op
    broken_cell = _audit_cell(broken_row) if broken_row else ""
    return (f"<tr style='background:{colour}'><td><code>{escape(name)}</code></td>"
            f"<td class='shape'>{row['our_shape']}</td><td>← {doing}</td>"
            f"<td class='shape'>{row['reference_shape']}</td>{_audit_cell(row)}{broken_cell}</tr>")


def _audit_cell(row: dict) -> str:
    """OK / NOT OK for one tensor's values, and whether it is the reference's own memory."""
    memory = "the reference's memory" if row["shares_memory"] else "its own memory"
    verdict = "<b>✓ OK</b>" if row["values_equal"] else "<b>✗ NOT OK</b>"
    return f"<td class='audit {'pass' if row['values_equal'] else 'fail'}'>{verdict} <small>{memory}</small></td>"


def audit_summary_html(report: dict) -> str:
    """Every tensor checked against the reference's values, in one sentence per load (wording.audit_sentences)."""
    lines = [(f"{_mark_html(sentence['ok'])} " if sentence["ok"] is not None else "")
             + f"<b>{escape(sentence['load'])}</b>: {escape(sentence['text'])}"
             + (f" Those NOT OK: {_layer_span(sentence['wrong'])}." if sentence["wrong"] else "")
             for sentence in audit_sentences(report)]
    return "<ul class='facts audit-summary'>" + "".join(f"<li>{line}</li>" for line in lines) + "</ul>"


# --- the plot, the top-k table, the texts --------------------------------------------------------

def layer_plot(report: dict) -> pd.DataFrame:
    """Max abs difference of the residual stream after each layer (log10), correct and broken loads.

    x is the layer's position (0 = embeddings) as a label, so the axis has one tick per whole layer,
    kept in order by `layer_axis`. Both
    series are always there, a missing one as NaN: Gradio's plot keeps the colours it first saw. No
    tolerance line: allclose also allows rtol·|value|, and GPT-2's residual stream holds values in
    the thousands, so a plain atol line would wrongly flag a correct load.
    """
    names = report["layer_names"]
    broken = report["broken"]
    no_broken_load = [math.nan] * len(names)
    series = {"correct load": report["layer_max_abs_diff"],
              "broken load": (broken and broken["layer_max_abs_diff"]) or no_broken_load}
    return pd.DataFrame(
        [{"layer": layer, "name": name, "load": load, "max_abs_diff": diff, "log10_diff": _log10(diff)}
         for load, diffs in series.items() for layer, name, diff in zip(layer_axis(report), names, diffs)])


def layer_axis(report: dict) -> list[str]:
    """The layer plot's x values in order: "0" (the embeddings), "1" (block 0), ..."""
    return [str(i) for i in range(len(report["layer_names"]))]


def _log10(diff: float) -> float:
    return math.log10(max(diff, EXACT_MATCH_DRAWN_AT)) if not math.isnan(diff) else math.nan


def top_k_table(report: dict) -> pd.DataFrame:
    """Next-token probabilities, ours against the reference's, for the reference's top tokens."""
    return pd.DataFrame([(repr(row["text"]), f"{row['p_ours']:.6f}", f"{row['p_reference']:.6f}",
                          f"{abs(row['p_ours'] - row['p_reference']):.1e}") for row in report["top_k"]],
                        columns=["next token", "p ours", "p reference", "|Δ|"])


def broken_top_k_html(report: dict) -> str:
    """The broken load's next-token probabilities beside the correct load's and the reference's, and
    how many of the reference's greedy tokens it writes too."""
    broken = report["broken"]
    title = "<div class='broken-next'><h3>The broken load's next token</h3>"
    if broken is None:
        return (f"{title}<p class='muted'>Pick a bug and run again: its next-token probabilities appear here, "
                f"beside the correct load's and the reference's.</p></div>")
    if broken["refused"]:
        return (f"{title}<p>Bug <b>{escape(broken['bug'])}</b> was refused by the mapping: it never ran, "
                f"so it predicts nothing.</p></div>")
    agree, n = broken["greedy_tokens_agree"], report["greedy_tokens"]
    greedy = f"Greedy: <b>{agree} of {n}</b> tokens the broken load writes agree with the reference's."
    if agree == n and not broken["allclose"]:
        greedy += (f" <b>The text agrees; the logits do not</b> (max |Δ| {broken['max_abs_logit_diff']:.1e}): "
                   "only comparing the logits catches this bug.")
    rows = "".join(f"<tr><td><code>{escape(repr(row['text']))}</code></td><td>{row['p_correct']:.6f}</td>"
                   f"<td class='broken'>{row['p_broken']:.6f}</td><td>{row['p_reference']:.6f}</td>"
                   f"<td>{abs(row['p_broken'] - row['p_reference']):.1e}</td></tr>" for row in broken["top_k"])
    return (f"{title}<p>{greedy}</p><div class='table'><table><tr><th>next token</th><th>p correct</th>"
            f"<th>p broken ({escape(broken['bug'])})</th><th>p reference</th><th>|Δ| broken</th></tr>{rows}"
            "</table></div>"
            "<p class='muted'>The reference's likeliest tokens, then the broken load's own favourites.</p></div>")


def texts_html(report: dict) -> str:
    """What the correct and the broken load write from the same prompt and seed, side by side."""
    prompt = f"<b>{escape(report['prompt'])}</b>"
    broken = report["broken"]
    if broken is None:
        return _columns(("Correct load (greedy)", prompt + _model_text(report["greedy_text"]), "pass"),
                        ("Broken load", "Pick a bug and run again to see what a wrong load writes.", "muted"))
    correct = ("Correct load", prompt + _model_text(broken["text_correct"]), "pass")
    if broken["refused"]:
        why = (f"<pre>{escape(broken['refusal'])}</pre><p><b>Why this is good news:</b> "
               f"{escape(broken['explanation'])}</p>")
        return _columns(correct, (f"Broken load ({broken['bug']}): refused", why, "pass"))
    wrong = f"{prompt}{_model_text(broken['text_broken'])}<p class='why'>{escape(broken['explanation'])}</p>"
    return _columns(correct, (f"Broken load ({broken['bug']})", wrong, "fail"))


def bug_description(bug: str) -> str:
    """The mistake's summary and what it is expected to do, for the Verify tab's picker."""
    if bug == "none":
        return "The correct load only: every tensor copied, transposed or tied as the mapping table says."
    mistake = MISTAKES[bug]
    kind = "loud: the mapping refuses to load it" if mistake.refused else "silent: it loads and runs"
    if mistake.near_miss:
        kind += ", and writes the same text"
    return f"**{bug}**, a {mistake.kind} mistake ({kind}). {mistake.summary}"


# --- the tolerance axis --------------------------------------------------------------------------

def tolerance_axis_html(report: dict) -> str:
    """Float noise, lower precision and the bug on one log scale, against the lesson's, the project's
    and a loose tolerance; below it, the verdict of allclose at each, and the atol each would need."""
    marks, points = tolerance_marks(report), tolerance_points(report)
    labels = "".join(f"<span class='mark-label' style='left:{_axis_percent(atol):.1f}%;top:{i * 1.3:.1f}em'>"
                     f"{name} {atol:.0e}</span>" for i, (name, atol) in enumerate(marks))
    lines = "".join(f"<span class='mark' style='left:{_axis_percent(atol):.1f}%'></span>" for _, atol in marks)
    rows = [_axis_row("", labels, "axis-labels")]
    rows += [_axis_row(point["label"], lines + _axis_dot(point), "") for point in points]
    ticks = "".join(f"<span class='tick' style='left:{_axis_percent(10.0 ** d):.1f}%'>1e{d}</span>"
                    for d in range(AXIS_DECADES[0], AXIS_DECADES[1] + 1, 2))
    rows.append(_axis_row("", ticks, "axis-ticks"))
    rtol = report["tolerance"]["rtol"]
    head = "".join(f"<th>{name}<br>{atol:.0e}</th>" for name, atol in marks)
    table = "".join(_verdict_row(point, marks, report["greedy_tokens"]) for point in points)
    return ("<div class='tolerance'><h3>Which tolerance catches what</h3>"
            "<p>max |Δ logit| against the float32 reference, on one log scale; the dashed lines are the atol of "
            f"each tolerance (each with rtol {rtol:g}, torch's default). In the table, what allclose says at each: "
            f"<i>same</i> or <i>differs</i>.</p>{''.join(rows)}"
            f"<div class='table'><table><tr><th></th><th>max |Δ logit|</th><th>allclose needs atol ≥</th>{head}"
            f"<th>greedy tokens agree</th></tr>{table}</table></div>"
            f"<p>{_tolerance_lesson(report, points, marks)}</p></div>")


def _axis_percent(value: float) -> float:
    return 100 * axis_fraction(value)


def _axis_row(label: str, content: str, css: str) -> str:
    return (f"<div class='axis-row {css}'><div class='what'>{escape(label)}</div>"
            f"<div class='track'>{content}</div></div>")


def _axis_dot(point: dict) -> str:
    diff = point["max_abs_logit_diff"]
    if diff is None:
        return "<span class='refused'>refused: no logits to compare</span>"
    where = _axis_percent(diff)
    side = f"right:{100 - where:.1f}%" if where > 70 else f"left:{where:.1f}%"  # the number stays inside the track
    return (f"<span class='dot' style='left:{where:.1f}%;background:{AXIS_COLOURS[point['kind']]}'></span>"
            f"<span class='value' style='{side}'>{diff:.1e}</span>")


def _verdict_row(point: dict, marks, greedy_tokens: int) -> str:
    label = escape(point["label"])
    if point["max_abs_logit_diff"] is None:
        return f"<tr><td>{label}</td><td colspan='{len(marks) + 3}'>refused by the mapping: no logits</td></tr>"
    verdicts = "".join("<td class='differs'>differs</td>" if differs else "<td class='same'>same</td>"
                       for differs in caught_at(point, marks))
    needed = f"{point['atol_needed']:.1e}" if point["atol_needed"] else "0: rtol covers it"
    return (f"<tr><td>{label}</td><td>{point['max_abs_logit_diff']:.1e}</td><td>{needed}</td>"
            f"{verdicts}<td>{point['greedy_tokens_agree']} of {greedy_tokens}</td></tr>")


def _tolerance_lesson(report: dict, points: list[dict], marks) -> str:
    """In words: which tolerance the bug passes, and what each lower precision would need."""
    sentences = [f"{point['label']} would need atol ≥ {point['atol_needed']:.1e}." for point in points
                 if point["kind"] not in ("float32", "bug")]
    bug = next((point for point in points if point["kind"] == "bug"), None)
    if bug is not None and bug["max_abs_logit_diff"] is not None:
        caught = [f"{name} {atol:.0e}" for name, atol in marks if bug["atol_needed"] > atol]
        passed = [f"{name} {atol:.0e}" for name, atol in marks if bug["atol_needed"] <= atol]
        sentence = f"<b>{escape(bug['label'])}</b> is caught at {', '.join(caught) or 'no tolerance shown'}"
        if passed:
            sentence += (f", and passes at {', '.join(passed)}: there it would be called floating-point noise, "
                         f"yet it is not the same function")
        sentences.insert(0, sentence + ".")
    return " ".join(sentences)


# --- small pieces --------------------------------------------------------------------------------

def _bold(text: str) -> str:
    return f"<b>{escape(text)}</b>"


def _mark_html(ok: bool) -> str:
    return f"<b class='{'pass' if ok else 'fail'}'>{mark(ok)}</b>"


def _card(ok: bool, title: str, detail: str) -> str:
    return (f"<div class='card {'pass' if ok else 'fail'}'><div class='big'>{mark(ok)} {escape(title)}</div>"
            f"<div>{detail}</div></div>")


def _columns(*columns: tuple[str, str, str]) -> str:
    """(title, body html, css class) each, side by side."""
    return "<div class='side-by-side'>" + "".join(
        f"<div class='column {css}'><h3>{escape(title)}</h3><div class='text'>{body}</div></div>"
        for title, body, css in columns) + "</div>"


def _model_text(text: str) -> str:
    """Escaped, with each run of <|endoftext|> (the model has ended its text) shown once, dimmed."""
    def dim(run):
        count = run[0].count("endoftext")
        return f"<span class='eot'>{escape('<|endoftext|>')}{f' ×{count}' if count > 1 else ''}</span>"
    return EOT_RUN.sub(dim, escape(text))


def _layer_span(names: list[str]) -> str:
    """Parameter names that differ only in their block, folded into one each."""
    return ", ".join(f"<code>{escape(name)}</code>" for name in folded_names(names))
