"""The teacher's controls on the page: hidden until this page's session holds the teacher's key.

"For the teacher", at the foot of the page, asks for the key once (or reads it from the address the
teacher's terminal printed, `/?teacher=...`), keeps it in the session, and shows every teacher-only
control. Each such control's event checks the key again on the server (`TeacherControls.check`):
hidden is not forbidden, and a script can call any event.
"""
import gradio as gr

from demo.api import user_error
from demo.teacher import REFUSED, TeacherKey


class TeacherControls:
    """Build inside the app's Blocks: `group()` around each teacher-only control, then `panel()` once, last."""

    def __init__(self, key: TeacherKey):
        self.key = key
        self.session = gr.State(None)  # the key, once this page's session has given it: server-side, never sent back
        self._groups: list[gr.Group] = []

    def group(self) -> gr.Group:
        """A group of teacher-only controls, hidden until the key is given: use it as `with controls.group():`."""
        group = gr.Group(visible=False)
        self._groups.append(group)
        return group

    def check(self, given):
        """Raise the refusal, shown to whoever asked, unless `given` (the session's key) is the teacher's."""
        if not self.key.matches(given):
            raise user_error(REFUSED)

    def panel(self, app: gr.Blocks):
        """The accordion that takes the key, and the page load that reads it from the page's address."""
        with gr.Accordion("For the teacher", open=False, elem_id="teacher"):
            with gr.Row():
                typed = gr.Textbox(type="password", label="the teacher's key", placeholder="as the terminal printed it",
                                   elem_id="teacher-key", scale=3, max_length=200)
                unlock = gr.Button("Open the teacher's controls", scale=1, min_width=160)
            said = gr.Markdown(elem_id="teacher-said")
        outputs = [self.session, typed, said, *self._groups]

        def opened(given):
            """The session, the box emptied, what happened, and every group shown or not."""
            if not self.key.matches(given):
                return None, "", "That is not the teacher's key: nothing changed.", *[gr.Group(visible=False)] * len(
                    self._groups)
            return given, "", "The teacher's controls are open in this page.", *[gr.Group(visible=True)] * len(
                self._groups)

        def from_address(request: gr.Request):
            given = request.query_params.get("teacher") if request is not None else None
            if given is None:
                return gr.skip(), gr.skip(), gr.skip(), *[gr.skip()] * len(self._groups)
            return opened(given)

        quick = dict(api_visibility="private", queue=False, show_progress="hidden")
        unlock.click(opened, typed, outputs, api_name="open_teacher_controls", **quick)
        typed.submit(opened, typed, outputs, **quick)
        app.load(from_address, None, outputs, **quick)
