"""The report: what was checked, the number found, and the verdict, for one verification.

Each link of the chain of evidence is one line of `checks`: the parameters line up, the logits and
every layer match within the tolerance, the greedy tokens agree, and a deliberate bug is caught.
Beside them, what each check can see: every tensor's values (the mapping rows' audit), and where
float noise, a lower precision and the bug fall against the tolerances (`precision`, `broken`).
The Verify tab, `/verify_report` and `python -m model.verify --json` all show `to_dict()`;
`format_report` is the same report as a table for a terminal.
"""
import math
from dataclasses import asdict, dataclass, field

from model.mapping import fold_blocks


@dataclass
class BrokenReport:
    """What a deliberate bug does to the load, next to the correct one."""
    bug: str
    summary: str
    explanation: str
    silent: bool
    refused: bool  # the mapping refused to load it
    refusal: str | None = None
    refused_keys: list[str] = field(default_factory=list)
    changed_rows: list[dict] = field(default_factory=list)  # mapping rows the bug changes (audited if loaded)
    # The broken load's own mapping table, every row audited like the correct load's; empty if refused.
    mapping: list[dict] = field(default_factory=list)
    max_abs_logit_diff: float | None = None
    allclose: bool | None = None
    atol_needed: float | None = None  # the smallest atol allclose would pass it at (see verify.atol_needed)
    layer_max_abs_diff: list[float] = field(default_factory=list)
    first_divergent_layer: int | None = None  # index into layer_names
    greedy_tokens_agree: int | None = None  # of the reference's greedy tokens, up to the first that differs
    top_k: list[dict] = field(default_factory=list)  # next-token p_correct, p_broken, p_reference
    text_correct: str | None = None
    text_broken: str | None = None

    @property
    def caught(self) -> bool:
        """Verification noticed: the load was refused, or its logits do not match."""
        return self.refused or self.allclose is False


@dataclass
class VerificationReport:
    prompt: str
    prompt_tokens: list[int]
    device: str
    dtype: str
    # the parameters
    param_count_ours: int
    param_count_reference: int
    key_count_ours: int
    key_count_reference: int
    tied: bool  # lm_head.weight is transformer.wte.weight: one tensor
    # what a naive load_state_dict(reference.state_dict()) would say
    missing_keys: list[str]
    unexpected_keys: list[str]
    shape_mismatches: list[dict]
    silently_accepted: list[str]  # Conv1D weights that fit un-transposed: square, so wrong and unnoticed
    mapping: list[dict]
    # the function
    max_abs_logit_diff: float
    mean_abs_logit_diff: float
    tolerance: dict
    allclose: bool
    lesson_atol: float
    lesson_atol_holds: bool
    loose_atol: float  # a tolerance loose enough to call a near miss "floating-point noise"
    # Our model against the float32 reference, per dtype: float32 (this report's model: the noise
    # floor), then each lower precision (verify.PRECISIONS): {dtype, max_abs_logit_diff, allclose, atol_needed,
    # greedy_tokens_agree}. Informative: a lower precision is not expected to pass the float32 tolerance.
    precision: list[dict]
    layer_names: list[str]
    layer_max_abs_diff: list[float]
    layers_allclose: bool  # every layer's residual stream within the tolerance
    top_k: list[dict]
    greedy_tokens: int
    greedy_tokens_agree: int
    greedy_text: str
    broken: BrokenReport | None = None

    @property
    def checks(self) -> list[tuple[str, bool, str]]:
        """(check, passed, detail), one line each, in the order of the chain of evidence."""
        lines = [
            ("parameter count", self.param_count_ours == self.param_count_reference,
             f"ours {self.param_count_ours:,}, reference {self.param_count_reference:,}"),
            ("lm_head tied to wte", self.tied, "one tensor, two names" if self.tied else "two tensors"),
            ("logits allclose", self.allclose,
             f"max abs diff {self.max_abs_logit_diff:.2e} (atol {self.tolerance['atol']:g}, rtol {self.tolerance['rtol']:g})"),
            ("every layer allclose", self.layers_allclose,
             f"largest residual-stream diff {max(self.layer_max_abs_diff):.2e}"),
            ("greedy tokens agree", self.greedy_tokens_agree == self.greedy_tokens,
             f"{self.greedy_tokens_agree} of {self.greedy_tokens}"),
        ]
        if self.broken is not None:
            b = self.broken
            detail = (f"refused: {len(b.refused_keys)} tensor(s) do not fit" if b.refused
                      else f"max abs logit diff {b.max_abs_logit_diff:.2e}; "
                           f"{b.greedy_tokens_agree} of {self.greedy_tokens} greedy tokens agree")
            lines.append((f"bug {b.bug} caught", b.caught, detail))
        return lines

    @property
    def verified(self) -> bool:
        """Every claim holds: the correct load matches, and a bug (if any) was caught."""
        return all(passed for _, passed, _ in self.checks)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["verified"] = self.verified
        data["checks"] = [{"check": name, "ok": ok, "detail": detail} for name, ok, detail in self.checks]
        if self.broken is not None:
            data["broken"]["caught"] = self.broken.caught
        return data


def format_report(report: VerificationReport) -> str:
    """The report as a table a terminal can show: OK / NOT OK per check, then the details."""
    lines = [f"prompt {report.prompt!r} ({len(report.prompt_tokens)} tokens) on {report.device}, {report.dtype}", ""]
    lines += [f"{'OK' if ok else 'NOT OK':>6}  {name:<28} {detail}" for name, ok, detail in report.checks]
    lines += ["", f"naive load_state_dict: {len(report.missing_keys)} missing, {len(report.unexpected_keys)} unexpected, "
                  f"{len(report.shape_mismatches)} shape mismatches, {len(report.silently_accepted)} square weights "
                  f"accepted un-transposed (silently wrong)"]
    lines += [f"lesson's atol={report.lesson_atol:g}: {'holds' if report.lesson_atol_holds else 'does not hold'}",
              "", "residual stream, max abs diff per layer:"]
    lines += [f"  {name:<18} {diff:.2e}" for name, diff in zip(report.layer_names, report.layer_max_abs_diff)]
    lines += ["", "next token      p(ours)   p(reference)"]
    lines += [f"  {row['text']!r:<14} {row['p_ours']:.5f}   {row['p_reference']:.5f}" for row in report.top_k]
    lines += ["", f"greedy: {report.prompt}{report.greedy_text}"]
    data = report.to_dict()
    lines += ["", *_tolerance_axis_lines(data)]
    lines += ["", *_audit_lines(data)]
    if (b := report.broken) is not None:
        lines += ["", f"bug {b.bug}: {b.summary}"]
        if b.refused:
            lines += [f"  {line}" for line in b.refusal.splitlines()]
        else:
            where = report.layer_names[b.first_divergent_layer] if b.first_divergent_layer is not None else "nowhere"
            lines += [f"  max abs logit diff {b.max_abs_logit_diff:.2e}; first diverges at {where}",
                      f"  greedy: {b.greedy_tokens_agree} of {report.greedy_tokens} tokens agree with the reference's",
                      "  next token      p(correct) p(broken)  p(reference)"]
            lines += [f"    {row['text']!r:<14}{row['p_correct']:.5f}    {row['p_broken']:.5f}    "
                      f"{row['p_reference']:.5f}" for row in b.top_k]
            lines += [f"  correct: {report.prompt}{b.text_correct}", f"  broken:  {report.prompt}{b.text_broken}"]
        lines += [f"  {b.explanation}"]
    lines += ["", "VERIFIED" if report.verified else "NOT VERIFIED"]
    return "\n".join(lines)


# --- the tolerance axis, as text -------------------------------------------------------------------

AXIS_DECADES = (-8, 3)  # log10 of the axis' ends: below float32's noise, above a gross bug's diff
AXIS_WIDTH = 45  # characters


def tolerance_marks(report: dict) -> list[tuple[str, float]]:
    """The tolerances a report is measured against, tightest first: (whose, atol), all at the same rtol."""
    return [("lesson", report["lesson_atol"]), ("project", report["tolerance"]["atol"]),
            ("loose", report["loose_atol"])]


def tolerance_points(report: dict) -> list[dict]:
    """What the tolerance axis places: our model in float32 (the noise floor), in each lower precision,
    and the broken load if any, each as {kind, label, max_abs_logit_diff, atol_needed, greedy_tokens_agree}
    (kind: the dtype, or "bug"; a refused bug's numbers are None)."""
    keys = ("max_abs_logit_diff", "atol_needed", "greedy_tokens_agree")
    points = [{"kind": row["dtype"], "label": row["dtype"] + (": the noise floor" if row["dtype"] == "float32" else ""),
               **{key: row[key] for key in keys}} for row in report["precision"]]
    if (b := report["broken"]) is not None:
        points.append({"kind": "bug", "label": f"bug {b['bug']}", **{key: b[key] for key in keys}})
    return points


def _axis_column(value: float) -> int:
    low, high = AXIS_DECADES
    where = (math.log10(max(value, 10.0 ** low)) - low) / (high - low)
    return round(min(where, 1.0) * (AXIS_WIDTH - 1))


def _tolerance_axis_lines(report: dict) -> list[str]:
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
        verdicts = "  ".join(f"{'same' if point['atol_needed'] <= atol else 'DIFFERS':<{len(column)}}"
                             for column, (_, atol) in zip(columns, marks))
        lines.append(f"  {label:<{width}} {diff:>8.1e}  {''.join(row)}  {verdicts}".rstrip())
    return lines


# --- every tensor, llm.c style -------------------------------------------------------------------

def _audit_lines(report: dict) -> list[str]:
    """OK / NOT OK per tensor (its values are the reference's), folded over the blocks, for both loads."""
    lines = ["every tensor: OK when it holds exactly the reference's values (transposed where the table says)",
             "  correct load:", *_audit_table(report["mapping"])]
    if (b := report["broken"]) is not None:
        wrong = [row for row in b["mapping"] if not row["values_equal"]]
        if b["refused"]:
            lines.append(f"  broken load ({b['bug']}): refused by the mapping; no tensor was loaded, none to check")
        elif not wrong:
            lines.append(f"  broken load ({b['bug']}): every tensor OK. The weights are right; the architecture "
                         "is not. No tensor can show that, only the logits: that is why they are the test.")
        else:
            lines.append(f"  broken load ({b['bug']}): {len(wrong)} tensor(s) NOT OK, the other "
                         f"{len(b['mapping']) - len(wrong)} OK:")
            lines += _audit_table(wrong)
    return lines


def _audit_table(rows: list[dict]) -> list[str]:
    lines = []
    for name, group in fold_blocks(rows, key=lambda row: (row["op"], row["values_equal"], row["shares_memory"])):
        row = group[0]
        memory = "the reference's memory" if row["shares_memory"] else "its own memory"
        count = f" ×{len(group)}" if len(group) > 1 else ""
        lines.append(f"  {'OK' if row['values_equal'] else 'NOT OK':>8}  {name:<42} {row['op']:<9} {memory}{count}")
    return lines
