"""Text in, text out, over the engine: prompts are encoded, completions streamed as they are made."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from gptlab.engine import Engine
from gptlab.errors import GptlabError
from gptlab.generation.params import SamplingParams
from gptlab.model import GPT
from gptlab.tokenizer import Tokenizer


def encode_prompt(tokenizer: Tokenizer, prompt: str) -> list[int]:
    ids = tokenizer.encode(prompt)
    if ids:
        return ids
    if tokenizer.eot_id is None:
        raise GptlabError("empty prompt, and the tokenizer has no <|endoftext|> to start an unconditional sample from")
    return [tokenizer.eot_id]  # GPT-2 convention: unconditional samples start from <|endoftext|>


def stream_batch(model: GPT, tokenizer: Tokenizer, prompts: list[str], params: SamplingParams) -> Iterator[tuple[int, str]]:
    """Yield (prompt index, text piece) as tokens are generated, each prompt finishing on its own."""
    engine = Engine(model, tokenizer, max_batch=len(prompts))
    for row, output in engine.run([encode_prompt(tokenizer, p) for p in prompts], params):
        if output.text:
            yield row, output.text


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
