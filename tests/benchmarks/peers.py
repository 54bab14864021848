"""CTranslate2 beside ours, in the same run: the engine a user would pick for fast GPT-2 on a CPU.

    pip install ctranslate2    # not a dependency of the app or of the tests: measured when it is installed

CTranslate2's converter reads a save_pretrained folder once GPT-2's tokenizer files sit beside it
(vocab.json and merges.txt: model/assets/encoder.json and vocab.bpe under those names); the model is
converted once per run, in float32 and in int8, and runs in a process of its own (class `Peer`). Every
row comes in pairs with ours, as the others do:
- one stream: greedy tokens/s from the benchmark's prompt, ours in float32 against CTranslate2's float32
  (the same greedy tokens expected), and against its int8 for information (other weights, other tokens);
- a class: CLASS_SIZE prompts of English, CLASS_TOKENS greedy new tokens each, our classroom engine in
  this process (its loop on this thread, as `python -m demo` runs it) against CTranslate2's batch of the
  same prompts; ours in bfloat16 too, where this CPU writes in bfloat16 (`products.bfloat16_available`);
- the class's float32 floor: its products' arithmetic at the fastest rate this CPU reached around the class's
  runs, which bounds how far any engine can be ahead of CTranslate2's batch, and at the rate our products held
  over a whole step (arithmetic.py).
"""
import json
import multiprocessing
import shutil
import threading
from pathlib import Path

import torch

from model.sampling import SamplingSettings
from model.serving.engine import Engine
from model.serving.writer import load_writer
from tests.benchmarks import arithmetic
from tests.benchmarks.runs import ours, prompt
from tests.benchmarks.timing import paired

ASSETS = Path(__file__).resolve().parents[2] / "model" / "assets"
CLASS_SIZE, CLASS_TOKENS = 30, 64
QUANTIZATIONS = ("float32", "int8")  # float32 is the peer; int8 (other weights, other tokens) for information
# A token id -> its BPE string, what CTranslate2 reads.
VOCABULARY = {i: token for token, i in json.loads((ASSETS / "encoder.json").read_text()).items()}


def installed() -> bool:
    try:
        import ctranslate2  # noqa: F401
    except ImportError:
        return False
    return True


def peers(model_dir: str, reference, dtypes: list[str], args, device, scratch: str) -> dict | None:
    """The peer rows of the run, or None (with a line saying why) where CTranslate2 cannot be measured."""
    if not installed():
        print("CTranslate2 is not installed: no peer rows (pip install ctranslate2 to measure it)", flush=True)
        return None
    if device.type != "cpu":
        print("CTranslate2 is measured on the CPU only: no peer rows", flush=True)
        return None
    print("CTranslate2: converting the checkpoint and loading it, in a process of its own ...", flush=True)
    peer = Peer(model_dir, scratch, torch.get_num_threads())
    try:
        return _measure(peer, reference, dtypes, args, device)
    finally:
        peer.close()


def _measure(peer: "Peer", reference, dtypes: list[str], args, device) -> dict:
    n, ids = args.new_tokens[0], prompt(args.prompt_lengths[0])
    writers = {dtype: load_writer(reference, dtype) for dtype in dtypes}
    stream = {quantization: paired(ours(writers["float32"], ids, n), lambda q=quantization: peer.write(q, [ids], n)[0],
                                   args.repeats, device, args, scale=n)
              for quantization in QUANTIZATIONS}
    for quantization, pair in stream.items():
        print(f"  one stream, {n} new tokens: ours {pair['ours_per_s']:.1f} tok/s, CTranslate2 {quantization} "
              f"{pair['reference_per_s']:.1f} tok/s, ours / theirs {pair['median_ratio']:.2f}x, identical "
              f"{pair['identical']}", flush=True)
    prompts = class_prompts()
    rate_before = arithmetic.float32_rate(writers["float32"], CLASS_SIZE)
    together = {}
    for dtype, writer in writers.items():
        for quantization in QUANTIZATIONS if dtype == "float32" else ("float32",):
            pair = together[f"{dtype} vs {quantization}"] = paired(
                ours_class(writer, prompts, CLASS_TOKENS), lambda q=quantization: peer.write(q, prompts, CLASS_TOKENS),
                args.class_repeats, device, args)
            print(f"  a class of {CLASS_SIZE} x {CLASS_TOKENS}: ours in {dtype} {pair['ours_median_s']:.2f} s, "
                  f"CTranslate2 {quantization} {pair['reference_median_s']:.2f} s, theirs / ours "
                  f"{pair['median_ratio']:.2f}x, identical {pair['identical']}", flush=True)
    floor = arithmetic.floor(arithmetic.class_gflop(writers["float32"], prompts, CLASS_TOKENS), rate_before,
                             arithmetic.float32_rate(writers["float32"], CLASS_SIZE))
    print(f"  a class's float32 products: {floor['gflop']:.0f} GFLOP, {floor['seconds']:.2f} s at this CPU's fastest rate "
          f"measured around it ({floor['gflop_s']:.0f} GFLOP/s), {floor['step_seconds']:.2f} s at the rate our products "
          f"held over a whole step ({floor['step_gflop_s']:.0f} GFLOP/s)", flush=True)
    return {"ctranslate2": peer.version, "new_tokens": n, "stream": stream, "class": together,
            "class_size": CLASS_SIZE, "class_tokens": CLASS_TOKENS, "class_floor": floor}


class Peer:
    """CTranslate2 in a process of its own. In ours, once it had run, its own OpenMP runtime's threads slowed
    our engine's class by about half: a peer measured beside us must not weigh on us."""

    def __init__(self, model_dir: str, scratch: str, threads: int):
        context = multiprocessing.get_context("spawn")
        self._connection, theirs = context.Pipe()
        self._process = context.Process(target=_serve, args=(theirs, model_dir, scratch, threads), daemon=True)
        self._process.start()
        self.version = self._connection.recv()  # once it is loaded

    def write(self, quantization: str, prompts: list[list[int]], n: int) -> list[list[int]]:
        """n greedy tokens after each prompt, in one batch, never stopping early."""
        self._connection.send((quantization, prompts, n))
        return self._connection.recv()

    def close(self):
        self._connection.send(None)
        self._process.join(timeout=60)


def _serve(connection, model_dir: str, scratch: str, threads: int):
    """The peer's process: convert and load the model, then write what it is asked for until told to stop."""
    import ctranslate2
    generators = {quantization: ctranslate2.Generator(convert(model_dir, scratch, quantization), device="cpu",
                                                      inter_threads=1, intra_threads=threads)
                  for quantization in QUANTIZATIONS}
    connection.send(ctranslate2.__version__)
    while (asked := connection.recv()) is not None:
        quantization, prompts, n = asked
        results = generators[quantization].generate_batch([tokens(ids) for ids in prompts], max_length=n,
                                                          min_length=n, sampling_topk=1, include_prompt_in_result=False)
        connection.send([result.sequences_ids[0] for result in results])


def convert(model_dir: str, scratch: str, quantization: str) -> str:
    """The checkpoint as a CTranslate2 model (float32 or int8), with GPT-2's tokenizer files beside it."""
    from ctranslate2.converters import TransformersConverter
    source = Path(scratch) / "with-tokenizer"
    if not source.exists():
        shutil.copytree(model_dir, source)
        shutil.copy(ASSETS / "encoder.json", source / "vocab.json")
        shutil.copy(ASSETS / "vocab.bpe", source / "merges.txt")
    out = Path(scratch) / f"ctranslate2-{quantization}"
    return TransformersConverter(str(source)).convert(str(out), quantization=quantization, force=True)


def class_prompts() -> list[list[int]]:
    """CLASS_SIZE prompts of English, 8 to 14 tokens each, each starting at another place of the text."""
    text = prompt(5 * CLASS_SIZE + 14)
    return [text[5 * i:5 * i + 8 + i % 7] for i in range(CLASS_SIZE)]


def ours_class(model, prompts: list[list[int]], n: int):
    """Our engine serving every prompt at once, n greedy tokens each; its loop on the calling thread."""
    settings = SamplingSettings(max_new_tokens=n, temperature=0, top_k=None, stop_at_eot=False)

    def run() -> list[list[int]]:
        engine = Engine(model, max_rows=len(prompts), max_cache_bytes=2**30, thread=False)
        requests = [engine.submit(ids, settings) for ids in prompts]
        written = []

        def read():  # the students: each request's tokens, then the loop may end
            written.extend(list(request) for request in requests)
            engine.close()
        reader = threading.Thread(target=read)
        reader.start()
        engine.run()
        reader.join()
        return written
    return run


def tokens(ids: list[int]) -> list[str]:
    """Token ids as the BPE strings CTranslate2 takes."""
    return [VOCABULARY[i] for i in ids]
