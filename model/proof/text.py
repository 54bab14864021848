"""The verification report as a table for a terminal: `python -m model.verify` prints it.

It draws the report's dict (model/proof/report.py), with the Verify tab's wording (model/proof/wording.py).
"""
from model.proof.wording import (
    AXIS_DECADES,
    audit_sentences,
    axis_fraction,
    caught_at,
    fold_blocks,
    tolerance_marks,
    tolerance_points,
    where_it_diverges,
)

AXIS_WIDTH = 45  # characters


def format_report(report: dict) -> str:
    """OK / NOT OK per check, then the details."""
    lines = [f"prompt {report['prompt']!r} ({len(report['prompt_tokens'])} tokens) on {report['device']}, "
             f"{report['dtype']}", ""]
    lines += [f"{'OK' if check['ok'] else 'NOT OK':>6}  {check['check']:<28} {check['detail']}"
              for check in report["checks"]]
    lines += ["", f"naive load_state_dict: {len(report['missing_keys'])} missing, {len(report['unexpected_keys'])} "
                  f"unexpected, {len(report['shape_mismatches'])} shape mismatches, {len(report['silently_accepted'])} "
                  f"square weights accepted un-transposed (silently wrong)"]
    lines += [f"lesson's atol={report['lesson_atol']:g}: {'holds' if report['lesson_atol_holds'] else 'does not hold'}",
              "", "residual stream, max abs diff per layer:"]
    lines += [f"  {name:<18} {diff:.2e}" for name, diff in zip(report["layer_names"], report["layer_max_abs_diff"])]
    lines += ["", "next token      p(ours)   p(reference)"]
    lines += [f"  {row['text']!r:<14} {row['p_ours']:.5f}   {row['p_reference']:.5f}" for row in report["top_k"]]
    lines += ["", f"greedy: {report['prompt']}{report['greedy_text']}"]
    lines += ["", *tolerance_axis_lines(report)]
    lines += ["", *audit_lines(report)]
    if (b := report["broken"]) is not None:
        lines += ["", f"bug {b['bug']}: {b['summary']}"]
        if b["refused"]:
            lines += [f"  {line}" for line in b["refusal"].splitlines()]
        else:
            lines += [f"  max abs logit diff {b['max_abs_logit_diff']:.2e}; {where_it_diverges(report)}",
                      f"  greedy: {b['greedy_tokens_agree']} of {report['greedy_tokens']} tokens agree with the "
                      f"reference's", "  next token      p(correct) p(broken)  p(reference)"]
            lines += [f"    {row['text']!r:<14}{row['p_correct']:.5f}    {row['p_broken']:.5f}    "
                      f"{row['p_reference']:.5f}" for row in b["top_k"]]
            lines += [f"  correct: {report['prompt']}{b['text_correct']}",
                      f"  broken:  {report['prompt']}{b['text_broken']}"]
        lines += [f"  {b['explanation']}"]
    lines += ["", "VERIFIED" if report["verified"] else "NOT VERIFIED"]
    return "\n".join(lines)


def _axis_column(value: float) -> int:
    return round(axis_fraction(value) * (AXIS_WIDTH - 1))


def tolerance_axis_lines(report: dict) -> list[str]:
    """Each measured difference on one log scale, '|' at each tolerance, and which tolerance catches it."""
    marks = tolerance_marks(report)
    ruler = ["-"] * AXIS_WIDTH
    for _, atol in marks:
        ruler[_axis_column(atol)] = "|"
    low, high = AXIS_DECADES
    columns = [f"{name} {atol:.0e}" for name, atol in marks]
    points = tolerance_points(report)
    width = max(len(point["label"]) for point in points)
    lines = [f"tolerance axis: max |Δ logit| against the float32 reference, log scale 1e{low}..1e{high}, "
             f"'|' at atol {', '.join(f'{atol:.0e}' for _, atol in marks)}; allclose at each (rtol "
             f"{report['tolerance']['rtol']:g}): same or DIFFERS",
             f"  {'':<{width}} {'max |Δ|':>8}  {''.join(ruler)}  {'  '.join(columns)}"]
    for point in points:
        label, diff = point["label"], point["max_abs_logit_diff"]
        if diff is None:
            lines.append(f"  {label:<{width}} {'refused':>8}  (no logits: the mapping refused to load it)")
            continue
        row = list(ruler)
        row[_axis_column(diff)] = "*"
        verdicts = "  ".join(f"{'DIFFERS' if differs else 'same':<{len(column)}}"
                             for column, differs in zip(columns, caught_at(point, marks)))
        lines.append(f"  {label:<{width}} {diff:>8.1e}  {''.join(row)}  {verdicts}".rstrip())
    return lines


def audit_lines(report: dict) -> list[str]:
    """OK / NOT OK per tensor (its values are the reference's), folded over the blocks, for both loads."""
    correct, *broken = audit_sentences(report)
    lines = ["every tensor: OK when it holds exactly the reference's values (transposed where the table says)",
             f"  {correct['load'].lower()}: {correct['text']}", *audit_table(report["mapping"])]
    for sentence in broken:
        lines.append(f"  {sentence['load'].lower()}: {sentence['text']}")
        lines += audit_table([row for row in report["broken"]["mapping"] if not row["values_equal"]])
    return lines


def audit_table(rows: list[dict]) -> list[str]:
    lines = []
    for name, group in fold_blocks(rows, key=lambda row: (row["op"], row["values_equal"], row["shares_memory"])):
        row = group[0]
        memory = "the reference's memory" if row["shares_memory"] else "its own memory"
        count = f" ×{len(group)}" if len(group) > 1 else ""
        lines.append(f"  {'OK' if row['values_equal'] else 'NOT OK':>8}  {name:<42} {row['op']:<12} {memory}{count}")
    return lines
