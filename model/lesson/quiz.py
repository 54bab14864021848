"""Predict the shape: the lesson's exercise, asked and graded from the mapping table.

For each kind of tensor the student sees the reference's name and shape, enters ours and picks what
the load does (copy, transpose or tied). Questions and answers come from the mapping table of the
loaded models, so they are right for any size; a student's answer is text, parsed strictly (digits
and separators, bounded) and never evaluated.
"""
import re
from dataclasses import dataclass

from model.loading.mapping import MappingRow

OPS = ("copy", "transpose", "tied")
MAX_ANSWER_CHARS = 40  # "[2304, 768]" needs 11; room for spaces, never for a paragraph
MAX_DIMENSIONS = 4
# Digits and separators only: "[2304, 768]", "(2304, 768)", "2304x768", "2304 × 768", "2304, 768", "768".
# [0-9], not \d, which also matches other scripts' digits.
SHAPE = re.compile(r"[0-9]{1,9}(?:\s*[,x×*]\s*[0-9]{1,9}|\s+[0-9]{1,9})*")
BRACKETS = {"[": "]", "(": ")"}
# The tensors asked about: the role each plays, and our parameter playing it (block 0 stands for every block).
ASKED = {
    "c_attn": "transformer.h.0.attn.c_attn.weight",
    "attn.c_proj": "transformer.h.0.attn.c_proj.weight",
    "c_fc": "transformer.h.0.mlp.c_fc.weight",
    "mlp.c_proj": "transformer.h.0.mlp.c_proj.weight",
    "lm_head": "lm_head.weight",
    "layernorm": "transformer.h.0.ln_1.weight",
}


@dataclass(frozen=True)
class Question:
    role: str  # which tensor is asked about: a key of ASKED
    row: MappingRow  # the correct load of this tensor: the answer

    @property
    def square(self) -> bool:
        return len(self.row.shape) == 2 and self.row.shape[0] == self.row.shape[1]


@dataclass(frozen=True)
class Grade:
    shape: tuple  # the student's shape, parsed
    op: str  # the student's operation
    shape_right: bool
    op_right: bool
    reason: str  # why the right answer is right, from the shapes of the loaded model
    hint: str | None  # what the student's answer got wrong, when a common slip explains it

    @property
    def right(self) -> bool:
        return self.shape_right and self.op_right

    @property
    def answer(self) -> str:
        """The answer, normalised: what the class's tally counts ("[2304, 768] transpose")."""
        return answer_text(self.shape, self.op)


def questions(rows: list[MappingRow]) -> list[Question]:
    """One question per kind of tensor, taken from the correct mapping table of the loaded models."""
    by_name = {row.name: row for row in rows}
    return [Question(role, by_name[name]) for role, name in ASKED.items()]


def answer_text(shape: tuple, op: str) -> str:
    return f"{list(shape)} {op}"


def parse_shape(text) -> tuple[int, ...]:
    """A shape typed by a student: "[2304, 768]", "2304x768" or "2304, 768"; anything else is refused."""
    if not isinstance(text, str):
        raise ValueError(f"the shape must be text, got {type(text).__name__}")
    if len(text) > MAX_ANSWER_CHARS:
        raise ValueError(f"the shape is {len(text)} characters long; at most {MAX_ANSWER_CHARS}: type just the "
                         f"numbers, such as [12, 34]")
    inner = text.strip()
    if inner[:1] in BRACKETS and inner[-1:] == BRACKETS[inner[0]]:
        inner = inner[1:-1].strip()
    if not SHAPE.fullmatch(inner):
        raise ValueError("type the shape as whole numbers separated by commas or x, such as [12, 34], 12x34 "
                         "or 12, 34")
    shape = tuple(int(number) for number in re.findall(r"[0-9]+", inner))
    if len(shape) > MAX_DIMENSIONS:
        raise ValueError(f"a shape of {len(shape)} dimensions: these tensors have at most {MAX_DIMENSIONS}")
    return shape


def parse_op(op) -> str:
    if op not in OPS:
        raise ValueError(f"pick what the load does: {', '.join(OPS)}")
    return op


def grade(question: Question, shape_text, op) -> Grade:
    """Grade an answer to `question`; a malformed one raises ValueError saying what to type."""
    shape, op = parse_shape(shape_text), parse_op(op)
    row = question.row
    return Grade(shape=shape, op=op, shape_right=shape == row.shape, op_right=op == row.op,
                 reason=reason(question), hint=_hint(question, shape, op))


def reason(question: Question) -> str:
    """Why our tensor has this shape and loads this way, in the loaded model's own numbers."""
    row = question.row
    ours, theirs = list(row.shape), list(row.reference_shape)
    if row.op == "tied":
        vocab, width = row.shape
        return (f"lm_head is nn.Linear({width}, {vocab}): stored (out, in) = {ours}, exactly the layout of the "
                f"token embedding wte, [vocab, n_embd] = {theirs}. GPT-2 ties them: one tensor under two names, so "
                f"the load neither copies nor transposes, it ties.")
    if row.op == "copy":
        return (f"A LayerNorm holds one number per feature: {ours}. A vector has nothing to transpose: it is "
                f"copied as it is.")
    out, width = row.shape
    sentences = [f"nn.Linear stores its weight (out, in) = {ours}; transformers' Conv1D stores the same matrix "
                 f"(in, out) = {theirs}, so the load transposes it with .t()."]
    if question.role == "c_attn":
        sentences.append(f"{out} = 3 × {width}: query, key and value come out of one projection.")
    if question.role == "c_fc":
        sentences.append(f"{out} = 4 × {width}: GPT-2's MLP is four times as wide as the residual stream."
                         if out == 4 * width else f"{out} is this model's n_inner, the MLP's width.")
    if question.square:
        sentences.append(f"The trap: {ours} is square, so it fits either way round. Copied without .t() it loads "
                         f"without a complaint, and every block computes x·Wᵀ instead of x·W: wrong numbers, no "
                         f"error. Only comparing outputs catches it.")
    return " ".join(sentences)


def _hint(question: Question, shape: tuple, op: str) -> str | None:
    """The slip behind a wrong answer, when it is a common one."""
    row = question.row
    if question.square and op == "copy":
        return "You met the trap: the shape fits either way round, and that is exactly why a copy is wrong unnoticed."
    if shape != row.shape and shape == row.reference_shape and row.op == "transpose":
        return "That is the reference's shape, Conv1D's (in, out); ours is nn.Linear's (out, in)."
    if row.op == "transpose" and op == "copy":
        return (f"A copy needs both shapes equal: the shape check would refuse to copy {list(row.reference_shape)} "
                f"into {list(row.shape)}.")
    if row.op == "tied" and op == "copy":
        return "A copy would make two tensors that drift apart in training; GPT-2 has one."
    return None
