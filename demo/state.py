"""The one model every user of the app shares: loaded once, verified once, then only read."""
from collections.abc import Iterator
from dataclasses import dataclass

from transformers import GPT2LMHeadModel

from demo import gpu
from demo.gpu import on_gpu
from demo.reports import Reports
from model.gpt import GPT
from model.lesson.knowledge import random_init
from model.loading.mapping import load_gpt
from model.loading.reference import HUB_SHAPES, HubUnreachableError, load_reference, random_reference, resolve_device
from model.proof.verify import DEFAULT_PROMPT, precision_dtypes
from model.sampling import SamplingSettings
from model.serving.engine import Engine, RowInvariance, check_row_invariance
from model.serving.sequence import stream
from model.serving.writer import check_dtype, in_dtype, load_writer

ENGINE_ROWS = 32  # a class of 30 writing at once, and the teacher
# The KV caches of the rows writing at once stay below this; a request whose cache would not fit waits its turn.
# A class's rows (a short prompt, 64 new tokens) fit many times over; gpt2's rows at the app's limits (a whole
# context each) fit seven at once, which keeps the app's memory bounded with every row at its limits.
ENGINE_CACHE_BYTES = 2**29


@dataclass(frozen=True)
class DemoState:
    model_name: str
    reference: GPT2LMHeadModel
    ours: GPT  # float32, sharing the reference's memory: the model verification checks
    writer: GPT  # the model that writes, in `dtype`, laid out for speed (model.serving.writer.load_writer)
    dtype: str
    reports: Reports  # every verification report, each made once
    startup_report: dict  # verify() on the lesson's first prompt, as JSON
    random_init: GPT  # the same class and config on GPT-2's random initialisation: what the weights add
    fallback_reason: str | None = None  # why the real weights could not be had, if they could not
    engine: Engine | None = None  # the one decoding loop every generation shares; None on ZeroGPU
    row_invariance: RowInvariance | None = None  # checked at start-up: a text is the same alone or in a class

    def tokens(self, ids: list[int], settings: SamplingSettings) -> Iterator[int]:
        """The tokens of one generation: written in the shared loop, or alone where there is none (ZeroGPU)."""
        return self.engine.stream(ids, settings) if self.engine is not None else stream(self.writer, ids, settings)

    @property
    def device(self) -> str:
        return str(self.reference.device)

    @property
    def vocab_size(self) -> int:
        return self.reference.config.vocab_size


def load_state(name_or_dir: str = "gpt2", device: str = "auto", dtype: str = "float32",
               allow_pickle: bool = False, engine_thread: bool = True) -> DemoState:
    """Load the reference (or its random stand-in), build our GPT from it, and verify it.

    Only a hub id the hub cannot be reached for falls back to random weights: a download that broke off,
    or a damaged file, is worth fixing rather than hiding behind gibberish.
    engine_thread: the engine's loop in a thread of its own; False leaves it to the caller (Engine.run), as
    `python -m demo` does to run it on the thread that loaded the model.
    Raises ModelLoadError or ValueError, with a message that says what to do, when the app cannot start.
    """
    check_dtype(dtype, resolve_device(device))  # before a download: the CPU may not write in bfloat16
    try:
        reference, fallback_reason = load_reference(name_or_dir, device, allow_pickle), None
    except HubUnreachableError as error:
        if name_or_dir.removeprefix("openai-community/") not in HUB_SHAPES:
            raise
        reference, fallback_reason = random_reference(name_or_dir, device), str(error)
    ours = load_gpt(reference)
    writer = load_writer(reference, dtype)
    # The writer where it is one of the report's lower precisions, else a plain copy (no packed one) kept for every
    # report.
    lower_precision = {name: writer if name == dtype else in_dtype(load_gpt(reference), name)
                       for name in precision_dtypes(reference.device)}
    # ZeroGPU lends a GPU per call: a loop that outlives calls cannot hold one.
    engine = None if gpu.spaces is not None else Engine(writer, max_rows=ENGINE_ROWS,
                                                        max_cache_bytes=ENGINE_CACHE_BYTES, thread=engine_thread)
    reports = Reports(reference, ours, lower_precision, engine)
    return DemoState(name_or_dir, reference, ours, writer, dtype, reports, on_gpu(reports.get)(DEFAULT_PROMPT),
                     random_init=random_init(ours.config, reference.device), fallback_reason=fallback_reason,
                     engine=engine, row_invariance=check_row_invariance(writer) if engine is not None else None)
