"""The report: what was checked, the number found, and the verdict, for one verification.

Each link of the chain of evidence is one line of `checks`: the parameters line up, the logits and
every layer match within the tolerance, the greedy tokens agree, and a deliberate bug is caught.
The Verify tab, `/verify_report` and `python -m model.verify --json` all show `to_dict()`;
`format_report` is the same report as a table for a terminal.
"""
from dataclasses import asdict, dataclass, field


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
    changed_rows: list[dict] = field(default_factory=list)  # mapping rows the bug changes
    max_abs_logit_diff: float | None = None
    allclose: bool | None = None
    layer_max_abs_diff: list[float] = field(default_factory=list)
    first_divergent_layer: int | None = None  # index into layer_names
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
                      else f"max abs logit diff {b.max_abs_logit_diff:.2e}")
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
    if (b := report.broken) is not None:
        lines += ["", f"bug {b.bug}: {b.summary}"]
        if b.refused:
            lines += [f"  {line}" for line in b.refusal.splitlines()]
        else:
            where = report.layer_names[b.first_divergent_layer] if b.first_divergent_layer is not None else "nowhere"
            lines += [f"  max abs logit diff {b.max_abs_logit_diff:.2e}; first diverges at {where}",
                      f"  correct: {report.prompt}{b.text_correct}", f"  broken:  {report.prompt}{b.text_broken}"]
        lines += [f"  {b.explanation}"]
    lines += ["", "VERIFIED" if report.verified else "NOT VERIFIED"]
    return "\n".join(lines)
