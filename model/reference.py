"""The reference: transformers' GPT2LMHeadModel with OpenAI's weights, from the hub or a folder.

Everything about getting those weights lives here: which device, whether the hub can be reached,
which files are trusted (safetensors, not pickles), and a random stand-in of a hub model's shape for
when the weights cannot be had at all.
"""
import os
import socket
import urllib.parse
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel


class ModelLoadError(Exception):
    """The reference weights cannot be had; the message says why and what to do."""


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks cuda, then mps, then cpu; a named device that is absent is an error."""
    available = {
        "cuda": torch.cuda.is_available(),
        "mps": torch.backends.mps.is_available(),
        "cpu": True,
    }
    if name == "auto":
        return torch.device(next(kind for kind, present in available.items() if present))
    kind = name.split(":")[0]
    if kind not in available:
        raise ModelLoadError(f"unknown device {name!r}: use auto, cpu, cuda or mps")
    if not available[kind]:
        raise ModelLoadError(f"device {name!r} was asked for, but torch sees none on this machine: "
                             f"use --device auto (picks what is there) or --device cpu")
    return torch.device(name)


def load_reference(name_or_dir: str, device: str = "auto", allow_pickle: bool = False) -> GPT2LMHeadModel:
    """transformers' GPT2LMHeadModel in float32, eval mode, on `device`.

    name_or_dir: a hub id (gpt2, gpt2-medium, openai-community/gpt2, ...) or a folder written by
    `save_pretrained`. Weights load from safetensors only, unless allow_pickle permits a
    pytorch_model.bin (unpickling a file can run code hidden in it).
    """
    target = resolve_device(device)
    local = Path(name_or_dir).expanduser()
    if local.is_dir():
        _check_local_checkpoint(local, allow_pickle)
        source = str(local)
    elif _looks_like_path(name_or_dir):
        raise ModelLoadError(f"no folder at {name_or_dir!r}: pass a folder written by save_pretrained, "
                             f"or a hub id such as gpt2")
    else:
        source = name_or_dir
        if not _hub_cached(name_or_dir) and not _hub_reachable():
            raise ModelLoadError(
                f"cannot load {name_or_dir!r}: no network and no cached copy. Run once with a network "
                f"(the weights are cached for later), or pass a folder saved with save_pretrained: "
                f"--model ./gpt2-local")
    try:
        config, _ = GPT2Config.get_config_dict(source)  # the plain dict: its model_type is the checkpoint's own
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"cannot read a GPT-2 config from {name_or_dir!r}: {_first_line(error)}") from None
    if config.get("model_type") != "gpt2":
        raise ModelLoadError(f"{name_or_dir!r} is a {config.get('model_type')!r} checkpoint, not GPT-2")
    try:
        # device_map hands placement to accelerate: tensors go straight to the device, no CPU copy first.
        reference = GPT2LMHeadModel.from_pretrained(
            source, dtype=torch.float32, device_map=str(target),
            use_safetensors=None if allow_pickle else True)
    except Exception as error:  # noqa: BLE001 - every cause gets one readable line
        raise ModelLoadError(f"cannot load the weights of {name_or_dir!r}: {_first_line(error)} "
                             f"(a truncated or damaged file? download or save it again)") from None
    reference.eval().requires_grad_(False)  # read-only: the reference is what we check against
    return reference


def _check_local_checkpoint(folder: Path, allow_pickle: bool):
    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"{str(folder)!r} is not a GPT-2 checkpoint: it has no config.json "
                             f"(make one with GPT2LMHeadModel.save_pretrained)")
    has_safetensors = any(folder.glob("*.safetensors"))
    has_pickle = any(folder.glob("pytorch_model*.bin"))
    if not has_safetensors and not (allow_pickle and has_pickle):
        hint = (" It has a pickle checkpoint (pytorch_model.bin): convert it with save_pretrained, "
                "or pass --allow-pickle if you trust its source." if has_pickle else "")
        raise ModelLoadError(f"{str(folder)!r} has no .safetensors weights.{hint}")


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or os.sep in name and name.count("/") != 1


def _hub_cached(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache
    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick look before asking the hub: without a network it would retry for half a minute."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    from huggingface_hub import constants
    host = urllib.parse.urlparse(constants.ENDPOINT).hostname
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


# --- no weights at hand -------------------------------------------------------------------------

# The hub models' shapes (GPT2Config's defaults are gpt2's), so a stand-in can be built offline.
HUB_SHAPES = {
    "gpt2": {},
    "gpt2-medium": dict(n_layer=24, n_head=16, n_embd=1024),
    "gpt2-large": dict(n_layer=36, n_head=20, n_embd=1280),
    "gpt2-xl": dict(n_layer=48, n_head=25, n_embd=1600),
}


def random_reference(name: str, device: str = "auto") -> GPT2LMHeadModel:
    """A randomly initialised GPT2LMHeadModel of hub model `name`'s shape, for when its weights
    cannot be had: loading and verifying work the same, but the text it writes is gibberish."""
    shape = HUB_SHAPES.get(name.removeprefix("openai-community/"))
    if shape is None:
        raise ModelLoadError(f"no random stand-in for {name!r}: one exists for {', '.join(HUB_SHAPES)}")
    target = resolve_device(device)
    with torch.random.fork_rng(devices=[]):  # the same stand-in every time, global RNG untouched
        torch.manual_seed(0)
        reference = GPT2LMHeadModel(GPT2Config(**shape))
    return reference.to(target).eval().requires_grad_(False)
