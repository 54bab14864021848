"""The classroom engine: one decoding loop shared by every request, so a class costs one read of the
weights per step instead of one per student.

A thread runs the loop. Each step it admits the requests that arrived (continuous batching: a
student who comes mid-way joins at the next step and waits for nobody to finish), asks every
active `Sequence` for its next chunk, and runs the model twice at most: once for the rows that are
writing (one token each), once for the rows still reading a prompt (a piece of it each, whatever its
length, packed side by side: model/serving/packed_prompts.py). Each new token goes to its request at
once. A request that stops (its last token, <|endoftext|>, Stop, a client gone) leaves at the next
step and its cache is freed.

Every row is computed exactly as it would be alone: the model's products give each row the same
bits whatever the other rows hold (model/serving/products.py), attention reads each row's own cache
(model/serving/written_token.py: each row and head on its own; a packed prompt's chunks each over their own),
and each request samples with its own seeded generator. `check_row_invariance` confirms it on the machine the
app runs on. When nobody has written for a moment, the memory freed is given back to the system.
"""
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from model.gpt import GPT, KVCache
from model.memory import release_freed_memory
from model.sampling import SamplingSettings
from model.serving.packed_prompts import composed_as_the_course, read_packed
from model.serving.products import build_kernels
from model.serving.sequence import PROMPT_CHUNK, Sequence

_DONE = object()  # the end of a request's tokens
RELEASE_AFTER_SECONDS = 0.5  # idle this long, the engine gives freed memory back to the system


class Request:
    """One generation submitted to the engine: iterate it for its tokens, as they are written.

    Iterating raises the engine's error if the step that carried this request failed. `cancel()`
    (or closing the iterator) frees its row at the next step.
    """

    def __init__(self, ids: list[int], settings: SamplingSettings):
        self.ids, self.settings = ids, settings
        self.cancelled = threading.Event()
        self._events: queue.SimpleQueue = queue.SimpleQueue()

    def __iter__(self) -> Iterator[int]:
        try:
            while (event := self._events.get()) is not _DONE:
                if isinstance(event, Exception):
                    raise event
                yield event
        finally:
            self.cancel()  # a consumer that stops reading (Stop, a closed tab) frees the row

    def cancel(self):
        self.cancelled.set()

    def _send(self, event):
        self._events.put(event)


@dataclass
class _Row:
    request: Request
    sequence: Sequence
    cache_bytes: int = field(default=0)


class EngineError(RuntimeError):
    """A step of the engine failed; every request in that step ends with this error."""


class Engine:
    """Serves many generations of one model at once; see the module's docstring.

    max_rows: sequences decoded together at most; more requests wait their turn.
    max_cache_bytes: the KV caches of the active rows together stay below this; a request whose
        cache would not fit waits until enough rows have left.
    prompt_tokens_per_step: prompt tokens read per step at most, so a long prompt (or many new
        prompts) never stalls the rows already writing for more than about a step.
    thread: run the loop in a thread of its own, started here; if False, the caller runs it (`run`).
        On a CPU, PyTorch keeps a pool of worker threads for each thread that runs it in parallel,
        and while another thread's pool is alive every small operation is slower: `python -m demo`
        runs the loop on the thread that loaded the model, whose pool is there anyway.
    """

    def __init__(self, model: GPT, max_rows: int = 32, max_cache_bytes: int = 2**30,
                 prompt_tokens_per_step: int = 256, thread: bool = True):
        if not composed_as_the_course(model):
            raise ValueError("the engine serves the course's GPT as model/gpt.py composes it (it reads prompts packed, "
                             "model/serving/packed_prompts.py); write with this variant alone: model.serving.sequence.stream")
        self.model, self.max_rows, self.max_cache_bytes = model, max_rows, max_cache_bytes
        self.prompt_tokens_per_step = prompt_tokens_per_step
        config = model.config
        itemsize = model.transformer.wte.weight.element_size()
        self._bytes_per_position = 2 * config.n_layer * config.n_embd * itemsize  # keys and values
        self._waiting: list[Request] = []
        self._rows: list[_Row] = []
        self._wake = threading.Condition()
        self._closed = False
        self._cores = torch.get_num_threads()  # what the loop runs on, whichever thread runs it
        # A pass reads at most max_rows tokens being written, or this many tokens of prompts (one chunk at least).
        build_kernels(model, max(max_rows, prompt_tokens_per_step, PROMPT_CHUNK))
        self._thread = threading.Thread(target=self.run, name="engine", daemon=True) if thread else None
        if self._thread is not None:
            self._thread.start()

    # --- what callers use --------------------------------------------------------------------------

    def submit(self, ids: list[int], settings: SamplingSettings) -> Request:
        """Queue a generation; iterate the returned request for its tokens."""
        request = Request(list(ids), settings)
        with self._wake:
            if self._closed:
                raise EngineError("the engine is closed")
            self._waiting.append(request)
            self._wake.notify_all()  # the loop, among any waiting for a pause
        return request

    def stream(self, ids: list[int], settings: SamplingSettings) -> Iterator[int]:
        """The tokens of one generation, written alongside every other request: `GPT.stream`'s contract."""
        yield from self.submit(ids, settings)

    @property
    def thread(self) -> threading.Thread | None:
        """The thread the loop runs in, if the engine started one (thread=True)."""
        return self._thread

    @property
    def active_rows(self) -> int:
        return len(self._rows)

    def wait_until_idle(self, timeout: float) -> bool:
        """Block until no request is writing or waiting (True), or `timeout` seconds have passed (False).

        For work that should let the class write first: it starts in a pause, or after `timeout` at most.
        """
        with self._wake:
            return self._wake.wait_for(lambda: self._closed or not (self._rows or self._waiting), timeout)

    def close(self):
        """Stop the loop; requests still running or waiting end with an error."""
        with self._wake:
            self._closed = True
            self._wake.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    # --- the loop ----------------------------------------------------------------------------------

    def run(self):
        """The loop, in the calling thread, until `close()`."""
        torch.set_num_threads(self._cores)  # as many as the thread that built the engine had
        wrote = False  # since freed memory was last given back
        while True:
            with self._wake:
                quiet = False
                if not self._has_work():
                    self._wake.notify_all()  # idle: wake whoever waits for a pause
                    # Not between two students' requests: giving memory back stalls every thread that allocates.
                    quiet = wrote and not self._wake.wait_for(self._has_work, RELEASE_AFTER_SECONDS)
            if quiet:  # the class has stopped writing: its rows' caches and steps' temporaries, given back
                release_freed_memory()
                wrote = False
            with self._wake:
                self._wake.wait_for(self._has_work)
                wrote = True
                if self._closed:
                    break
                self._admit()
            self._leave(lambda row: row.request.cancelled.is_set())
            self._step()
        self._fail([row.request for row in self._rows] + self._waiting, EngineError("the engine was closed"))

    def _has_work(self) -> bool:
        return bool(self._closed or self._waiting or self._rows)

    def _admit(self):
        """Move waiting requests into rows, first come first served, while rows and cache memory last."""
        used = sum(row.cache_bytes for row in self._rows)
        while self._waiting and len(self._rows) < self.max_rows:
            request = self._waiting[0]
            if request.cancelled.is_set():
                self._waiting.pop(0)._send(_DONE)
                continue
            try:
                sequence = Sequence(self.model, request.ids, request.settings)
            except Exception as error:  # noqa: BLE001 - this request alone cannot start
                self._waiting.pop(0)._send(error)
                continue
            positions = min(len(sequence.context) + request.settings.max_new_tokens, self.model.config.n_positions)
            cache_bytes = positions * self._bytes_per_position
            if self._rows and used + cache_bytes > self.max_cache_bytes:
                return  # wait for rows to leave; a lone request always runs
            self._waiting.pop(0)
            self._rows.append(_Row(request, sequence, cache_bytes))
            used += cache_bytes

    @torch.inference_mode()
    def _step(self):
        """A pass for the rows writing, one for the prompts being read; a fault ends only the rows it touched."""
        try:
            groups = self._chunks()
        except Exception as error:  # noqa: BLE001 - never a dead engine with a queue behind it
            self._leave(lambda row: True, EngineError(f"generation failed: {type(error).__name__}: {error}"))
            return
        for rows in groups:
            try:
                self._run(rows)
            except Exception as error:  # noqa: BLE001
                failed = {id(row) for row, _ in rows}
                self._leave(lambda row: id(row) in failed,
                            EngineError(f"generation failed: {type(error).__name__}: {error}"))

    def _chunks(self) -> list[list[tuple[_Row, list[int]]]]:
        """The rows to run this step with their next chunks: those of one token (writing), those of more (reading)."""
        writing, reading = [], []
        prompt_tokens = 0
        for row in self._rows:
            chunk = row.sequence.next_chunk()
            if len(chunk) > 1:
                if prompt_tokens and prompt_tokens + len(chunk) > self.prompt_tokens_per_step:
                    continue  # read at a later step; the rows already writing go on now
                prompt_tokens += len(chunk)
            (writing if len(chunk) == 1 else reading).append((row, chunk))
        return [rows for rows in (writing, reading) if rows]

    def _run(self, rows: list[tuple["_Row", list[int]]]):
        chunks, caches = [chunk for _, chunk in rows], [row.sequence.cache for row, _ in rows]
        if len(chunks[0]) == 1:
            idx = torch.tensor(chunks, device=self.model.transformer.wte.weight.device)  # (rows, 1)
            logits = self.model(idx, caches, last_only=True)[:, -1]
        else:
            logits = read_packed(self.model, chunks, caches)
        for (row, _), row_logits in zip(rows, logits):
            if (token := row.sequence.accept(row_logits)) is not None:
                row.request._send(token)
        self._leave(lambda row: row.sequence.finished)

    def _leave(self, leaves, error: Exception | None = None):
        """Free the rows for which leaves(row) holds, ending their requests (with `error`, if given)."""
        staying = []
        for row in self._rows:
            if leaves(row):
                row.request._send(error if error is not None else _DONE)
            else:
                staying.append(row)
        self._rows = staying

    @staticmethod
    def _fail(requests: list[Request], error: Exception):
        for request in requests:
            request._send(error)


# --- the property the engine relies on, checked where it runs ---------------------------------------

@dataclass(frozen=True)
class RowInvariance:
    holds: bool  # every row's logits came out bit-identical alone and among others
    max_abs_diff: float  # the largest difference found (0.0 when it holds)


@torch.inference_mode()
def check_row_invariance(model: GPT, batch_sizes: tuple[int, ...] = (2, 5, 32), prompt_length: int = 5,
                         seed: int = 0) -> RowInvariance:
    """Run a probe row alone, as `stream` runs it, then among other rows as the engine runs it, and compare its
    logits bit for bit.

    Both kinds of pass the engine makes are checked: reading prompts (the probe's among chunks of other lengths,
    packed) and writing a token (one position per row, each row at its own place in its own cache).
    """
    config = model.config
    device, dtype = model.transformer.wte.weight.device, model.transformer.wte.weight.dtype
    generator = torch.Generator().manual_seed(seed)
    prompt_length = min(prompt_length, config.n_positions - 2)

    def random_tokens(n: int) -> list[int]:
        return torch.randint(config.vocab_size, (n,), generator=generator).tolist()

    def write(caches: list[KVCache], next_tokens: list[int]) -> torch.Tensor:
        return model(torch.tensor([[token] for token in next_tokens], device=device), caches, last_only=True)[:, -1]

    def new_caches(prompts: list[list[int]]) -> list[KVCache]:
        return [KVCache(config, device, dtype, len(prompt) + 1) for prompt in prompts]

    probe, probe_next = random_tokens(prompt_length), random_tokens(1)
    caches = new_caches([probe])
    alone = (model(torch.tensor([probe], device=device), caches, last_only=True)[:, -1], write(caches, probe_next))
    max_diff = 0.0
    for size in batch_sizes:
        where = size // 2  # neither first nor last
        # Others of other lengths, 2 up to prompt_length + 1 (the engine writes a chunk of one, it does not read it).
        prompts = [random_tokens(2 + i % prompt_length) for i in range(size)]
        next_tokens = random_tokens(size)
        prompts[where], next_tokens[where] = probe, probe_next[0]
        caches = new_caches(prompts)
        among = (read_packed(model, prompts, caches), write(caches, next_tokens))
        for mine, theirs in zip(alone, among):
            max_diff = max(max_diff, (mine[0].float() - theirs[where].float()).abs().max().item())
    return RowInvariance(holds=max_diff == 0.0, max_abs_diff=max_diff)
