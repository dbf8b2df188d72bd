"""A model with its tokenizer, as `gptlab.load` returns it: text in, text out, over one long-lived engine.

The engine (gptlab.engine) is built on the first generation and kept: later calls, beams included, reuse
its KV cache; it is rebuilt only when a call needs more slots than it has or the model has moved to
another device or dtype. Like the engine, a LanguageModel generates from one thread at a time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gptlab.checkpoint.io import Checkpoint, load_checkpoint, save
from gptlab.engine import Engine
from gptlab.errors import GptlabError
from gptlab.generation.params import SamplingParams
from gptlab.model import GPT
from gptlab.model.quantize import Precision
from gptlab.tokenizer import Tokenizer


@dataclass(eq=False)
class LanguageModel(Checkpoint):
    """`model` is a TaskModel for a GPT-1 fine-tuned checkpoint; it generates as its GPT does.

    `inference_layout`: the engine may re-lay the weights for faster decoding (values unchanged). Off for a
    model that is still training, whose parameters the engine then shares as they are.
    """

    inference_layout: bool = True
    _engine: Engine | None = field(default=None, init=False, repr=False)

    def require_tokenizer(self) -> Tokenizer:
        if self.tokenizer is None:
            raise GptlabError(f"checkpoint {self.path} has no tokenizer files (vocab.json + merges.txt)")
        return self.tokenizer

    def engine(self, slots: int = 1) -> Engine:
        """The engine this model generates with, holding at least `slots` KV-cache slots (a beam request takes
        one per beam). Built on first use; rebuilt, never smaller, only when it must be."""
        engine, weight = self._engine, self.model.wte.weight
        if (
            engine is None or engine.model is not self.model or engine.tokenizer is not self.tokenizer
            or engine.max_batch < slots or engine.device != weight.device or engine.dtype != weight.dtype
        ):
            slots = max(slots, engine.max_batch if engine is not None else 1)
            self._engine = Engine(self.model, self.tokenizer, max_batch=slots, inference_layout=self.inference_layout)
        return self._engine

    def stream_batch(
        self, prompts: list[str], params: SamplingParams, batch_size: int | None = None
    ) -> Iterator[tuple[int, str]]:
        """(prompt index, text piece) as tokens are generated, each prompt finishing on its own; at most
        `batch_size` prompts (default: all) decode at once. Beams give their best text when they finish."""
        tokenizer = self.require_tokenizer()
        engine = self.engine((batch_size or len(prompts)) * params.num_beams)
        for row, output in engine.run([encode_prompt(tokenizer, p) for p in prompts], params):
            if output.text:
                yield row, output.text

    def stream(self, prompt: str, **options: Any) -> Iterator[str]:
        """Yield the completion of one prompt piece by piece (options: see SamplingParams)."""
        for _, piece in self.stream_batch([prompt], sampling_params(options)):
            yield piece

    def generate(self, prompt: str | list[str], **options: Any) -> str | list[str]:
        """Complete one prompt or a batch of them (options: see SamplingParams); returns only the generated text."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        out = [""] * len(prompts)
        for row, piece in self.stream_batch(prompts, sampling_params(options)):
            out[row] += piece
        return out[0] if isinstance(prompt, str) else out

    def save(self, path: str | os.PathLike) -> Path:
        return save(path, self.model, self.tokenizer)


def load(path: str | os.PathLike, device: str | torch.device = "cpu", precision: Precision = "fp32") -> LanguageModel:
    """Load a checkpoint directory written by gptlab (see gptlab.checkpoint.io.load_checkpoint)."""
    checkpoint = load_checkpoint(path, device, precision)
    return LanguageModel(checkpoint.model, checkpoint.tokenizer, checkpoint.path)


def generate(model: GPT, tokenizer: Tokenizer, prompt: str | list[str], **options: Any) -> str | list[str]:
    """`LanguageModel.generate` for a bare model, e.g. one being trained: its weights are left as they are."""
    return LanguageModel(model, tokenizer, inference_layout=False).generate(prompt, **options)


def stream(model: GPT, tokenizer: Tokenizer, prompt: str, **options: Any) -> Iterator[str]:
    """`LanguageModel.stream` for a bare model, e.g. one being trained: its weights are left as they are."""
    return LanguageModel(model, tokenizer, inference_layout=False).stream(prompt, **options)


def encode_prompt(tokenizer: Tokenizer, prompt: str) -> list[int]:
    ids = tokenizer.encode(prompt)
    if ids:
        return ids
    if tokenizer.eot_id is None:
        raise GptlabError("empty prompt, and the tokenizer has no <|endoftext|> to start an unconditional sample from")
    return [tokenizer.eot_id]  # GPT-2 convention: unconditional samples start from <|endoftext|>


def sampling_params(options: dict[str, Any]) -> SamplingParams:
    """Keyword options as SamplingParams; `stop` may be one string."""
    if isinstance(options.get("stop"), str):
        options["stop"] = (options["stop"],)
    return SamplingParams(**options)
