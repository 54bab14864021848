"""model/lesson/quiz.py: the shape quiz, asked and graded from the mapping table of the loaded models."""
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from model.lesson import quiz
from model.gpt import GPT, GPTConfig
from model.loading.mapping import named_table
from tests.checkpoints import GPT2_SMALL, ODD

SHAPES = {"gpt2": GPT2_SMALL, "odd": ODD}


@pytest.fixture(scope="module", params=SHAPES.values(), ids=SHAPES.keys())
def shaped(request):
    """(the questions, n_embd, the MLP's width) for a model of this shape, from the real mapping table."""
    with torch.device("meta"):
        reference = GPT2LMHeadModel(GPT2Config(**request.param))
        ours = GPT(GPTConfig.from_hf(reference.config))
    config = ours.config
    return {q.role: q for q in quiz.questions(named_table(ours, reference))}, config.n_embd, config.n_inner


@pytest.fixture(scope="module")
def gpt2_questions():
    with torch.device("meta"):
        reference = GPT2LMHeadModel(GPT2Config(**GPT2_SMALL))
        ours = GPT(GPTConfig.from_hf(reference.config))
    return {q.role: q for q in quiz.questions(named_table(ours, reference))}


def test_every_question_comes_from_the_loaded_models_shapes(shaped):
    questions, width, inner = shaped
    vocab = 50257
    asked = {role: (q.row.reference_shape, q.row.shape, q.row.op) for role, q in questions.items()}
    assert asked == {
        "c_attn": ((width, 3 * width), (3 * width, width), "transpose"),
        "attn.c_proj": ((width, width), (width, width), "transpose"),
        "c_fc": ((width, inner), (inner, width), "transpose"),
        "mlp.c_proj": ((inner, width), (width, inner), "transpose"),
        "lm_head": ((vocab, width), (vocab, width), "tied"),
        "layernorm": ((width,), (width,), "copy"),
    }


def test_the_right_answer_is_right_and_its_reason_uses_the_models_numbers(shaped):
    questions, width, inner = shaped
    for question in questions.values():
        grade = quiz.grade(question, str(list(question.row.shape)), question.row.op)
        assert grade.right and grade.hint is None, (question.role, grade)
        assert str(list(question.row.shape)) in grade.reason
    assert f"{3 * width} = 3 × {width}: query, key and value" in quiz.reason(questions["c_attn"])
    assert {role for role, q in questions.items() if "The trap" in quiz.reason(q)} == {"attn.c_proj"}
    mlp = quiz.reason(questions["c_fc"])
    assert (f"{inner} = 4 × {width}" in mlp) if inner == 4 * width else (f"{inner} is this model's n_inner" in mlp)


@pytest.mark.parametrize("typed", ["[2304, 768]", "2304x768", "2304, 768", "(2304,768)", "2304 × 768", " 2304 768 ",
                                   "2304*768", "[ 2304 ,768 ]"])
def test_a_shape_may_be_typed_in_any_of_the_usual_ways(gpt2_questions, typed):
    grade = quiz.grade(gpt2_questions["c_attn"], typed, "transpose")
    assert grade.right and grade.answer == "[2304, 768] transpose"


def test_the_square_c_proj_trap_is_explained_when_it_is_met(gpt2_questions):
    grade = quiz.grade(gpt2_questions["attn.c_proj"], "[768, 768]", "copy")
    assert grade.shape_right and not grade.op_right and not grade.right
    assert "You met the trap" in grade.hint
    assert "The trap: [768, 768] is square, so it fits either way round" in grade.reason
    assert "Copied without .t() it loads without a complaint" in grade.reason


@pytest.mark.parametrize("role, typed, op, hint", [
    ("c_attn", "[768, 2304]", "transpose", "That is the reference's shape, Conv1D's (in, out)"),
    ("c_fc", "[3072, 768]", "copy", "the shape check would refuse to copy [768, 3072] into [3072, 768]"),
    ("lm_head", "[50257, 768]", "copy", "GPT-2 has one"),
])
def test_a_common_slip_is_named(gpt2_questions, role, typed, op, hint):
    grade = quiz.grade(gpt2_questions[role], typed, op)
    assert not grade.right and hint in grade.hint


@pytest.mark.parametrize("typed", [
    "", "   ", "[]", "2304;768", "2304.0, 768", "-2304, 768", "1e3", "２３０４, 768", "[2304, 768", "[2304, 768)",
    "2304,,768", "2304, 768,", "x" * 41, "1234567890, 1", "1, 2, 3, 4, 5", "__import__('os').system('ls')",
    "2304, 768 or [768, 2304]", "<b>2304</b>", None, 2304, ["2304", "768"],
])
def test_anything_but_a_shape_is_refused_saying_what_to_type(gpt2_questions, typed):
    with pytest.raises(ValueError, match="shape"):
        quiz.grade(gpt2_questions["c_attn"], typed, "transpose")


@pytest.mark.parametrize("op", ["", "Transpose", "transpose; copy", "t()", None, 1])
def test_an_operation_outside_the_three_is_refused(gpt2_questions, op):
    with pytest.raises(ValueError, match="copy, transpose, tied"):
        quiz.grade(gpt2_questions["c_attn"], "[2304, 768]", op)
