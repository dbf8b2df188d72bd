"""Text in, text out: prompts are encoded, tokens decoded incrementally, stop strings honoured.

Streaming must never emit half a UTF-8 character nor text that later turns out to begin a stop
string, so each row keeps an incremental UTF-8 decoder and holds back any tail that could still
grow into a stop string.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from typing import Any

from gptlab.errors import GptlabError
from gptlab.generation.decode import Decoder
from gptlab.generation.params import SamplingParams
from gptlab.model import GPT
from gptlab.tokenizer import Tokenizer


class TextStream:
    """Turns one row's token bytes into safe-to-show text pieces."""

    def __init__(self, stop: tuple[str, ...]):
        self.stop = stop
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.held = ""
        self.stopped = False

    def push(self, data: bytes) -> str:
        self.held += self.decoder.decode(data)
        hits = [i for i in (self.held.find(s) for s in self.stop) if i >= 0]
        if hits:
            self.stopped = True
            piece, self.held = self.held[: min(hits)], ""
            return piece
        keep = max((_overlap(self.held, s) for s in self.stop), default=0)
        piece, self.held = self.held[: len(self.held) - keep], self.held[len(self.held) - keep :]
        return piece

    def close(self) -> str:
        if self.stopped:
            return ""
        piece, self.held = self.held + self.decoder.decode(b"", final=True), ""
        return piece


def _overlap(text: str, stop: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `stop`."""
    for n in range(min(len(text), len(stop) - 1), 0, -1):
        if text.endswith(stop[:n]):
            return n
    return 0


def _encode_prompt(tokenizer: Tokenizer, prompt: str) -> list[int]:
    ids = tokenizer.encode(prompt)
    if ids:
        return ids
    if tokenizer.eot_id is None:
        raise GptlabError("empty prompt, and the tokenizer has no <|endoftext|> to start an unconditional sample from")
    return [tokenizer.eot_id]  # GPT-2 convention: unconditional samples start from <|endoftext|>


def stream_batch(model: GPT, tokenizer: Tokenizer, prompts: list[str], params: SamplingParams) -> Iterator[tuple[int, str]]:
    """Yield (prompt index, text piece) as tokens are generated, rows finishing independently."""
    decoder = Decoder(model, [_encode_prompt(tokenizer, p) for p in prompts], params, tokenizer.vocab_size)
    streams = [TextStream(params.stop) for _ in prompts]
    eot = tokenizer.eot_id
    while not decoder.done:
        finished = set()
        for row, token in decoder.step().items():
            text = streams[row]
            piece = "" if token == eot else text.push(tokenizer.decode_bytes([token]))
            if token == eot or text.stopped:
                finished.add(row)
                piece += text.close()
            if piece:
                yield row, piece
        decoder.finish(finished)
    for row in decoder.rows.tolist():
        if piece := streams[row].close():
            yield row, piece


def _params(options: dict[str, Any]) -> SamplingParams:
    if isinstance(options.get("stop"), str):
        options["stop"] = (options["stop"],)
    return SamplingParams(**options)


def stream(model: GPT, tokenizer: Tokenizer, prompt: str, **options: Any) -> Iterator[str]:
    """Yield the completion of one prompt piece by piece (options: see SamplingParams)."""
    for _, piece in stream_batch(model, tokenizer, [prompt], _params(options)):
        yield piece


def generate(model: GPT, tokenizer: Tokenizer, prompt: str | list[str], **options: Any) -> str | list[str]:
    """Complete one prompt or a batch of them; returns only the generated text."""
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    out = [""] * len(prompts)
    for row, piece in stream_batch(model, tokenizer, prompts, _params(options)):
        out[row] += piece
    return out[0] if isinstance(prompt, str) else out
