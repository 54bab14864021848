"""What the app shows, computed from what `model/` reports: HTML, tables and plot data.

Pure functions of a verification report (the dict `python -m model.verify --json` prints), so the
page shows exactly what the `/verify_report` endpoint returns, and every view is testable without
a server. Model text is always escaped: GPT-2 writes angle brackets too.
"""
import math
import re
from html import escape

import pandas as pd

from model.bugs import BUGS

LESSON_PROMPTS = [
    "The meaning of life is",
    "The capital of France is",
    "Once upon a time in a land far away",
    "The transformer architecture consists of",
]
# The mapping table's colours, one per way a tensor is loaded (a bug's rows are red).
OP_COLOURS = {"copy": "#dbeafe", "transpose": "#fde68a", "tied": "#bbf7d0", "bug": "#fecaca"}
OP_MEANINGS = {
    "copy": "copied as it is",
    "transpose": "transposed: Conv1D stores (in, out), nn.Linear (out, in)",
    "tied": "tied: the very same tensor as wte",
}
PLOT_COLOURS = {"correct load": "#15803d", "broken load": "#dc2626"}
# A log scale has no 0: a layer that matches to the last bit is drawn at this height.
EXACT_MATCH_DRAWN_AT = 1e-8
PLOT_LOG10_RANGE = [-9, 4]  # the same axis on every run: exact matches at the bottom, broken loads high up
LAYER_INDEX = re.compile(r"\.h\.(\d+)\.")
EOT_RUN = re.compile(f"(?:{re.escape(escape('<|endoftext|>'))})+")


# --- the header ----------------------------------------------------------------------------------

def header_html(model_name: str, device: str, dtype: str, report: dict, fallback_reason: str | None,
                serving: dict | None = None) -> str:
    """Which weights, where, how a class is served, and the start-up verdict; above it, the banner for
    random weights. serving: the engine's rows and its start-up check, or None (each generation alone)."""
    weights = f"random weights in {escape(model_name)}'s shape" if fallback_reason else escape(model_name)
    ok = report["allclose"]
    verdict = (f"<b>{_mark(ok)} {'verified' if ok else 'NOT verified'}</b> at start-up: "
               f"max |Δ logit| {report['max_abs_logit_diff']:.1e} "
               f"({'within' if ok else 'outside'} atol {report['tolerance']['atol']:g})")
    facts = [f"<b>{weights}</b>", f"{report['param_count_ours']:,} parameters", f"on <b>{escape(device)}</b>",
             f"generating in {escape(dtype)}", f"<span class='{'pass' if ok else 'fail'}'>{verdict}</span>"]
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
            f"<span class='{'pass' if same else 'fail'}'>{_mark(same)} {check}</span> (checked at start-up)")


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
                top_k=top_k_table(report), checks=checks_table(report), facts=facts_html(report),
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
                  f"allclose is <b>{broken['allclose']}</b>. {_where_it_diverges(report)}")
    title = f"Bug {broken['bug']}: {'caught' if broken['caught'] else 'NOT caught'}"
    return f"<div class='verdict-cards'>{correct}{_card(broken['caught'], title, detail)}</div>"


def checks_table(report: dict) -> pd.DataFrame:
    return pd.DataFrame([(_mark(c["ok"]), c["check"], c["detail"]) for c in report["checks"]],
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
    """The mapping table, one row per parameter pattern (block rows folded), coloured by operation."""
    changed = {row["ours"]: row["op"] for row in (report["broken"] or {}).get("changed_rows", [])}
    groups: dict[tuple, list[int]] = {}  # (name pattern, shapes, op, bug op) -> block indices
    order: dict[str, int] = {}  # name pattern -> its place in the model, so a bug's rows stay in place
    for row in report["mapping"]:
        pattern, block = _block_pattern(row["ours"])
        order.setdefault(pattern, len(order))
        key = (pattern, tuple(row["our_shape"]), tuple(row["reference_shape"]), row["op"], changed.get(row["ours"]))
        groups.setdefault(key, []).append(block)
    counts = {op: sum(row["op"] == op for row in report["mapping"]) for op in OP_MEANINGS}
    legend = "".join(f"<span class='chip' style='background:{OP_COLOURS[op]}'>{op} ×{counts[op]}</span> "
                     f"{OP_MEANINGS[op]} " for op in OP_MEANINGS)
    if changed:
        legend += (f"<span class='chip' style='background:{OP_COLOURS['bug']}'>bug ×{len(changed)}</span> "
                   "what the bug does instead")
    in_place = sorted(groups.items(), key=lambda group: (order[group[0][0]], group[1][0] or 0))
    rows = "".join(_mapping_row(*key, blocks) for key, blocks in in_place)
    return (f"<div class='legend'>{legend}</div><div class='mapping'><table>"
            f"<tr><th>our parameter</th><th>ours</th><th>operation</th><th>reference</th></tr>{rows}</table></div>")


def _mapping_row(pattern, our_shape, reference_shape, op, bug_op, blocks) -> str:
    colour = OP_COLOURS["bug" if bug_op else op]
    doing = f"<s>{op}</s> <b>{bug_op}</b>" if bug_op else op
    return (f"<tr style='background:{colour}'><td><code>{escape(_folded(pattern, blocks))}</code></td>"
            f"<td>{list(our_shape)}</td>"
            f"<td>← {doing}</td><td>{list(reference_shape)}</td></tr>")


# --- the plot, the top-k table, the texts --------------------------------------------------------

def layer_plot(report: dict) -> pd.DataFrame:
    """Max abs difference of the residual stream after each layer (log10), correct and broken loads.

    x is the layer's position (0 = embeddings), so the layers stay in order on a numeric axis. Both
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
        [{"layer": i, "name": names[i], "load": load, "max_abs_diff": diff, "log10_diff": _log10(diff)}
         for load, diffs in series.items() for i, diff in enumerate(diffs)])


def _log10(diff: float) -> float:
    return math.log10(max(diff, EXACT_MATCH_DRAWN_AT)) if not math.isnan(diff) else math.nan


def top_k_table(report: dict) -> pd.DataFrame:
    """Next-token probabilities, ours against the reference's, for the reference's top tokens."""
    return pd.DataFrame([(repr(row["text"]), f"{row['p_ours']:.6f}", f"{row['p_reference']:.6f}",
                          f"{abs(row['p_ours'] - row['p_reference']):.1e}") for row in report["top_k"]],
                        columns=["next token", "p ours", "p reference", "|Δ|"])


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
    """The bug's summary and what it is expected to do, for the Verify tab's picker."""
    if bug == "none":
        return "The correct load only: every tensor copied, transposed or tied as the mapping table says."
    info = BUGS[bug]
    kind = "silent: it loads and runs" if info.silent else "loud: the mapping refuses to load it"
    return f"**{bug}** ({kind}). {info.summary}"


# --- small pieces --------------------------------------------------------------------------------

def _mark(ok: bool) -> str:
    return "✓" if ok else "✗"  # in every font, unlike the emoji


def _mark_html(ok: bool) -> str:
    return f"<b class='{'pass' if ok else 'fail'}'>{_mark(ok)}</b>"


def _card(ok: bool, title: str, detail: str) -> str:
    return (f"<div class='card {'pass' if ok else 'fail'}'><div class='big'>{_mark(ok)} {escape(title)}</div>"
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


def _where_it_diverges(report: dict) -> str:
    layer = report["broken"]["first_divergent_layer"]
    if layer is None:  # every hidden state matches, so the logits differ in the head alone
        return "Every layer matches: the output head (lm_head) makes the difference."
    return f"First diverges at <b>{escape(report['layer_names'][layer])}</b>."


def _block_pattern(name: str) -> tuple[str, int | None]:
    """'transformer.h.3.attn.c_attn.weight' -> ('transformer.h.{}.attn.c_attn.weight', 3); None outside blocks."""
    match = LAYER_INDEX.search(name)
    return LAYER_INDEX.sub(".h.{}.", name), int(match[1]) if match else None


def _folded(pattern: str, blocks: list[int | None]) -> str:
    """One name for a parameter of several blocks: transformer.h.0–11.attn.c_attn.weight."""
    if blocks == [None]:
        return pattern
    if len(blocks) > 1 and blocks == list(range(blocks[0], blocks[-1] + 1)):
        return pattern.format(f"{blocks[0]}–{blocks[-1]}")
    return pattern.format(",".join(map(str, blocks)))


def _layer_span(names: list[str]) -> str:
    """Parameter names that differ only in their block, folded into one each."""
    patterns: dict[str, list[int]] = {}
    for name in names:
        pattern, block = _block_pattern(name)
        patterns.setdefault(pattern, []).append(block)
    return ", ".join(f"<code>{escape(_folded(pattern, blocks))}</code>" for pattern, blocks in patterns.items())
