"""Writing text: greedy is the reference's greedy, the KV cache, seeds, long prompts, streaming, and
the payoff: sentences a checkpoint learned by heart come back out of our GPT, and not out of a broken load."""
import threading
from dataclasses import replace

import pytest
import torch

from model.bugs import BUGS
from model.generate import complete, prepare_prompt, stream_text
from model.gpt import GPT
from model.reference import load_reference
from model.sampling import SamplingSettings
from model.tokenizer import EOT_TOKEN, encode
from model.verify import reference_greedy
from tests.checkpoints import MEMORISED, RECITATION_PROMPTS, build_trained_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")

GREEDY = SamplingSettings(max_new_tokens=40, temperature=0, top_k=None, stop_at_eot=False)
SAMPLED = SamplingSettings(max_new_tokens=40, temperature=1.0, top_k=None, seed=0, stop_at_eot=False)
RECITE = SamplingSettings(max_new_tokens=32, temperature=0, stop_at_eot=True)
PROMPT = encode("The meaning of life is")
LONG_PROMPT = "one two three four five six seven eight nine ten " * 10  # 101 tokens; the tiny context is 64
OWL_PROMPT, OWL = "Owls say", "Owls say hoo 🦉 to the moon at night."  # 🦉 is three tokens: one character split


@pytest.fixture(scope="module")
def owl_student(tmp_path_factory):
    """A tiny GPT-2 that learned OWL by heart, so its continuation streams an emoji."""
    folder = build_trained_checkpoint(tmp_path_factory.mktemp("owl"), steps=40, sentences=[OWL])
    return GPT.from_hf(load_reference(str(folder), "cpu"))


@pytest.mark.parametrize("name", ["tiny", "trained"])
def test_greedy_writes_token_for_token_what_reference_generate_writes(request, name):
    reference, student = (request.getfixturevalue(f"{name}_{part}") for part in ("reference", "student"))
    n = reference.config.n_positions - len(PROMPT)  # as far as the reference's context goes
    assert student.generate(PROMPT, replace(GREEDY, max_new_tokens=n)) == reference_greedy(reference, PROMPT, n)


# --- the KV cache ----------------------------------------------------------------------------------

def test_with_the_cache_each_new_token_reads_one_position(tiny_student):
    read = []
    hook = tiny_student.register_forward_pre_hook(lambda module, args: read.append(args[0].size(1)))
    try:
        tiny_student.generate(PROMPT, replace(GREEDY, max_new_tokens=10))
    finally:
        hook.remove()
    assert read == [len(PROMPT)] + [1] * 9


@pytest.mark.parametrize("max_new_tokens", [40, 100], ids=["within-the-context", "past-the-context"])
def test_the_cache_changes_the_speed_not_the_tokens(tiny_student, max_new_tokens):
    """As gpt.py promises for use_cache=False. Past the context both must also drop the same tokens."""
    settings = replace(SAMPLED, max_new_tokens=max_new_tokens)
    assert tiny_student.generate(PROMPT, settings) == tiny_student.generate(PROMPT, settings, use_cache=False)


# --- seeds -----------------------------------------------------------------------------------------

def test_the_same_seed_writes_the_same_tokens_and_another_seed_others(tiny_student):
    first, again, other = (tiny_student.generate(PROMPT, replace(SAMPLED, seed=s)) for s in (1, 1, 2))
    assert first == again != other


def test_generation_leaves_the_global_rng_alone(tiny_student):
    before = torch.get_rng_state()
    tiny_student.generate(PROMPT, SAMPLED)
    assert torch.equal(torch.get_rng_state(), before)


def test_interleaved_streams_do_not_share_randomness(tiny_student):
    alone = [tiny_student.generate(PROMPT, replace(SAMPLED, seed=s)) for s in (1, 2)]
    one, two = (tiny_student.stream(PROMPT, replace(SAMPLED, seed=s)) for s in (1, 2))
    in_turn = list(zip(one, two))  # a token from one, then from the other, and so on
    assert [[a for a, _ in in_turn], [b for _, b in in_turn]] == alone


def test_seeded_sampling_is_independent_of_other_threads(tiny_student):
    seeds = (1, 2)
    alone = {seed: tiny_student.generate(PROMPT, replace(SAMPLED, seed=seed)) for seed in seeds}
    together, start = {}, threading.Barrier(len(seeds))

    def write(seed):
        start.wait()  # both threads sample at the same time
        together[seed] = tiny_student.generate(PROMPT, replace(SAMPLED, seed=seed))

    threads = [threading.Thread(target=write, args=(seed,)) for seed in seeds]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert together == alone


# --- where to stop, and prompts longer than the context --------------------------------------------

def test_generation_stops_at_endoftext_only_when_asked(trained_student):
    ids = encode(RECITATION_PROMPTS[0])
    stopped = trained_student.generate(ids, replace(GREEDY, stop_at_eot=True))
    running = trained_student.generate(ids, GREEDY)
    assert len(running) == GREEDY.max_new_tokens
    assert running[:len(stopped) + 1] == stopped + [EOT_TOKEN]


def test_a_prompt_longer_than_the_context_keeps_its_end_and_says_so(tiny_student):
    ids = encode(LONG_PROMPT)
    prompt = prepare_prompt(tiny_student, LONG_PROMPT, max_new_tokens=20)
    assert prompt.ids == ids[-len(prompt.ids):]
    assert len(prompt.ids) + 20 <= tiny_student.config.n_positions
    assert f"first {len(ids) - len(prompt.ids)} tokens were dropped" in prompt.notice


def test_a_prompt_that_fits_is_kept_whole_without_a_notice(tiny_student):
    prompt = prepare_prompt(tiny_student, "The meaning of life is", max_new_tokens=20)
    assert (prompt.ids, prompt.dropped_tokens, prompt.notice) == (PROMPT, 0, None)


def test_generation_runs_past_the_context(tiny_student):
    prompt = prepare_prompt(tiny_student, LONG_PROMPT, max_new_tokens=100)
    written = tiny_student.generate(prompt.ids, replace(SAMPLED, max_new_tokens=100))
    assert len(written) == 100 and len(prompt.ids) + len(written) > tiny_student.config.n_positions


# --- streaming text --------------------------------------------------------------------------------

def test_the_first_piece_arrives_after_one_step(trained_student):
    steps = []
    hook = trained_student.register_forward_hook(lambda *_: steps.append(1))
    try:
        pieces = stream_text(trained_student, prepare_prompt(trained_student, RECITATION_PROMPTS[0], 30), RECITE)
        first = next(pieces)
    finally:
        hook.remove()
    assert (first, len(steps)) == (" Paris", 1)


def test_an_emoji_split_across_tokens_streams_whole(owl_student):
    pieces = list(stream_text(owl_student, prepare_prompt(owl_student, OWL_PROMPT, 30), RECITE))
    assert OWL_PROMPT + "".join(pieces) == OWL
    assert not any("\ufffd" in piece for piece in pieces) and "🦉" in pieces


# --- the payoff ------------------------------------------------------------------------------------

@pytest.mark.parametrize("prompt, sentence", list(zip(RECITATION_PROMPTS, MEMORISED)))
def test_our_gpt_recites_what_the_reference_learned_by_heart(trained_student, prompt, sentence):
    assert prompt + complete(trained_student, prompt, RECITE) == sentence


@pytest.mark.parametrize("bug", [name for name, bug in BUGS.items() if bug.silent and not bug.near_miss])
def test_a_broken_load_recites_none_of_it(trained_reference, bug):
    broken = GPT.from_hf(trained_reference, bug)
    recited = [prompt + complete(broken, prompt, RECITE) for prompt in RECITATION_PROMPTS]
    assert not set(recited) & set(MEMORISED)


@pytest.mark.parametrize("bug", [name for name, bug in BUGS.items() if bug.near_miss])
def test_a_near_miss_recites_all_of_it(trained_reference, bug):
    """Why the text is no proof: this load computes another function (verification catches it), word-perfect."""
    broken = GPT.from_hf(trained_reference, bug)
    assert [prompt + complete(broken, prompt, RECITE) for prompt in RECITATION_PROMPTS] == MEMORISED
