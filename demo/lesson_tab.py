"""The lesson's own steps, as sub-tabs of the Verify tab: predict the shape, see the mapping, count the
parameters, watch the weights become knowledge.

Everything here is computed from the loaded models (their mapping table, their config, their
parameters), never from GPT-2's numbers written down, so it is right for any checkpoint.
"""
import functools

import gradio as gr

from demo import lesson_views, live
from demo.api import DemoApi, user_error
from demo.board_tab import class_board
from demo.diagram import diagram_html
from demo.gpu import on_gpu
from demo.tally import NEW_PAGE, AnswerTally
from demo.teacher import address_of
from demo.teacher_panel import TeacherControls
from demo.views import bug_description
from model.lesson import quiz
from model.lesson.anatomy import parameter_anatomy
from model.lesson.knowledge import PARAGRAPH, paragraph_losses
from model.lesson.plan import load_plan
from model.loading.mapping import named_table
from model.loading.mistakes import DEMONSTRATIONS, MISTAKES



def lesson_tabs(api: DemoApi, teacher: TeacherControls, app: gr.Blocks):
    """The lesson's sub-tabs, each built from the loaded models, and the class board."""
    with gr.Tab("Predict the shape"):
        predict_the_shape(api, teacher)
    with gr.Tab("The mapping"):
        the_mapping(api)
    with gr.Tab("Parameters"):
        anatomy = parameter_anatomy(api.state.ours).to_dict()
        gr.HTML(lesson_views.anatomy_html(anatomy, api.state.model_name), elem_classes="lesson", elem_id="anatomy")
    with gr.Tab("Weights = knowledge"):
        weights_are_the_knowledge(api)
    with gr.Tab("Class board"):
        class_board(api, teacher, app)


def predict_the_shape(api: DemoApi, teacher: TeacherControls):
    """The quiz: a tensor of the reference, the student's shape and operation, graded; the class's tally."""
    asked = quiz.questions(named_table(api.state.ours, api.state.reference))
    questions = {lesson_views.QUESTION_LABELS[question.role]: question for question in asked}  # by the page's label
    tally = AnswerTally({label: quiz.answer_text(q.row.shape, q.row.op) for label, q in questions.items()})
    first = next(iter(questions))

    def question_of(name) -> quiz.Question:
        if name not in questions:
            raise user_error(f"pick one of the tensors: {', '.join(questions)}")
        return questions[name]

    def count(name):
        return lesson_views.tally_html(question_of(name), tally.counts(name))

    gr.Markdown("Predict before you look: for each kind of tensor, the reference's name and shape are given. "
                "Type the shape our GPT stores it in, and pick what the load does. The class's answers are "
                "counted, with no names: each open page's first answer to each tensor.")
    kind = gr.Radio(list(questions), value=first, label="the tensor", elem_id="quiz-tensor")
    question_shown = gr.HTML(lesson_views.question_html(questions[first]), elem_classes="lesson")
    with gr.Row():
        shape = gr.Textbox(label="our shape", placeholder="[rows, columns]", max_length=quiz.MAX_ANSWER_CHARS,
                           elem_id="quiz-shape", scale=2, min_width=160)
        op = gr.Radio(list(quiz.OPS), label="what the load does", elem_id="quiz-op", scale=2, min_width=240)
        check = gr.Button("Check my answer", variant="primary", scale=1, min_width=140)
    feedback = gr.HTML(elem_classes="lesson", elem_id="quiz-feedback")
    gr.Markdown("### The class's answers")
    counted = gr.HTML(lesson_views.tally_html(questions[first], {}), elem_classes="lesson", elem_id="quiz-tally")
    live.refreshed(counted, count, kind, "count")
    with teacher.group():
        reset = gr.Button("Start the count again (for the teacher)", variant="stop", size="sm", elem_id="quiz-reset")
    answered = gr.State(NEW_PAGE)  # which tensors this page has been counted on

    def show(name):
        question = question_of(name)
        return lesson_views.question_html(question), "", None, "", lesson_views.tally_html(question, tally.counts(name))

    def grade(name, text, operation, page, request: gr.Request):
        question = question_of(name)
        try:
            result = quiz.grade(question, text, operation)
        except ValueError as error:
            return lesson_views.refusal_html(str(error)), gr.skip(), page
        page = tally.add_first(page, name, result.answer, address_of(request))
        return lesson_views.grade_html(result), lesson_views.tally_html(question, tally.counts(name)), page

    def start_again(name, key):
        teacher.check(key)
        tally.reset()
        return count(name)

    quick = dict(api_visibility="private", queue=False)  # a lookup or a count: no slot to wait for
    kind.change(show, kind, [question_shown, shape, op, feedback, counted], **quick)
    check.click(grade, [kind, shape, op, answered], [feedback, counted, answered], api_name="answer_quiz", **quick)
    shape.submit(grade, [kind, shape, op, answered], [feedback, counted, answered], **quick)
    reset.click(start_again, [kind, teacher.session], counted, api_name="reset_tally", **quick)


def the_mapping(api: DemoApi):
    """Both module trees side by side, an arrow per tensor; with a bug, what it changes in red."""
    reference, ours = api.state.reference, api.state.ours
    reference_types = {name: type(module).__name__ for name, module in reference.named_modules()}
    our_types = {name: type(module).__name__ for name, module in ours.named_modules()}

    def draw(bug):
        if bug not in ("none", *DEMONSTRATIONS):
            raise user_error(f"bug must be none or one of {', '.join(DEMONSTRATIONS)}, got {bug!r}")
        return diagram_html(load_plan(reference, MISTAKES.get(bug)), reference_types, our_types)

    bug = gr.Dropdown(["none", *DEMONSTRATIONS], value="none", label="load the weights with a bug",
                      elem_id="mapping-bug",
                      info=bug_description("none"))
    diagram = gr.HTML(draw("none"), elem_classes="lesson", elem_id="mapping-diagram")
    bug.change(lambda name: (draw(name), gr.Dropdown(info=bug_description(name))), bug, [diagram, bug],
               api_visibility="private", queue=False)


def weights_are_the_knowledge(api: DemoApi):
    """The loss on a fixed paragraph: ours, the reference, and the same class on random weights."""
    state = api.state
    gr.Markdown("The same GPT class, once with the loaded weights and once with GPT-2's random initialisation, "
                "reads the paragraph below and predicts each next token. **Predict first:** what mean "
                "cross-entropy does a model that knows nothing get, choosing among "
                f"{state.vocab_size:,} tokens? (The Generate tab can also write with the random weights.)")
    with gr.Accordion("The paragraph", open=False):
        gr.Markdown(PARAGRAPH)
    measure = gr.Button("Measure the three losses", variant="primary")
    shown = gr.HTML(elem_classes="lesson", elem_id="losses")

    @functools.cache  # the same paragraph and weights every time: measured once, for the whole class
    def measured() -> str:
        losses = paragraph_losses(state.reference, state.ours, state.random_init)
        return lesson_views.losses_html(losses.to_dict(), random_weights_loaded=state.fallback_reason is not None)

    measure.click(on_gpu(measured), None, shown, api_visibility="private", concurrency_id="verify",
                  concurrency_limit=1)
