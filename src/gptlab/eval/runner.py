"""Run tasks at each K: build the prompts, fit them to the context, score them, aggregate metrics."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gptlab.errors import GptlabError
from gptlab.eval.metrics import ANSWER_PROMPT, Metric, choice_scores, mean_metric, rolling_metrics
from gptlab.eval.scoring import encode_pair, loglikelihood_rolling, score_tokens
from gptlab.eval.tasks import FEWSHOT_SEED, Prompt, Task
from gptlab.files import read_text

if TYPE_CHECKING:
    from gptlab.checkpoint.io import LanguageModel

Pairs = list[tuple[list[int], list[int]]]
REPORTED = {
    "multiple_choice": ("acc", "acc_norm", "acc_token", "acc_uncond"),
    "loglikelihood": ("perplexity", "acc"),
    "loglikelihood_rolling": ("word_perplexity", "byte_perplexity", "bits_per_byte", "token_perplexity"),
    "generate_until": ("exact_match", "f1"),
}
"""What gptlab computes for each output type (multiple choice: all four rules, whatever metric_list says)."""


def warn(message: str) -> None:
    print(f"gptlab: warning: {message}", file=sys.stderr)


def evaluate(
    lm: LanguageModel,
    tasks: Sequence[Task],
    shots: Sequence[int] = (0,),
    *,
    texts: Sequence[Path] = (),
    limit: int | None = None,
    batch_size: int = 16,
    progress: bool = False,
) -> dict[str, Any]:
    """Every task at every K in `shots`, and the perplexity of each text file, as one JSON-able dict."""
    if any(k < 0 for k in shots):
        raise GptlabError(f"--shots must be non-negative, got {list(shots)}")
    if limit is not None and limit < 1:
        raise GptlabError(f"--limit must be at least 1, got {limit}")
    results: dict[str, Any] = {}
    for task in tasks:
        unsupported = [m for m in task.metrics if m not in REPORTED[task.output_type]]
        if unsupported:
            warn(f"task {task.name}: metric {', '.join(unsupported)} is not computed by gptlab eval")
        docs = task.docs[:limit]
        entry = {"source": task.source, "output_type": task.output_type, "split": task.eval_split, "docs": len(docs)}
        if task.output_type == "loglikelihood_rolling":  # no prompt: K changes nothing
            prompts = [task.prompt(i, doc, []) for i, doc in enumerate(docs)]
            metrics = _rolling(lm, [p.target for p in prompts], batch_size, progress)
            entry["shots"] = {str(k): {"metrics": metrics, "shots_mean": 0.0} for k in shots}
        else:
            runner = _TaskRunner(lm, task, batch_size, progress)
            entry["shots"] = {str(k): runner.run(docs, k) for k in shots}
        results[task.name] = entry
    for path in texts:
        metrics = _rolling(lm, [read_text(path)], batch_size, progress)
        results[f"text:{path}"] = {
            "source": str(path), "output_type": "loglikelihood_rolling", "split": None, "docs": 1,
            "shots": {"0": {"metrics": metrics, "shots_mean": 0.0}},
        }
    return {
        "model": str(lm.path) if lm.path else None, "n_ctx": lm.config.n_ctx, "fewshot_seed": FEWSHOT_SEED,
        "limit": limit, "shots": list(shots), "tasks": results,
    }


def _rolling(lm: LanguageModel, texts: list[str], batch_size: int, progress: bool) -> dict[str, dict]:
    logprobs = loglikelihood_rolling(lm, texts, batch_size, progress)
    n_tokens = sum(len(lm.require_tokenizer().encode(t)) for t in texts)
    return {name: m.to_dict() for name, m in rolling_metrics(logprobs, texts, n_tokens).items()}


class _TaskRunner:
    """One task's prompts and scores at each K; unconditional choice scores are shared by all K."""

    def __init__(self, lm: LanguageModel, task: Task, batch_size: int, progress: bool):
        self.lm, self.task, self.batch_size, self.progress = lm, task, batch_size, progress
        self.n_ctx = lm.config.n_ctx
        self.uncond: dict[str, float] = {}

    def run(self, docs: list[dict[str, Any]], k: int) -> dict[str, Any]:
        draw = self.task.sampler()
        fitted = [self._fit(i, doc, draw(k, doc), k) for i, doc in enumerate(docs)]
        prompts = [p for p, _ in fitted]
        capped = sum(p.shots < k for p in prompts)
        if capped:
            warn(f"task {self.task.name}: {capped} of {len(prompts)} prompts do not fit the model's context of "
                 f"{self.n_ctx} tokens with K={k}; they keep as many examples as fit (mean "
                 f"{sum(p.shots for p in prompts) / len(prompts):.1f})")
        kind = self.task.output_type
        metrics = (self._choices if kind == "multiple_choice" else self._loglikelihood if kind == "loglikelihood"
                   else self._generate)(prompts, [pairs for _, pairs in fitted])
        return {"metrics": {name: m.to_dict() for name, m in metrics.items()},
                "shots_mean": sum(p.shots for p in prompts) / len(prompts), "capped": capped}

    def _fit(self, index: int, doc: dict[str, Any], shots: list[dict[str, Any]], k: int) -> tuple[Prompt, Pairs]:
        """The prompt with as many of its drawn examples as fit the context (the first ones kept)."""

        def attempt(n: int) -> tuple[Prompt, Pairs] | None:
            prompt = self.task.prompt(index, doc, shots[:n])
            if self.task.output_type == "generate_until":
                fits = len(self.lm.require_tokenizer().encode(prompt.context)) < self.n_ctx
                return (prompt, []) if fits else None
            pairs = [encode_pair(self.lm, prompt.context, c) for c in prompt.continuations]
            return (prompt, pairs) if all(len(a) + len(b) <= self.n_ctx + 1 for a, b in pairs) else None

        if (whole := attempt(len(shots))) is not None:
            return whole
        low, high = 0, len(shots) - 1  # the largest n in [low, high] that fits, if any
        best = None
        while low <= high:
            mid = (low + high) // 2
            if (found := attempt(mid)) is not None:
                best, low = found, mid + 1
            else:
                high = mid - 1
        if best is None:
            raise GptlabError(
                f"task {self.task.name}: {self.task.eval_split} row {index + 1} does not fit the model's context of "
                f"{self.n_ctx} tokens even with no examples (lm-evaluation-harness would cut its start); "
                f"shorten it or use a model with a longer context"
            )
        return best

    def _choices(self, prompts: list[Prompt], pairs: list[Pairs]) -> dict[str, Metric]:
        new = sorted({c for p in prompts for c in p.continuations} - set(self.uncond))
        flat = [pair for group in pairs for pair in group] + [encode_pair(self.lm, ANSWER_PROMPT, c) for c in new]
        scores = score_tokens(self.lm, flat, self.batch_size, self.progress)
        self.uncond.update({c: s.logprob for c, s in zip(new, scores[len(flat) - len(new):], strict=True)})
        hits: dict[str, list[float]] = {}
        at = 0
        for prompt in prompts:
            mine = scores[at : at + len(prompt.choices)]
            at += len(prompt.choices)
            picks = choice_scores([s.logprob for s in mine], [s.n_tokens for s in mine], prompt.choices,
                                  [self.uncond[c] for c in prompt.continuations])
            for name, pick in picks.items():
                hits.setdefault(name, []).append(float(pick in prompt.gold))
        return {name: mean_metric(values) for name, values in hits.items()}

    def _loglikelihood(self, prompts: list[Prompt], pairs: list[Pairs]) -> dict[str, Metric]:
        scores = score_tokens(self.lm, [group[0] for group in pairs], self.batch_size, self.progress)
        logprobs = [s.logprob for s in scores]
        return {"perplexity": Metric(math.exp(-sum(logprobs) / len(logprobs)), None),
                "acc": mean_metric([float(s.greedy) for s in scores])}

    def _generate(self, prompts: list[Prompt], pairs: list[Pairs]) -> dict[str, Metric]:
        try:
            from gptlab.eval.generate import generate_until
            from gptlab.eval.text_metrics import exact_match, f1
        except ImportError:
            raise GptlabError(f"task {self.task.name}: generate_until tasks need gptlab.eval.generate") from None
        requests = [(p.context, dict(self.task.generation_kwargs)) for p in prompts]
        outputs = generate_until(self.lm, requests, batch_size=self.batch_size, progress=self.progress)
        scorers: dict[str, Callable[..., float]] = {"exact_match": exact_match, "f1": f1}
        return {
            name: mean_metric([scorers[name](out, p.target, **options) for out, p in zip(outputs, prompts, strict=True)])
            for name, options in self.task.metrics.items() if name in scorers
        }
