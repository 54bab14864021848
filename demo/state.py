"""The one model every user of the app shares: loaded once, verified once, then only read."""
from dataclasses import dataclass

from transformers import GPT2LMHeadModel

from demo.gpu import on_gpu
from model.fast import load_student
from model.gpt import GPT
from model.reference import HUB_SHAPES, ModelLoadError, load_reference, random_reference
from model.verify import DEFAULT_PROMPT, precision_dtypes, verify


@dataclass(frozen=True)
class DemoState:
    model_name: str
    reference: GPT2LMHeadModel
    verifier: GPT  # float32, sharing the reference's memory: the model verification checks
    student: GPT  # the model that writes, in `dtype`, laid out for speed (model.fast.load_student)
    dtype: str
    # The correct model in each lower precision the report measures (model.verify.PRECISIONS): the writing model
    # where it is one, else a copy kept for every report, instead of one made for each.
    lower_precision: dict[str, GPT]
    startup_report: dict  # verify() on the lesson's first prompt, as JSON
    fallback_reason: str | None = None  # why the real weights could not be had, if they could not

    @property
    def device(self) -> str:
        return str(self.reference.device)

    @property
    def vocab_size(self) -> int:
        return self.reference.config.vocab_size


def load_state(name_or_dir: str = "gpt2", device: str = "auto", dtype: str = "float32",
               allow_pickle: bool = False) -> DemoState:
    """Load the reference (or its random stand-in), build our GPT from it, and verify it.

    Raises ModelLoadError or ValueError, with a message that says what to do, when the app cannot start.
    """
    try:
        reference, fallback_reason = load_reference(name_or_dir, device, allow_pickle), None
    except ModelLoadError as error:
        if name_or_dir.removeprefix("openai-community/") not in HUB_SHAPES:
            raise
        reference, fallback_reason = random_reference(name_or_dir, device), str(error)
    verifier = GPT.from_hf(reference)
    student = load_student(reference, dtype)
    lower_precision = {name: student if name == dtype else load_student(reference, name)
                       for name in precision_dtypes(reference.device)}
    report = on_gpu(verify)(reference, DEFAULT_PROMPT, student=verifier, lower_precision=lower_precision)
    return DemoState(name_or_dir, reference, verifier, student, dtype, lower_precision, report.to_dict(),
                     fallback_reason)
