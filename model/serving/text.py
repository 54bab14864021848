"""Text in, text out: a prompt's tokens, cropped to the context, and the text of the tokens written."""
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from model.gpt import GPT
from model.sampling import SamplingSettings
from model.serving.sequence import context_window, stream
from model.tokenizer import EOT_TOKEN, TextStream, encode


@dataclass(frozen=True)
class Prompt:
    text: str
    ids: list[int]  # the tokens the model reads
    dropped_tokens: int = 0  # tokens cropped from the left because the context is too short

    @property
    def notice(self) -> str | None:
        if not self.dropped_tokens:
            return None
        return (f"The prompt is longer than the model's context: its first {self.dropped_tokens} "
                f"tokens were dropped and the last {len(self.ids)} kept.")


def prepare_prompt(model: GPT, text: str, max_new_tokens: int) -> Prompt:
    """Tokenize and, if the prompt does not fit the context, keep its end."""
    ids = encode(text) or [EOT_TOKEN]  # no text: start from <|endoftext|>, as GPT-2's own samples do
    kept = context_window(ids, max_new_tokens, model.config.n_positions)
    return Prompt(text, kept, len(ids) - len(kept))


def stream_text(tokens: Iterable[int]) -> Iterator[str]:
    """Pieces of the text of `tokens`, each as soon as it is whole text (never half a character)."""
    text = TextStream()
    for token in tokens:
        if piece := text.push(token):
            yield piece
    if tail := text.flush():
        yield tail


def complete(model: GPT, text: str, settings: SamplingSettings) -> str:
    """The whole continuation of `text` that `model` writes alone."""
    prompt = prepare_prompt(model, text, settings.max_new_tokens)
    return "".join(stream_text(stream(model, prompt.ids, settings)))
