"""GPT-2's byte-pair encoding, built offline from the two files OpenAI published.

`tiktoken.get_encoding("gpt2")` downloads these files on first use; a classroom behind a firewall
has no network, so the project ships them in `model/assets/` and checks their sha256 sums.
"""
import codecs
import functools
import hashlib
from pathlib import Path

import tiktoken
from tiktoken.load import data_gym_to_mergeable_bpe_ranks
from tiktoken_ext.openai_public import ENDOFTEXT, r50k_pat_str

ASSETS = Path(__file__).parent / "assets"
# The sums tiktoken itself pins for these files: a damaged copy fails loudly, not subtly.
VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
EOT_TOKEN = 50256


@functools.cache
def gpt2_encoding() -> tiktoken.Encoding:
    """The `gpt2` tiktoken encoding, identical to `tiktoken.get_encoding("gpt2")`, no network."""
    ranks = data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=_checked(ASSETS / "vocab.bpe", VOCAB_BPE_SHA256),
        encoder_json_file=_checked(ASSETS / "encoder.json", ENCODER_JSON_SHA256),
        vocab_bpe_hash=VOCAB_BPE_SHA256,
        encoder_json_hash=ENCODER_JSON_SHA256,
    )
    return tiktoken.Encoding(
        name="gpt2",
        pat_str=r50k_pat_str,
        mergeable_ranks=ranks,
        special_tokens={ENDOFTEXT: EOT_TOKEN},
        explicit_n_vocab=50257,
    )


def _checked(path: Path, sha256: str) -> str:
    """The file's path, once its sha256 is the pinned one. Checked here, not left to tiktoken, which
    skips its own check when TIKTOKEN_CACHE_DIR is set to "" (caching off)."""
    if hashlib.sha256(path.read_bytes()).hexdigest() != sha256:
        raise ValueError(f"{path} is damaged: its sha256 is not the pinned {sha256}; restore it (git checkout)")
    return str(path)


def encode(text: str) -> list[int]:
    """Tokens for `text`. A literal "<|endoftext|>" in user text is just text, never an error."""
    return gpt2_encoding().encode(text, disallowed_special=())


def decode(tokens: list[int]) -> str:
    return gpt2_encoding().decode(tokens)


class TextStream:
    """Turns tokens into text pieces as soon as they are whole characters.

    One character (an emoji, say) can be split across two tokens; printing each token's bytes on
    its own would show a replacement character. The UTF-8 incremental decoder holds back an
    unfinished character until the token that completes it arrives.
    """

    def __init__(self):
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token: int) -> str:
        return self._utf8.decode(gpt2_encoding().decode_single_token_bytes(token))

    def flush(self) -> str:
        """Whatever is still held back at the end (an unfinished character shows as U+FFFD)."""
        return self._utf8.decode(b"", final=True)
