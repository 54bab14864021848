"""GPT-2's tokenizer, offline, from the shipped files: the same tokens tiktoken's own `gpt2` gives."""
import hashlib
import shutil

import pytest
import tiktoken

from model import tokenizer
from model.tokenizer import EOT_TOKEN, TextStream, decode, encode, gpt2_encoding

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TEXTS = [
    "Hello world",
    "The meaning of life is",
    "  leading spaces, trailing spaces   \n\nand\ttabs",
    "def f(x):\n    return x ** 2  # code",
    "naïve café, Straße, 日本語, Ελληνικά",
    "Owls say hoo 🦉, 👍🏽 and 😀!",
    "numbers 1234567 and 3.14159 and 1e-5",
    "text with <|endoftext|> inside",
]
# tiktoken downloads these itself for get_encoding("gpt2"); we hand it the shipped copies instead.
TIKTOKEN_URLS = {
    "vocab.bpe": "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
    "encoder.json": "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
}


@pytest.fixture
def tiktoken_gpt2(tmp_path, monkeypatch):
    """tiktoken's own `gpt2` encoding: its URLs, its pinned hashes, its constructor, fed from its cache."""
    for name, url in TIKTOKEN_URLS.items():
        shutil.copy(tokenizer.ASSETS / name, tmp_path / hashlib.sha1(url.encode()).hexdigest())
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})  # build it now, from this cache
    return tiktoken.get_encoding("gpt2")


def test_hello_world_is_15496_995():
    assert encode("Hello world") == [15496, 995]


def test_offline_encoding_is_tiktokens_gpt2(tiktoken_gpt2):
    ours = gpt2_encoding()
    assert (ours.n_vocab, ours.eot_token) == (tiktoken_gpt2.n_vocab, tiktoken_gpt2.eot_token) == (50257, EOT_TOKEN)
    assert [encode(text) for text in TEXTS] == [tiktoken_gpt2.encode_ordinary(text) for text in TEXTS]


def test_every_token_decodes_to_tiktokens_bytes(tiktoken_gpt2):
    ours = gpt2_encoding()
    assert all(ours.decode_single_token_bytes(t) == tiktoken_gpt2.decode_single_token_bytes(t) for t in range(50257))


@pytest.mark.parametrize("name", TIKTOKEN_URLS)
@pytest.mark.parametrize("tiktoken_cache", ["fresh", "off"])
def test_a_damaged_asset_is_refused(tmp_path, monkeypatch, name, tiktoken_cache):
    assets = shutil.copytree(tokenizer.ASSETS, tmp_path / "assets")
    with open(assets / name, "ab") as damage:
        damage.write(b"\n")
    monkeypatch.setattr(tokenizer, "ASSETS", assets)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "cache") if tiktoken_cache == "fresh" else "")
    with pytest.raises(ValueError, match=f"{name} is damaged"):
        gpt2_encoding.__wrapped__()  # uncached: build it again, from the damaged copy


def test_endoftext_in_user_text_is_plain_text():
    ids = encode("before <|endoftext|> after")
    assert EOT_TOKEN not in ids
    assert decode(ids) == "before <|endoftext|> after"


@pytest.mark.parametrize("text", ["🦉", "Owls say hoo 🦉 to the moon", "👍🏽 日本語"])
def test_a_character_split_across_tokens_is_streamed_whole(text):
    ids = encode(text)
    assert "\ufffd" in "".join(decode([t]) for t in ids)  # the premise: token by token, bytes are cut
    stream = TextStream()
    pieces = [stream.push(t) for t in ids] + [stream.flush()]
    assert not any("\ufffd" in piece for piece in pieces)
    assert "".join(pieces) == text
