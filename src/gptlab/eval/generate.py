"""Free-form answers for generate_until tasks, under lm-evaluation-harness's contract.

Each request is (context, generation_kwargs): generate at most `max_gen_toks` tokens (default 256, as the
harness), stop at `<|endoftext|>` or the first `until` string and cut the text there; greedy unless
`do_sample`; beam search when `num_beams` > 1 (the rules of `transformers`, whose defaults the harness gets:
length_penalty 1.0, early_stopping False; GPT-3 used 4 beams and 0.6). A context too long for the model
loses its start, keeping room for `max_gen_toks`, as the harness cuts it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from gptlab.errors import GptlabError
from gptlab.generation.params import EarlyStopping, SamplingParams
from gptlab.language_model import encode_prompt

if TYPE_CHECKING:
    from gptlab.language_model import LanguageModel

DEFAULT_MAX_GEN_TOKS = 256


@dataclass(frozen=True)
class GenerationSettings:
    """One request's generation_kwargs, checked; requests with equal settings are batched together."""

    until: tuple[str, ...] = ()
    max_gen_toks: int = DEFAULT_MAX_GEN_TOKS
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    num_beams: int = 1
    length_penalty: float = 1.0
    early_stopping: EarlyStopping = False

    @classmethod
    def parse(cls, kwargs: dict[str, Any]) -> GenerationSettings:
        unknown = sorted(set(kwargs) - set(cls.__dataclass_fields__))
        if unknown:
            raise GptlabError(
                f"generation_kwargs: {', '.join(unknown)} not supported (supported: "
                f"{', '.join(cls.__dataclass_fields__)})"
            )
        options = dict(kwargs)
        until = options.pop("until", None)
        if isinstance(until, str):
            until = [until]
        if until is None:
            until = []
        if not isinstance(until, list | tuple) or not all(isinstance(s, str) for s in until):
            raise GptlabError(f"generation_kwargs: until must be a string or a list of strings, got {until!r}")
        settings = cls(until=tuple(s for s in until if s), **options)
        settings._check()  # before the settings are hashed: a list where a number belongs would fail there
        return settings

    def _check(self) -> None:
        def fail(name: str, wanted: str) -> None:
            raise GptlabError(f"generation_kwargs: {name} must be {wanted}, got {getattr(self, name)!r}")

        for name in ("max_gen_toks", "num_beams"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                fail(name, "a positive integer")
        if type(self.do_sample) is not bool:
            fail("do_sample", "true or false")
        if type(self.temperature) not in (int, float) or self.temperature < 0:
            fail("temperature", "a number >= 0")
        if self.top_k is not None and (type(self.top_k) is not int or self.top_k < 1):
            fail("top_k", "a positive integer")
        if self.top_p is not None and (type(self.top_p) not in (int, float) or not 0 < self.top_p <= 1):
            fail("top_p", "a number in (0, 1]")
        if type(self.length_penalty) not in (int, float):
            fail("length_penalty", "a number")
        if self.early_stopping not in (True, False, "never"):
            fail("early_stopping", "true, false or 'never'")
        if self.num_beams > 1 and self.do_sample:
            raise GptlabError("generation_kwargs: beam search with do_sample (beam sampling) is not supported")

    def sampling(self, seed: int | None) -> SamplingParams:
        """Greedy (or beams) unless do_sample, as `transformers` decides (temperature alone does not sample)."""
        if not self.do_sample:
            return SamplingParams(
                max_new_tokens=self.max_gen_toks, temperature=0.0, stop=self.until, truncate=True,
                num_beams=self.num_beams, length_penalty=self.length_penalty, early_stopping=self.early_stopping,
            )
        return SamplingParams(
            max_new_tokens=self.max_gen_toks, temperature=self.temperature, top_k=self.top_k, top_p=self.top_p,
            seed=seed, stop=self.until, truncate=True,
        )


def generate_until(
    lm: LanguageModel,
    requests: list[tuple[str, dict[str, Any]]],
    batch_size: int = 8,
    progress: bool = False,
    *,
    seed: int | None = None,
) -> list[str]:
    """The continuation of each (context, generation_kwargs) request, cut before its first stop string, over
    the model's engine: at most `batch_size` requests decode at once (each beam takes a slot of its own).

    `seed` seeds sampled requests (do_sample), each request's generator alike.
    """
    if batch_size < 1:
        raise GptlabError(f"batch_size must be at least 1, got {batch_size}")
    tokenizer = lm.require_tokenizer()
    n_ctx = lm.model.config.n_ctx
    groups: dict[GenerationSettings, list[int]] = {}
    for i, (_, kwargs) in enumerate(requests):
        groups.setdefault(GenerationSettings.parse(kwargs), []).append(i)
    for settings in groups:
        if settings.max_gen_toks >= n_ctx:
            raise GptlabError(
                f"max_gen_toks {settings.max_gen_toks} leaves no room for a context in the model's context of "
                f"{n_ctx} tokens; set a smaller max_gen_toks in the task's generation_kwargs"
            )
    outputs = [""] * len(requests)
    with tqdm(total=len(requests), disable=not progress, desc="generate_until", unit="req") as bar:
        for settings, rows in groups.items():
            rows = sorted(rows, key=lambda r: -len(requests[r][0]))  # similar lengths decode together
            engine = lm.engine(batch_size * settings.num_beams)
            prompts = [encode_prompt(tokenizer, requests[r][0]) for r in rows]
            for i, output in engine.run(prompts, settings.sampling(seed)):
                outputs[rows[i]] += output.text
                bar.update(output.finish_reason is not None)
    return outputs
