"""demo/lesson_views.py: what the lesson's sub-tabs show, from what model/ computes, without a server."""
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from demo import lesson_views
from model.lesson import quiz
from model.lesson.anatomy import parameter_anatomy
from model.gpt import GPT, GPTConfig
from model.lesson.knowledge import paragraph_losses, random_init
from model.loading.mapping import named_table
from tests.checkpoints import (
    GPT2_NON_EMBEDDING_PARAMETERS,
    GPT2_PARAMETERS,
    GPT2_SMALL,
    GPT2_UNTIED_PARAMETERS,
)


def gpt2_on_meta():
    with torch.device("meta"):
        reference = GPT2LMHeadModel(GPT2Config(**GPT2_SMALL))
        return reference, GPT(GPTConfig.from_hf(reference.config))


def gpt2_questions() -> dict:
    reference, ours = gpt2_on_meta()
    return {q.role: q for q in quiz.questions(named_table(ours, reference))}


def test_the_tally_headline_reads_as_the_projector_says_it():
    question = gpt2_questions()["c_attn"]
    html = lesson_views.tally_html(question, {"[2304, 768] transpose": 19, "[768, 2304] transpose": 8})
    assert "<b>19 of 27</b> said <b>[2304, 768] transpose</b> (right)" in html
    assert html.count("class='tally-row") == 2 and "tally-row right" in html


def test_the_tally_before_any_answer_says_so():
    assert "No answers yet" in lesson_views.tally_html(gpt2_questions()["layernorm"], {})


def test_question_grade_and_refusal_escape_what_they_show():
    question = gpt2_questions()["attn.c_proj"]
    asked = lesson_views.question_html(question)
    assert "<code>transformer.h.0.attn.c_proj.weight</code> is <b>[768, 768]</b>" in asked
    html = lesson_views.grade_html(quiz.grade(question, "768x768", "copy"))
    assert "card fail" in html and "✓</b> shape [768, 768]" in html and "You met the trap" in html
    assert "x·Wᵀ instead of x·W" in html
    refusal = lesson_views.refusal_html("<b>x</b>")
    assert "&lt;b&gt;x&lt;/b&gt;" in refusal and "<b>x</b>" not in refusal


def test_the_anatomy_reconciles_the_totals_people_quote():
    html = lesson_views.anatomy_html(parameter_anatomy(gpt2_on_meta()[1]).to_dict(), "gpt2")
    assert f"Where gpt2's {GPT2_PARAMETERS:,} parameters live" in html
    assert f"<b>{GPT2_PARAMETERS:,}</b> (124M)" in html
    assert f"<b>{GPT2_UNTIED_PARAMETERS:,}</b> (163M) = {GPT2_PARAMETERS:,} + 38,597,376" in html
    without = f"<b>{GPT2_NON_EMBEDDING_PARAMETERS:,}</b> (85M) = {GPT2_PARAMETERS:,} − 38,597,376 (wte) − 786,432"
    assert without in html
    assert "<td>45.5&nbsp;%</td>" in html  # the MLP's share


def losses(tiny_reference, tiny_ours) -> dict:
    return paragraph_losses(tiny_reference, tiny_ours, random_init(tiny_ours.config)).to_dict()


def test_losses_say_plainly_when_every_model_is_random(tiny_reference, tiny_ours):
    html = lesson_views.losses_html(losses(tiny_reference, tiny_ours), random_weights_loaded=True)
    assert "Both are random here" in html and "the weights are the knowledge" not in html
    assert "✓</b> Ours and the reference differ by" in html


def test_losses_of_weights_that_know_the_text_name_the_vessel(tiny_reference, tiny_ours):
    measured = losses(tiny_reference, tiny_ours)
    better = {**measured, "ours": {"cross_entropy": 3.0, "perplexity": 20.1}}
    assert "the weights are the knowledge" in lesson_views.losses_html(better, random_weights_loaded=False)
    worse = {**measured, "ours": {"cross_entropy": 14.0, "perplexity": 1.2e6}}
    assert "no better than random ones" in lesson_views.losses_html(worse, random_weights_loaded=False)
