"""A student's check report drawn: a table for the terminal (`python -m model.check`), HTML for Jupyter.

Both draw the report's dict (model/proof/check_report.py) in the same order and the same words:
the two key lists side by side, the mapping found, every tensor, every component, the residual
stream, the logits, the greedy tokens, the mistakes named, then the text each model writes.
"""
from html import escape

from model.proof.wording import fold_blocks, mark


def verdict_line(report: dict) -> str:
    return "VERIFIED: your GPT computes GPT-2's function" if report["verified"] else "NOT VERIFIED"


def sections(report: dict) -> list[tuple[str, list[tuple[bool | None, str, str]]]]:
    """(title, [(ok or None, what, detail)]) per section, in the order of the chain of evidence."""
    tolerance = f"atol {report['tolerance']['atol']:g}, rtol {report['tolerance']['rtol']:g}"
    by_structure = sum(row["by"] == "structure" for row in report["mapping"])
    out = []
    if report["problems"]:
        out.append(("what cannot hold GPT-2's tensors (cannot_hold)",
                    [(False, name, "") for name in _folded_messages(report["problems"])]))
    if report["mapping"]:
        rows = []
        for name, group in fold_blocks(report["mapping"], _row_key, name="student"):
            row = group[0]
            piece = f" [{row['columns'][0]}:{row['columns'][1]}]" if row["columns"] else ""
            reference = fold_blocks(group, lambda r: None, name="reference")[0][0]
            rows.append((row["values_equal"], name, f"← {row['op']}{piece} {reference} (by {row['by']})"))
        title = (f"the mapping, every tensor audited: {len(report['mapping']) - by_structure} found by name, "
                 f"{by_structure} by structure; OK where it holds exactly GPT-2's values")
        out.append((title, rows))
    if report["components"]:
        rows = []
        for name, group in fold_blocks(report["components"], lambda c: (c["ok"], c["note"]), name="name"):
            check = group[0]
            where = fold_blocks(group, lambda c: None, name="module")[0][0] if check["module"] else ""
            detail = check["note"] or f"max |Δ| {max(c['max_abs_diff'] for c in group):.1e}"
            rows.append((check["ok"], name, f"{where}  {detail}".strip()))
        out.append((f"every component, fed GPT-2's own input ({tolerance})", rows))
    if report["layer_names"]:
        out.append(("the residual stream after each block, your model running on its own", [
            (ok, name, f"max |Δ| {diff:.1e}")
            for name, diff, ok in zip(report["layer_names"], report["layer_max_abs_diff"], report["layers_close"])]))
    if report["max_abs_logit_diff"] is not None:
        where = "the last position (your forward returns only that one)" if report["last_position_only"] else \
            "every position of the prompt"
        out.append(("the logits and the greedy tokens", [
            (report["allclose"], "logits", f"max |Δ| {report['max_abs_logit_diff']:.1e} at {where} ({tolerance})"),
            (report["greedy_tokens_agree"] == report["greedy_tokens"], "greedy tokens",
             f"{report['greedy_tokens_agree']} of {report['greedy_tokens']} agree with GPT-2's")]))
    if report["diagnoses"]:
        out.append(("the mistakes named, the root cause first", [
            (None if diagnosis["note"] else False, diagnosis["id"], _diagnosis_detail(diagnosis))
            for diagnosis in report["diagnoses"]]))
    return out


def _row_key(row: dict) -> tuple:
    return row["op"], row["columns"] and row["columns"][1] - row["columns"][0], row["values_equal"], row["by"]


def _folded_messages(messages: list[str]) -> list[str]:
    """Messages that differ only in the block they name, once each: 'trf_blocks.0–11.att: ...'."""
    return [name for name, _ in fold_blocks([{"text": message} for message in messages], lambda m: None, name="text")]


def _diagnosis_detail(diagnosis: dict) -> str:
    evidence = diagnosis["evidence"]
    parts = [diagnosis["summary"]]
    if evidence.get("form"):
        parts.append(f"({evidence['form']})")
    where = ", ".join(_folded_messages(diagnosis["where"]))
    parts.append(f"— {where}")
    numbers = []
    if evidence.get("max_abs_diff_to_variant") is not None:
        numbers.append(f"max |Δ| {evidence['max_abs_diff_to_variant']:.1e} from the mistake's own computation")
    if evidence.get("max_abs_diff_to_gpt2") is not None:
        numbers.append(f"{evidence['max_abs_diff_to_gpt2']:.1e} from GPT-2's")
    if evidence.get("holds"):
        numbers.append(f"it holds {evidence['holds']}")
    if evidence.get("never_called"):
        numbers.append("never called by your forward")
    return " ".join(parts) + (f" ({'; '.join(numbers)})" if numbers else "")


def _keys_side_by_side(report: dict) -> list[tuple[str, str]]:
    """Both state dicts' keys, folded over the blocks: the lesson's first exercise."""
    def folded(keys):
        rows = [{"key": name, "shape": shape} for name, shape in keys]
        return [f"{name} {group[0]['shape']}" for name, group in fold_blocks(rows, lambda r: tuple(r["shape"]), "key")]
    left, right = folded(report["keys"]["student"]), folded(report["keys"]["reference"])
    width = max(len(left), len(right))
    return list(zip(left + [""] * (width - len(left)), right + [""] * (width - len(right))))


def _mark_text(ok: bool | None) -> str:
    return {True: "OK", False: "NOT OK", None: "note"}[ok]


def format_check(report: dict) -> str:
    """The report as a table a terminal can show."""
    lines = [f"your GPT: {report['source']}" + (f": {report['built']}" if report["built"] else ""),
             f"against GPT-2: {report['reference']}" + (f"; loaded by your {report['loader']}" if report["loader"]
                                                        else "; loaded by this check, through the mapping found")]
    if report["skipped"]:
        lines += ["", "not run (of a notebook, only what defines things runs):"]
        lines += [f"  {item['where']}: {item['code']}  ({item['why']})" for item in report["skipped"]]
    if report["keys"]:
        pairs = _keys_side_by_side(report)
        width = max(len(left) for left, _ in pairs) + 2
        lines += ["", "the keys, side by side:", f"  {'yours':<{width}}GPT-2's"]
        lines += [f"  {left:<{width}}{right}" for left, right in pairs]
    for title, rows in sections(report):
        lines += ["", f"{title}:"]
        lines += [f"  {_mark_text(ok):>6}  {what:<44} {detail}".rstrip() for ok, what, detail in rows]
    if report["text"]:
        lines += ["", f"what each writes after {report['prompt']!r}, greedily:",
                  f"  yours:   {report['prompt']}{report['text']['student']}",
                  f"  GPT-2's: {report['prompt']}{report['text']['reference']}"]
    if report["board"]:
        lines += ["", f"the class board says: {report['board']['message']}"]
    return "\n".join(lines + ["", verdict_line(report)])


def check_html(report: dict) -> str:
    """The same report, as HTML for a notebook's output cell."""
    colour = {True: "#15803d", False: "#dc2626", None: "#6b7280"}
    parts = [f"<div style='font-family:sans-serif'><h3 style='color:{colour[report['verified']]}'>"
             f"{mark(report['verified'])} {escape(verdict_line(report))}</h3>",
             f"<p>{escape(report['source'])}{': ' + escape(report['built']) if report['built'] else ''} — against "
             f"GPT-2 {escape(report['reference'])}</p>"]
    if report["skipped"]:
        items = "".join(f"<li>{escape(item['where'])}: <code>{escape(item['code'])}</code> ({escape(item['why'])})</li>"
                        for item in report["skipped"])
        parts.append(f"<details><summary>{len(report['skipped'])} statement(s) not run</summary><ul>{items}</ul></details>")
    if report["keys"]:
        rows = "".join(f"<tr><td><code>{escape(left)}</code></td><td><code>{escape(right)}</code></td></tr>"
                       for left, right in _keys_side_by_side(report))
        parts.append(f"<details><summary>the keys, side by side</summary><table><tr><th>yours</th><th>GPT-2's</th></tr>"
                     f"{rows}</table></details>")
    for title, rows in sections(report):
        cells = "".join(f"<tr><td style='color:{colour[ok]}'><b>{_mark_text(ok)}</b></td><td><code>{escape(what)}</code>"
                        f"</td><td>{escape(detail)}</td></tr>" for ok, what, detail in rows)
        parts.append(f"<h4>{escape(title)}</h4><table>{cells}</table>")
    if report["text"]:
        prompt = f"<b>{escape(report['prompt'])}</b>"
        parts.append(f"<h4>what each writes, greedily</h4><p>yours: {prompt}{escape(report['text']['student'])}</p>"
                     f"<p>GPT-2's: {prompt}{escape(report['text']['reference'])}</p>")
    if report["board"]:
        parts.append(f"<p><b>The class board says:</b> {escape(report['board']['message'])}</p>")
    return "".join(parts) + "</div>"
