"""Run tasks at each K: build the prompts, fit them to the context, score them, aggregate metrics."""

from __future__ import annotations

import hashlib
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gptlab.errors import GptlabError
from gptlab.eval.metrics import ANSWER_PROMPT, Metric, choice_scores, mean_metric, rolling_metrics, text_size
from gptlab.eval.scoring import encode_pair, loglikelihood_rolling, score_tokens
from gptlab.eval.tasks import FEWSHOT_SEED, Prompt, Task
from gptlab.files import read_text

if TYPE_CHECKING:
    from gptlab.language_model import LanguageModel

Pairs = list[tuple[list[int], list[int]]]
Scored = tuple[dict[str, Metric], list[dict[str, Any]]]
"""A task's metrics at one K, and each document's record for --log-samples."""
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
    log_samples: bool = False,
) -> dict[str, Any]:
    """Every task at every K in `shots`, and the perplexity of each text file, as one JSON-able dict.

    Every input is checked before anything is scored, so a bad one costs no work. With `log_samples`,
    each document's requests, answers and scores go under "samples" (name -> records, in the fields of
    lm-evaluation-harness's `--log_samples`), which `report.write` puts in files of their own.
    """
    if any(k < 0 for k in shots):
        raise GptlabError(f"--shots must be non-negative, got {list(shots)}")
    if limit is not None and limit < 1:
        raise GptlabError(f"--limit must be at least 1, got {limit}")
    names = [task.name for task in tasks]
    if repeated := sorted({name for name in names if names.count(name) > 1}):
        raise GptlabError(f"task {', '.join(repeated)} given twice: each task's results go under its name")
    documents = {path: _document(path) for path in texts}
    runners = [_TaskRunner(lm, task, batch_size, progress) for task in tasks]
    for runner in runners:
        runner.check(runner.task.docs[:limit], shots)
    results: dict[str, Any] = {}
    samples: dict[str, list[dict[str, Any]]] = {}
    for runner in runners:
        task = runner.task
        unsupported = [m for m in task.metrics if m not in REPORTED[task.output_type]]
        if unsupported:
            warn(f"task {task.name}: metric {', '.join(unsupported)} is not computed by gptlab eval")
        docs = task.docs[:limit]
        entry = {"source": task.source, "output_type": task.output_type, "split": task.eval_split, "docs": len(docs)}
        if task.output_type == "loglikelihood_rolling":  # no prompt: K changes nothing
            prompts = [task.prompt(i, doc, []) for i, doc in enumerate(docs)]
            metrics, logged = _rolling(lm, [p.target for p in prompts], batch_size, progress)
            entry["shots"] = {str(k): {"metrics": metrics, "shots_mean": 0.0, "capped": 0} for k in shots}
            if log_samples:
                samples[task.name] = [_sample(i, doc, p.target, record) for i, (doc, p, record)
                                      in enumerate(zip(docs, prompts, logged, strict=True))]
        else:
            entry["shots"] = {}
            for k in shots:
                entry["shots"][str(k)], logged = runner.run(docs, k)
                if log_samples:
                    samples[f"{task.name}_{k}shot"] = logged
        results[task.name] = entry
    for path, text in documents.items():
        metrics, _ = _rolling(lm, [text], batch_size, progress)
        results[f"text:{path}"] = {
            "source": str(path), "output_type": "loglikelihood_rolling", "split": None, "docs": 1,
            "shots": {"0": {"metrics": metrics, "shots_mean": 0.0, "capped": 0}},
        }
    out = {
        "model": str(lm.path) if lm.path else None, "n_ctx": lm.config.n_ctx, "fewshot_seed": FEWSHOT_SEED,
        "limit": limit, "shots": list(shots), "tasks": results,
    }
    return {**out, "samples": samples} if log_samples else out


def _document(path: Path) -> str:
    """A text file to score, read before any scoring: an empty one has no perplexity."""
    text = read_text(path)
    if not text.strip():
        raise GptlabError(f"{path} holds no text (it is empty or only whitespace): nothing to score")
    return text


def _rolling(
    lm: LanguageModel, texts: list[str], batch_size: int, progress: bool
) -> tuple[dict[str, dict], list[dict[str, Any]]]:
    """The metrics over `texts`, and per text what lm-evaluation-harness logs for it."""
    logprobs = loglikelihood_rolling(lm, texts, batch_size, progress)
    n_tokens = sum(len(lm.require_tokenizer().encode(t)) for t in texts)
    metrics = {name: m.to_dict() for name, m in rolling_metrics(logprobs, texts, n_tokens).items()}
    logged = []
    for text, logprob in zip(texts, logprobs, strict=True):
        words, n_bytes = text_size(text)
        logged.append({"arguments": [[text]], "resps": [[logprob]], "filtered_resps": [logprob],
                       "word_perplexity": [logprob, words], "byte_perplexity": [logprob, n_bytes],
                       "bits_per_byte": [logprob, n_bytes]})
    return metrics, logged


def _sample(index: int, doc: dict[str, Any], target: Any, record: dict[str, Any]) -> dict[str, Any]:
    """One document's record in lm-evaluation-harness's `--log_samples` fields (its metric values
    included), with gptlab's own after them (`shots`, the examples its prompt holds; `picked`, the
    choice each multiple-choice rule took)."""
    metrics = [name for name in record if name not in _LOGGED]
    return {
        "doc_id": index, "doc": doc, "target": target, "arguments": record["arguments"], "resps": record["resps"],
        "filtered_resps": record["filtered_resps"], "filter": "none", "metrics": metrics,
        "doc_hash": _hash(json.dumps(doc, indent=2, ensure_ascii=False, default=str)),
        "prompt_hash": _hash(record["arguments"][0][0]), "target_hash": _hash(str(target)),
        **{name: record[name] for name in metrics}, **{k: record[k] for k in ("shots", "picked") if k in record},
    }


_LOGGED = {"arguments", "resps", "filtered_resps", "shots", "picked"}
"""Keys of a runner's per-document record that are not metric values."""


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class _TaskRunner:
    """One task's prompts and scores at each K; unconditional choice scores are shared by all K."""

    def __init__(self, lm: LanguageModel, task: Task, batch_size: int, progress: bool):
        self.lm, self.task, self.batch_size, self.progress = lm, task, batch_size, progress
        self.n_ctx = lm.config.n_ctx
        self.uncond: dict[str, float] = {}
        self.bare: list[tuple[Prompt, Pairs]] = []
        """Each document's prompt without examples, fitted by `check` and reused by `run` for a prompt with none."""

    def check(self, docs: list[dict[str, Any]], shots: Sequence[int]) -> None:
        """What can be known before scoring: every document renders and fits the context without examples
        (a rolling task's hold some text), and which K its few-shot pool caps (one warning)."""
        task = self.task
        if task.output_type == "loglikelihood_rolling":
            if not any(task.prompt(i, doc, []).target.strip() for i, doc in enumerate(docs)):
                raise GptlabError(f"task {task.name}: its {len(docs)} document(s) hold no text: nothing to score")
            return
        self.bare = [self._fit(i, doc, []) for i, doc in enumerate(docs)]
        capped = [k for k in shots if k > task.max_shots]
        if capped:
            less = ", less the document being asked" if task.excludes_eval_doc else ""
            warn(f"task {task.name}: a prompt can hold at most {task.max_shots} examples ({task.fewshot_source} has "
                 f"{len(task.fewshot_docs)}{less}); K={', '.join(map(str, capped))} capped to {task.max_shots}")

    def run(self, docs: list[dict[str, Any]], k: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The metrics at K (with how many prompts hold fewer than K examples) and each document's record;
        `docs` are those `check` saw."""
        draw = self.task.sampler()
        drawn = [draw(k, doc) for doc in docs]
        fitted = [self._fit(i, doc, shots) if shots else self.bare[i]
                  for i, (doc, shots) in enumerate(zip(docs, drawn, strict=True))]
        prompts = [p for p, _ in fitted]
        shots_mean = sum(p.shots for p in prompts) / len(prompts)
        cut = sum(p.shots < len(shots) for p, shots in zip(prompts, drawn, strict=True))
        if cut:
            warn(f"task {self.task.name}: {cut} of {len(prompts)} prompts do not fit the model's context of "
                 f"{self.n_ctx} tokens with K={k}; they keep as many examples as fit (mean {shots_mean:.1f})")
        kind = self.task.output_type
        metrics, records = (self._choices if kind == "multiple_choice" else self._loglikelihood
                            if kind == "loglikelihood" else self._generate)(prompts, [pairs for _, pairs in fitted])
        samples = [
            _sample(i, doc, (p.gold[0] if len(p.gold) == 1 else p.gold) if kind == "multiple_choice" else p.target,
                    {**record, "shots": p.shots})
            for i, (doc, p, record) in enumerate(zip(docs, prompts, records, strict=True))
        ]
        entry = {"metrics": {name: m.to_dict() for name, m in metrics.items()}, "shots_mean": shots_mean,
                 "capped": sum(p.shots < k for p in prompts)}
        return entry, samples

    def _fit(self, index: int, doc: dict[str, Any], shots: list[dict[str, Any]]) -> tuple[Prompt, Pairs]:
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

    def _choices(self, prompts: list[Prompt], pairs: list[Pairs]) -> Scored:
        new = sorted({c for p in prompts for c in p.continuations} - set(self.uncond))
        flat = [pair for group in pairs for pair in group] + [encode_pair(self.lm, ANSWER_PROMPT, c) for c in new]
        scores = score_tokens(self.lm, flat, self.batch_size, self.progress)
        self.uncond.update({c: s.logprob for c, s in zip(new, scores[len(flat) - len(new):], strict=True)})
        records = []
        at = 0
        for prompt in prompts:
            mine = scores[at : at + len(prompt.choices)]
            at += len(prompt.choices)
            picks = choice_scores([s.logprob for s in mine], [s.n_tokens for s in mine], prompt.choices,
                                  [self.uncond[c] for c in prompt.continuations])
            records.append({
                "arguments": [[prompt.context, c] for c in prompt.continuations],
                "resps": [[[s.logprob, s.greedy]] for s in mine],
                "filtered_resps": [[s.logprob, s.greedy] for s in mine],
                **{name: float(pick in prompt.gold) for name, pick in picks.items()}, "picked": picks,
            })
        return _means(records, list(REPORTED["multiple_choice"])), records

    def _loglikelihood(self, prompts: list[Prompt], pairs: list[Pairs]) -> Scored:
        scores = score_tokens(self.lm, [group[0] for group in pairs], self.batch_size, self.progress)
        records = [{"arguments": [[p.context, p.target]], "resps": [[[s.logprob, s.greedy]]],
                    "filtered_resps": [[s.logprob, s.greedy]], "perplexity": s.logprob, "acc": float(s.greedy)}
                   for p, s in zip(prompts, scores, strict=True)]
        return {"perplexity": Metric(math.exp(-sum(s.logprob for s in scores) / len(scores)), None),
                **_means(records, ["acc"])}, records

    def _generate(self, prompts: list[Prompt], pairs: list[Pairs]) -> Scored:
        try:
            from gptlab.eval.generate import generate_until
            from gptlab.eval.text_metrics import exact_match, f1
        except ImportError:
            raise GptlabError(f"task {self.task.name}: generate_until tasks need gptlab.eval.generate") from None
        requests = [(p.context, dict(self.task.generation_kwargs)) for p in prompts]
        outputs = generate_until(self.lm, requests, batch_size=self.batch_size, progress=self.progress)
        scorers: dict[str, Callable[..., float]] = {"exact_match": exact_match, "f1": f1}
        scored = {name: options for name, options in self.task.metrics.items() if name in scorers}
        records = [{"arguments": [list(request)], "resps": [[out]], "filtered_resps": [out],
                    **{name: scorers[name](out, p.target, **options) for name, options in scored.items()}}
                   for request, out, p in zip(requests, outputs, prompts, strict=True)]
        return _means(records, list(scored)), records


def _means(records: list[dict[str, Any]], names: list[str]) -> dict[str, Metric]:
    """Each named per-document score, averaged over the documents."""
    return {name: mean_metric([record[name] for record in records]) for name in names}
