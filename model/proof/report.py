"""The report of `verify()`: what was checked, the numbers found, and the verdict. Facts only.

Each link of the chain of evidence is one line of `checks`: the parameters line up, the logits and
every layer match within the tolerance, the greedy tokens agree, and a deliberate mistake is caught.
Beside them, what each check can see: every tensor's values (the mapping rows' audit), every
component, and where float noise, a lower precision and the mistake fall against the tolerances
(`precision`, `broken`). `to_dict()` is the report in the one shape everything draws from: the
Verify tab, `/verify_report`, `python -m model.verify --json`, and its table (model/proof/text.py).
"""
from dataclasses import asdict, dataclass, field


@dataclass
class BrokenReport:
    """What a deliberate mistake does to the load, next to the correct one."""
    bug: str  # the mistake's id in the catalogue (model/loading/mistakes.py)
    summary: str
    explanation: str
    silent: bool  # it loads and runs; False: the mapping refuses it
    refused: bool  # the mapping refused to load it
    refusal: str | None = None
    refused_keys: list[str] = field(default_factory=list)
    changed_rows: list[dict] = field(default_factory=list)  # mapping rows the mistake changes
    # The broken load's own mapping table, every row audited like the correct load's; empty if refused.
    mapping: list[dict] = field(default_factory=list)
    components: list[dict] = field(default_factory=list)  # each component fed the reference's input
    max_abs_logit_diff: float | None = None
    allclose: bool | None = None
    atol_needed: float | None = None  # the smallest atol allclose would pass it at (tolerance.atol_needed)
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
    components: list[dict]  # each component of ours fed the reference's input (evidence.ComponentCheck)
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
        """Every claim holds: the correct load matches, and a mistake (if any) was caught."""
        return all(passed for _, passed, _ in self.checks)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["verified"] = self.verified
        data["checks"] = [{"check": name, "ok": ok, "detail": detail} for name, ok, detail in self.checks]
        if self.broken is not None:
            data["broken"]["caught"] = self.broken.caught
        return data
