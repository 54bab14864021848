"""The report of a student's check (model/check.py): what was checked, the numbers found, the mistakes
named. Facts only; `str(report)` is its terminal table and, in Jupyter, `_repr_html_` its HTML
(model/proof/check_drawing.py), both drawn from `to_dict()`, which `--json` prints.
"""
from dataclasses import asdict, dataclass, field

from model.proof.check_drawing import check_html, format_check


@dataclass
class CheckReport:
    source: str  # the file, or "your model" for check() in a notebook
    built: str | None  # how the model was built, in words
    reference: str  # the reference GPT-2's name or folder
    loader: str | None  # the student's loader, if the check ran it
    prompt: str
    tolerance: dict
    skipped: list[dict] = field(default_factory=list)  # notebook statements not run, with why
    keys: dict = field(default_factory=dict)  # {"student": [[name, shape]], "reference": [[name, shape]]}
    mapping: list[dict] = field(default_factory=list)  # each parameter: the GPT-2 tensor it takes, how, and its audit
    problems: list[str] = field(default_factory=list)  # what cannot hold GPT-2's tensors
    missing: list[str] = field(default_factory=list)  # GPT-2's tensors of a module the model does not have
    components: list[dict] = field(default_factory=list)  # each fed the reference's own input
    layer_names: list[str] = field(default_factory=list)
    layer_max_abs_diff: list[float] = field(default_factory=list)
    layers_close: list[bool] = field(default_factory=list)
    max_abs_logit_diff: float | None = None
    allclose: bool | None = None
    last_position_only: bool = False  # the forward returns the last position's logits alone
    greedy_tokens: int = 0
    greedy_tokens_agree: int | None = None
    text: dict = field(default_factory=dict)  # {"student": ..., "reference": ...}: what each writes after the prompt
    diagnoses: list[dict] = field(default_factory=list)  # the mistakes named, the root cause first
    board: dict | None = None  # the class board's verdict, when the logits were submitted to it

    @property
    def verified(self) -> bool:
        """Their GPT computes GPT-2's function: every tensor, component and logit within the tolerance, the same
        greedy tokens; a note (a copy of wte) is no failure."""
        return (not self.problems and self.allclose is True and self.greedy_tokens_agree == self.greedy_tokens
                and all(row["values_equal"] for row in self.mapping)
                and all(check["ok"] is not False for check in self.components)
                and all(diagnosis["note"] for diagnosis in self.diagnoses))

    def to_dict(self) -> dict:
        return {**asdict(self), "verified": self.verified}

    def __str__(self) -> str:
        return format_check(self.to_dict())

    def _repr_html_(self) -> str:
        return check_html(self.to_dict())
