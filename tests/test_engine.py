"""The classroom engine: every request writes exactly what it writes alone, however many others share
the loop, and a request that stops, fails or waits never holds up the others."""
import threading
from contextlib import contextmanager
from dataclasses import replace

import pytest

from model.loading.mistakes import PostLayerNorm
from model.loading.reference import load_reference
from model.sampling import SamplingSettings
from model.serving import engine as engine_module
from model.serving.engine import Engine, EngineError, check_row_invariance
from model.serving.sequence import PROMPT_CHUNK, generate
from model.serving.writer import load_writer
from model.tokenizer import encode
from tests.app_server import wait_until
from tests.checkpoints import build_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROMPTS = [encode("The capital of France is"), encode("Once upon a time"), encode("Hello"),
           encode("The transformer architecture consists of attention and")]
SAMPLED = SamplingSettings(max_new_tokens=24, temperature=0.8, top_k=50, seed=0, stop_at_eot=False)
GREEDY = replace(SAMPLED, temperature=0, top_k=None)


@pytest.fixture(scope="module")
def writer(tiny_reference):
    """The app's writing model on the tiny checkpoint, whose large random weights make every token vary."""
    return load_writer(tiny_reference)


@contextmanager
def running(model, **options):
    engine = Engine(model, **options)
    try:
        yield engine
    finally:
        engine.close()


def alone(model, prompt, settings) -> list[int]:
    return generate(model, prompt, settings)


# --- the same text, whatever the load ------------------------------------------------------------

@pytest.mark.parametrize("others", [0, 1, 7, 31])
@pytest.mark.parametrize("settings", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
def test_a_request_writes_what_it_writes_alone_with_others_joining_and_leaving(writer, others, settings):
    mine = replace(settings, max_new_tokens=40, seed=100)
    theirs = [replace(settings, seed=seed, max_new_tokens=3 + 5 * seed % 30) for seed in range(others)]
    with running(writer) as engine:
        tokens = iter(engine.submit(PROMPTS[0], mine))
        head = [next(tokens) for _ in range(5)]  # writing already: the others join mid-stream
        joined = [engine.submit(PROMPTS[seed % len(PROMPTS)], their) for seed, their in enumerate(theirs)]
        written = head + list(tokens)
        their_texts = [list(request) for request in joined]  # each leaves after its own max_new_tokens
    assert written == alone(writer, PROMPTS[0], mine)
    assert their_texts == [alone(writer, PROMPTS[seed % len(PROMPTS)], their) for seed, their in enumerate(theirs)]


def test_requests_arriving_together_write_what_they_write_alone(writer):
    settings = [replace(SAMPLED, seed=seed, stop_at_eot=True) for seed in range(12)]
    with running(writer) as engine:
        requests = [engine.submit(PROMPTS[i % len(PROMPTS)], s) for i, s in enumerate(settings)]
        texts = [list(request) for request in requests]
    assert texts == [alone(writer, PROMPTS[i % len(PROMPTS)], s) for i, s in enumerate(settings)]


def test_the_writing_models_rows_are_bit_identical_alone_and_among_others(writer, gpt2_reference):
    assert check_row_invariance(writer).holds
    assert check_row_invariance(load_writer(gpt2_reference)).holds  # gpt2's widths, on this machine


def test_the_bfloat16_writers_rows_are_bit_identical_alone_and_among_others(gpt2_reference, cpu_writes_bfloat16):
    assert check_row_invariance(load_writer(gpt2_reference, "bfloat16")).holds


def test_the_check_sees_a_model_whose_rows_round_differently(tiny_reference, monkeypatch):
    """A head whose last bit depends on how many rows it is given, as a BLAS's kernel choice can."""
    model = load_writer(tiny_reference)
    head = model.lm_head.forward
    monkeypatch.setattr(model.lm_head, "forward", lambda x: head(x) * (1 + 1e-6 * (x.size(0) > 1)))
    found = check_row_invariance(model)
    assert not found.holds and 0 < found.max_abs_diff < 1e-3


# --- long prompts --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def long_context_writer(tmp_path_factory):
    folder = build_checkpoint(tmp_path_factory.mktemp("long"), seed=0, initializer_range=0.5, n_layer=2, n_head=2,
                              n_embd=32, n_positions=4 * PROMPT_CHUNK)
    return load_writer(load_reference(str(folder), "cpu"))


def passes_recorded(model, monkeypatch) -> list[tuple[int, ...]]:
    """The engine's passes from now on, as (positions of each row): (1, 1, 1) three rows writing, (64, 5) two chunks read."""
    calls = []
    forward, read = model.forward, engine_module.read_packed
    monkeypatch.setattr(model, "forward", lambda idx, *args, **kw: calls.append((idx.size(1),) * idx.size(0))
                        or forward(idx, *args, **kw))
    monkeypatch.setattr(engine_module, "read_packed", lambda model, chunks, caches: calls.append(tuple(map(len, chunks)))
                        or read(model, chunks, caches))
    return calls


def test_a_long_prompt_is_read_in_chunks_while_the_others_go_on_writing(long_context_writer, monkeypatch):
    model = long_context_writer
    calls = passes_recorded(model, monkeypatch)
    long_prompt = (PROMPTS[3] * 60)[:3 * PROMPT_CHUNK + 5]
    writing = replace(GREEDY, max_new_tokens=30)
    with running(model) as engine:
        tokens = iter(engine.submit(PROMPTS[0], writing))
        head = [next(tokens)]
        calls.clear()
        long = engine.submit(long_prompt, replace(SAMPLED, max_new_tokens=5))
        long_text = list(long)
        written = head + list(tokens)
    reading = [i for i, positions in enumerate(calls) if positions[0] > 1]
    assert [calls[i] for i in reading] == [(PROMPT_CHUNK,)] * 3 + [(5,)]
    assert all((1,) in calls[a:b] for a, b in zip(reading, reading[1:])), f"a step with no token written: {calls}"
    monkeypatch.undo()
    assert long_text == alone(model, long_prompt, replace(SAMPLED, max_new_tokens=5))
    assert written == alone(model, PROMPTS[0], writing)


def test_prompts_of_many_lengths_are_read_in_one_pass_and_write_what_they_write_alone(writer, monkeypatch):
    """A class's prompts, each its own length, arriving together: one pass reads them all, then one pass a step writes."""
    text = PROMPTS[3] * 4
    prompts = [text[i:2 * i + 2] for i in range(10)]  # 2 to 11 tokens
    settings = [replace(SAMPLED, seed=seed, max_new_tokens=6) for seed in range(len(prompts))]
    calls = passes_recorded(writer, monkeypatch)
    with running(writer, thread=False) as engine:
        requests = [engine.submit(prompt, s) for prompt, s in zip(prompts, settings)]
        reader = threading.Thread(target=lambda: texts.extend(list(request) for request in requests) or engine.close())
        texts = []
        reader.start()
        engine.run()
        reader.join()
    monkeypatch.undo()
    assert calls[0] == tuple(map(len, prompts))  # every prompt, in the order they came
    assert calls[1:] == [(1,) * len(prompts)] * 5
    assert texts == [alone(writer, prompt, s) for prompt, s in zip(prompts, settings)]


def test_long_and_short_prompts_read_together_write_what_they_write_alone(long_context_writer, monkeypatch):
    """Chunks that go on from their own place in a cache (64 tokens a step) packed beside prompts that start."""
    model = long_context_writer
    text = (PROMPTS[3] + PROMPTS[0]) * 40
    prompts = [text[:150], text[3:103], text[5:75], text[7:10], text[11:19]]
    settings = [replace(SAMPLED, seed=seed, max_new_tokens=8) for seed in range(len(prompts))]
    calls = passes_recorded(model, monkeypatch)
    with running(model, thread=False) as engine:
        requests = [engine.submit(prompt, s) for prompt, s in zip(prompts, settings)]
        texts = []
        reader = threading.Thread(target=lambda: texts.extend(list(request) for request in requests) or engine.close())
        reader.start()
        engine.run()
        reader.join()
    monkeypatch.undo()
    reading = [positions for positions in calls if max(positions) > 1]
    assert reading == [(PROMPT_CHUNK, PROMPT_CHUNK, PROMPT_CHUNK, 3, 8), (PROMPT_CHUNK, 36, 6), (22,)]
    assert texts == [alone(model, prompt, s) for prompt, s in zip(prompts, settings)]


def test_the_engine_refuses_a_model_composed_otherwise_than_the_course(tiny_reference):
    """Packed prompts repeat model/gpt.py's composition: a variant with its own Block would be read wrongly."""
    model = load_writer(tiny_reference)
    PostLayerNorm().build(model)
    with pytest.raises(ValueError, match="composes it .* alone: model.serving.sequence.stream"):
        Engine(model, thread=False)


# --- leaving, failing, waiting -------------------------------------------------------------------

def test_a_cancelled_request_frees_its_row_at_the_next_step(writer):
    with running(writer) as engine:
        request = engine.submit(PROMPTS[0], replace(SAMPLED, max_new_tokens=10_000))
        tokens = iter(request)
        next(tokens)
        assert engine.active_rows == 1
        tokens.close()  # what a closed tab or Stop does to the app's stream
        wait_until(lambda: engine.active_rows == 0, 30, "the cancelled row leaves")


def test_a_fault_fails_the_requests_of_its_step_and_the_next_request_is_served(writer, monkeypatch):
    fault = threading.Event()
    ln_f = writer.transformer.ln_f.forward

    def failing(x):
        if fault.is_set():
            fault.clear()
            raise RuntimeError("a fault inside the model")
        return ln_f(x)

    monkeypatch.setattr(writer.transformer.ln_f, "forward", failing)
    with running(writer) as engine:
        first = iter(engine.submit(PROMPTS[0], replace(SAMPLED, max_new_tokens=10_000)))
        next(first)
        fault.set()
        with pytest.raises(EngineError, match="generation failed: RuntimeError: a fault inside the model"):
            list(first)
        assert engine.active_rows == 0
        after = list(engine.submit(PROMPTS[1], SAMPLED))
    monkeypatch.undo()
    assert after == alone(writer, PROMPTS[1], SAMPLED)


def test_a_request_that_cannot_start_fails_alone(writer):
    with running(writer) as engine:
        writing = iter(engine.submit(PROMPTS[0], replace(SAMPLED, max_new_tokens=20)))
        next(writing)
        with pytest.raises(ValueError, match="at least one prompt token"):
            list(engine.submit([], SAMPLED))
        assert len([next(writing)] + list(writing)) == 19


def test_rows_wait_while_their_caches_would_not_fit_the_memory_bound(writer):
    settings = replace(SAMPLED, max_new_tokens=30)
    one_cache = (len(PROMPTS[0]) + settings.max_new_tokens) * 2 * writer.config.n_layer * writer.config.n_embd * 4
    most = []
    with running(writer, max_cache_bytes=2 * one_cache) as engine:
        requests = [engine.submit(PROMPTS[0], replace(settings, seed=seed)) for seed in range(5)]
        texts = []
        for request in requests:
            tokens = iter(request)
            texts.append([next(tokens)])
            most.append(engine.active_rows)
            texts[-1] += list(tokens)
    assert max(most) <= 2
    assert texts == [alone(writer, PROMPTS[0], replace(settings, seed=seed)) for seed in range(5)]


def test_waiting_for_a_pause_ends_when_the_last_row_leaves_or_at_the_timeout(writer):
    with running(writer) as engine:
        assert engine.wait_until_idle(timeout=0)  # nothing to write: a pause already
        writing = iter(engine.submit(PROMPTS[0], replace(SAMPLED, max_new_tokens=10_000)))
        next(writing)
        assert not engine.wait_until_idle(timeout=0.2)
        paused = []
        waiter = threading.Thread(target=lambda: paused.append(engine.wait_until_idle(timeout=120)))
        waiter.start()
        # Someone waiting for a pause does not keep the loop from seeing a new request.
        assert list(engine.submit(PROMPTS[1], SAMPLED)) == alone(writer, PROMPTS[1], SAMPLED)
        assert paused == []
        writing.close()
        waiter.join(timeout=120)
        assert paused == [True] and engine.active_rows == 0


def test_a_closed_engine_ends_what_it_was_serving_with_an_error(writer):
    engine = Engine(writer)
    tokens = iter(engine.submit(PROMPTS[0], replace(SAMPLED, max_new_tokens=10_000)))
    next(tokens)
    engine.close()
    with pytest.raises(EngineError, match="closed"):
        list(tokens)
    with pytest.raises(EngineError, match="closed"):
        engine.submit(PROMPTS[0], SAMPLED)
