"""The reference: transformers' GPT2LMHeadModel with OpenAI's weights, from the hub or a folder.

Everything about getting those weights lives here: which device, whether the hub can be reached,
which files are trusted (safetensors, not pickles), and a random stand-in of a hub model's shape for
when the weights cannot be had at all.
"""
import os
import urllib.parse
import urllib.request
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel


class ModelLoadError(Exception):
    """The reference weights cannot be had; the message says why and what to do."""


class HubUnreachableError(ModelLoadError):
    """A hub id with nothing cached, and no way to the hub: the one case the app may run on random weights.

    Any other failure (a download that broke off, a damaged file) is worth fixing, not papering over.
    """


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


# What a command says when Ctrl-C stops it. huggingface_hub downloads into a temporary file and gives it the
# weights' name only once every byte is there, so an interrupted download leaves nothing that could later pass
# for the weights.
INTERRUPTED = "error: interrupted. A download under way keeps nothing partial: run the command again to start it over"


def load_reference(name_or_dir: str, device: str = "auto", allow_pickle: bool = False) -> GPT2LMHeadModel:
    """transformers' GPT2LMHeadModel in float32, eval mode, on `device`.

    name_or_dir: a hub id (gpt2, gpt2-medium, openai-community/gpt2, ...) or a folder written by
    `save_pretrained`. Weights load from safetensors only, unless allow_pickle permits a
    pytorch_model.bin (unpickling a file can run code hidden in it).
    """
    target = resolve_device(device)
    local = Path(name_or_dir).expanduser()
    from_hub = not local.is_dir()
    if not from_hub:
        _check_local_checkpoint(local, allow_pickle)
        source = str(local)
    elif _looks_like_path(name_or_dir):
        raise ModelLoadError(f"no folder at {name_or_dir!r}: pass a folder written by save_pretrained, "
                             f"or a hub id such as gpt2")
    else:
        source = name_or_dir
        if not _hub_cached(name_or_dir, allow_pickle) and (why := _hub_unreachable()):
            raise HubUnreachableError(
                f"cannot load {name_or_dir!r}: no network and no cached copy ({why}). Run once with a network "
                f"(the weights are cached for later; a proxy is set with HTTPS_PROXY, a mirror with HF_ENDPOINT), "
                f"or pass a folder saved with save_pretrained: --model ./gpt2-local")
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
        if from_hub and not _hub_cached(name_or_dir, allow_pickle):
            # The hub answered, yet the weights are not in the cache: their download broke off. huggingface_hub
            # writes to a temporary file and renames it only once every byte is there, so nothing partial is kept.
            raise ModelLoadError(
                f"cannot load {name_or_dir!r}: its weights did not finish downloading from {_endpoint()} "
                f"({_first_line(_innermost(error))}). Nothing partial was kept: run the command again (on a slow "
                f"link, HF_HUB_DOWNLOAD_TIMEOUT=60 waits longer for each piece)") from None
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


def _hub_cached(repo_id: str, allow_pickle: bool = False) -> bool:
    """Whether a download of `repo_id` completed here before: its config and its weights are in the cache."""
    from huggingface_hub import try_to_load_from_cache

    def cached(filename):
        return isinstance(try_to_load_from_cache(repo_id, filename), str)

    weights = ["model.safetensors"] + (["pytorch_model.bin"] if allow_pickle else [])
    return cached("config.json") and any(map(cached, weights))


def _hub_unreachable() -> str | None:
    """Why the hub cannot be asked, or None when it answers.

    A quick look first, because without a network the download itself retries, waiting longer each time.
    It asks the way the download will: huggingface_hub's own HTTP session, so the endpoint's scheme,
    host and port (HF_ENDPOINT, a mirror), the proxies of the environment (HTTPS_PROXY, HTTP_PROXY,
    NO_PROXY) and offline mode all apply; and its own timeout for such a question (HF_HUB_ETAG_TIMEOUT).
    Any HTTP answer counts, an error status too: something is there, and the download will say what.
    """
    from huggingface_hub import constants, get_session
    if constants.is_offline_mode():
        return "HF_HUB_OFFLINE is set, so the hub is not asked"
    try:
        get_session().head(_endpoint(), timeout=constants.HF_HUB_ETAG_TIMEOUT)
    except Exception as error:  # noqa: BLE001 - whatever stops the request, the hub did not answer
        proxy = _proxy_for(_endpoint())
        through = f" through the proxy {proxy}" if proxy else ""
        return f"the hub at {_endpoint()}{through} did not answer: {_first_line(_innermost(error))}"
    return None


def _proxy_for(url: str) -> str | None:
    """The proxy the environment names for `url`, if any: for the message, when it may be the proxy that failed."""
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    return None if proxy is None or urllib.request.proxy_bypass(parts.hostname or "") else proxy


def _endpoint() -> str:
    from huggingface_hub import constants
    return constants.ENDPOINT


def _innermost(error: BaseException) -> BaseException:
    """The first cause in a chain of wrapped errors: the one that says what actually happened."""
    while (cause := error.__cause__ or error.__context__) is not None:
        error = cause
    return error


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
