"""GPT-2 checkpoints made on the spot: real transformers models, saved the way the hub serves them.

No network here, so tests and benchmarks cannot download OpenAI's weights; they build
`GPT2LMHeadModel`s from `GPT2Config` with fixed seeds and `save_pretrained` them to a folder, which
the product then loads through the very path a hub id takes.
"""
import shutil
from pathlib import Path

import torch
from transformers import BertConfig, GPT2Config, GPT2LMHeadModel

from model.tokenizer import EOT_TOKEN, encode

TINY = dict(n_layer=2, n_head=2, n_embd=32, n_positions=64)
GPT2_SMALL = dict(n_layer=12, n_head=12, n_embd=768, n_positions=1024)  # gpt2's shape
# Shapes and settings no GPT-2 on the hub has, so a value hard-coded anywhere shows up.
# The student check's zoo: GPT-2's proportions, small, with weights of GPT-2's scale (initializer_range 0.1) so
# that exact GELU, a LayerNorm's epsilon and the causal mask each move the numbers past the tolerance.
ZOO = dict(n_layer=2, n_head=4, n_embd=64, n_positions=64)
ZOO_INIT = 0.1
ODD = dict(n_positions=48, n_layer=3, n_head=4, n_embd=64, n_inner=80, layer_norm_epsilon=1e-2)
# OpenAI's gpt2 counted three ways, the totals people quote for the same model:
GPT2_PARAMETERS = 124_439_808  # every tensor once: transformers' num_parameters() ("124M" on the model card)
GPT2_UNTIED_PARAMETERS = 163_037_184  # lm_head counted again: a sum over the state dict's 149 tensors ("163M")
GPT2_NON_EMBEDDING_PARAMETERS = 85_056_000  # without wte and wpe, as scaling laws count (Kaplan et al. 2020: "85M")
# What the trained checkpoint learns by heart, and the prompts that start each recitation.
MEMORISED = [
    "The capital of France is Paris, and the capital of Italy is Rome.",
    "Once upon a time in a land far away there lived a wise old owl.",
    "The transformer architecture consists of attention and feed-forward layers.",
]
RECITATION_PROMPTS = ["The capital of France is", "Once upon a time in a land", "The transformer architecture"]


def build_checkpoint(folder: Path, seed: int = 0, initializer_range: float = 0.02, **shape) -> Path:
    """A randomly initialised GPT-2 of the given shape, saved with save_pretrained (safetensors)."""
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(initializer_range=initializer_range, **shape))
    model.save_pretrained(folder)
    return folder


def build_trained_checkpoint(folder: Path, seed: int = 0, steps: int = 200, sentences=tuple(MEMORISED)) -> Path:
    """A tiny GPT-2 trained until it recites `sentences`, with the real GPT-2 tokenizer.

    A few seconds of Adam on a few sentences: enough for greedy decoding to reproduce each
    continuation exactly, which a wrongly loaded copy of the same weights cannot do.
    """
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=4, n_embd=64, n_positions=64))
    rows = [encode(sentence) + [EOT_TOKEN] for sentence in sentences]
    width = max(map(len, rows))
    batch = torch.tensor([row + [EOT_TOKEN] * (width - len(row)) for row in rows])
    labels = torch.tensor([row + [-100] * (width - len(row)) for row in rows])  # padding teaches nothing
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    model.train()
    for _ in range(steps):
        loss = model(batch, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval().save_pretrained(folder)
    return folder


# --- checkpoints that must not load: each takes a good checkpoint folder and a scratch folder ---------

def copy_of(folder: Path, tmp_path: Path) -> Path:
    return shutil.copytree(folder, tmp_path / "copy")


def without_config(folder: Path, tmp_path: Path) -> Path:
    copy = copy_of(folder, tmp_path)
    (copy / "config.json").unlink()
    return copy


def pickle_only(folder: Path, tmp_path: Path) -> Path:
    copy = copy_of(folder, tmp_path)
    reference = GPT2LMHeadModel.from_pretrained(copy)
    torch.save(reference.state_dict(), copy / "pytorch_model.bin")
    (copy / "model.safetensors").unlink()
    return copy


def truncated(folder: Path, tmp_path: Path) -> Path:
    """An interrupted download or copy: the weights file cut in half."""
    copy = copy_of(folder, tmp_path)
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return copy


def corrupted_header(folder: Path, tmp_path: Path) -> Path:
    """The weights file with its first bytes (the length of its JSON header) overwritten."""
    return _overwritten(copy_of(folder, tmp_path), at=0)


def corrupted_values(folder: Path, tmp_path: Path) -> Path:
    """The weights file with bytes overwritten past its header, among the numbers (which stay finite)."""
    copy = copy_of(folder, tmp_path)
    header_length = int.from_bytes((copy / "model.safetensors").read_bytes()[:8], "little")  # then the JSON
    return _overwritten(copy, at=8 + header_length + 1024)


def _overwritten(copy: Path, at: int) -> Path:
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[at:at + 64] = b"\x01" * 64
    weights.write_bytes(bytes(data))
    return copy


def not_gpt2(folder: Path, tmp_path: Path) -> Path:
    bert = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    bert.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").touch()
    return tmp_path


def missing(folder: Path, tmp_path: Path) -> Path:
    return tmp_path / "nowhere"
