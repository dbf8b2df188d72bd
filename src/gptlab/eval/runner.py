"""Evaluate a model in context: lm-evaluation-harness's evaluator runs the tasks at each K with gptlab's
model doing the scoring; gptlab checks everything first, fits prompts to the context (`prompts`), and
adds GPT-3's per-token and unconditional multiple-choice rules, token perplexity and text files."""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gptlab.errors import GptlabError
from gptlab.eval import scoring
from gptlab.eval.harness import GptlabLM
from gptlab.eval.metrics import ANSWER_PROMPT, Metric, choice_scores, mean_metric, rolling_metrics
from gptlab.eval.prompts import PromptFitter
from gptlab.eval.tasks import FEWSHOT_SEED, LoadedTasks, harness_error, quiet_harness

if TYPE_CHECKING:
    from lm_eval.api.task import Task

    from gptlab.language_model import LanguageModel

ROLLING = "loglikelihood_rolling"


def warn(message: str) -> None:
    print(f"gptlab: warning: {message}", file=sys.stderr)


def evaluate_loaded(
    lm: LanguageModel,
    loaded: LoadedTasks,
    shots: Sequence[int] = (0,),
    *,
    texts: dict[Path, str] | None = None,
    limit: int | None = None,
    batch_size: int = 16,
    progress: bool = False,
    log_samples: bool = False,
) -> dict[str, Any]:
    """Every task at every K in `shots`, and the perplexity of each text (path -> its text), as one
    JSON-able dict. Every prompt is built and fitted before anything is scored, so a bad one costs no
    work. With `log_samples`, each document's requests, answers and scores go under "samples"."""
    model = GptlabLM.wrap(lm, batch_size, progress)
    shots = list(dict.fromkeys(shots))
    rolling = [name for name, task in loaded.tasks.items() if task.OUTPUT_TYPE == ROLLING]
    fitters = {name: PromptFitter(task, model).install() for name, task in loaded.tasks.items() if name not in rolling}
    _check(loaded, fitters, rolling, shots, limit, progress)
    results: dict[str, Any] = {}
    samples: dict[str, list[dict[str, Any]]] = {}
    uncond: dict[str, float] = {}
    for i, k in enumerate(shots):
        names = [*fitters, *(rolling if i == 0 else [])]  # a rolling task has no prompt: K changes nothing
        if not names:
            break
        for name in names:
            _prepare(loaded.tasks[name], k if name in fitters else 0, fitters.get(name))
        out = _harness(model, loaded, names, limit, progress)
        for name in names:
            task, logged = loaded.tasks[name], out["samples"][name]
            entry = results.setdefault(name, _entry(loaded, name, out["n-samples"][name]["effective"]))
            metrics = _metrics(task, out["results"][name], logged)
            if name in rolling:
                metrics["token_perplexity"] = _token_perplexity(lm, logged)
                entry["shots"] = {str(j): {"metrics": _dicts(metrics), "shots_mean": 0.0, "capped": 0} for j in shots}
                samples[name] = logged
                continue
            kept = fitters[name].kept
            for sample in logged:
                sample["shots"] = kept[sample["doc_id"]]
            if task.OUTPUT_TYPE == "multiple_choice":
                metrics.update(_choice_rules(model, task, logged, uncond))
            entry["shots"][str(k)] = {"metrics": _dicts(metrics), "shots_mean": sum(kept) / len(kept),
                                      "capped": sum(n < k for n in kept)}
            samples[f"{name}_{k}shot"] = logged
        for group, reported in out.get("groups", {}).items():
            _group(results, group, reported, k)
        model.forget()  # the next K's prompts are others
    for path, text in (texts or {}).items():
        results[f"text:{path}"] = _text(lm, path, text, batch_size, progress)
    summary = {"model": str(lm.path) if lm.path else None, "n_ctx": lm.config.n_ctx, "fewshot_seed": FEWSHOT_SEED,
               "limit": limit, "shots": shots, "tasks": results}
    return {**summary, "samples": samples} if log_samples else summary


def _entry(loaded: LoadedTasks, name: str, docs: int) -> dict[str, Any]:
    task = loaded.tasks[name]
    return {"source": loaded.sources[name], "output_type": task.OUTPUT_TYPE, "split": _split(task), "docs": docs,
            "shots": {}}


def _text(lm: LanguageModel, path: Path, text: str, batch_size: int, progress: bool) -> dict[str, Any]:
    """A text file's perplexities and bits per byte, every token scored once."""
    logprobs = scoring.loglikelihood_rolling(lm, [text], batch_size, progress)
    n_tokens = len(lm.require_tokenizer().encode(text))
    metrics = rolling_metrics(logprobs, [text], n_tokens)
    return {"source": str(path), "output_type": ROLLING, "split": None, "docs": 1,
            "shots": {"0": {"metrics": _dicts(metrics), "shots_mean": 0.0, "capped": 0}}}


def _prepare(task: Task, k: int, fitter: PromptFitter | None) -> None:
    """K and the few-shot seed, set as the harness's `simple_evaluate` sets them, and a fresh record of
    the prompts the next build makes."""
    task.set_config(key="num_fewshot", value=k)
    task.set_fewshot_seed(seed=FEWSHOT_SEED)
    if fitter is not None:
        fitter.reset()


def _check(
    loaded: LoadedTasks, fitters: dict[str, PromptFitter], rolling: list[str], shots: list[int],
    limit: int | None, progress: bool,
) -> None:
    """Build every prompt at every K, as the evaluator will: what does not render or fit fails here, in
    one line, before any scoring; K beyond the few-shot pool and prompts cut to fit are said once."""
    for name in [*rolling, *fitters]:
        task, fitter = loaded.tasks[name], fitters.get(name)
        if fitter is not None and (capped := [k for k in shots if k > fitter.max_shots]):
            less = ", less the document being asked" if fitter.excludes_eval_doc else ""
            warn(f"task {name}: a prompt can hold at most {fitter.max_shots} examples (its few-shot pool has "
                 f"{fitter.pool}{less}); K={', '.join(map(str, capped))} capped to {fitter.max_shots}")
        for k in shots if fitter is not None else [0]:
            _prepare(task, k, fitter)
            try:
                with quiet_harness(not progress):
                    task.build_all_requests(limit=limit)
            except GptlabError:
                raise
            except Exception as e:  # the task's own templates or Python hooks
                where = f" at {_split(task)} row {len(fitter.kept) + 1}" if fitter is not None else ""
                raise GptlabError(f"task {name}{where}: {harness_error(e)}") from None
            if fitter is None:
                if not any(str(r.args[0]).strip() for r in task.instances):
                    raise GptlabError(f"task {name}: its {len(task.instances)} document(s) hold no text: "
                                      f"nothing to score")
                continue
            cut = sum(n < d for n, d in zip(fitter.kept, fitter.drawn, strict=True))
            if cut:
                mean = sum(fitter.kept) / len(fitter.kept)
                warn(f"task {name}: {cut} of {len(fitter.kept)} prompts do not fit the model's context of "
                     f"{fitter.model.lm.config.n_ctx} tokens with K={k}; they keep as many examples as fit "
                     f"(mean {mean:.1f})")


def _split(task: Task) -> str:
    return task.config.test_split or task.config.validation_split


def _harness(model: GptlabLM, loaded: LoadedTasks, names: list[str], limit: int | None, progress: bool) -> Any:
    """The harness's evaluator over some tasks, logging every sample (gptlab's extras read them). It
    computes no standard errors (`_metrics` gives the closed-form ones), so nothing is bootstrapped."""
    from lm_eval.evaluator import evaluate

    with quiet_harness(not progress):
        return evaluate(lm=model, task_dict=loaded.task_dict(names), limit=limit, bootstrap_iters=0,
                        log_samples=True)


def _metrics(task: Task, reported: dict[str, Any], samples: list[dict[str, Any]]) -> dict[str, Metric]:
    """The harness's metrics ("acc", or "exact_match,strict-match" under a named filter), each with the
    standard error of a mean where it is one (the harness's `mean_stderr`), else None."""
    from lm_eval.api.metrics import mean

    aggregation = task.aggregation()
    metrics = {}
    for key, value in reported.items():
        if "," not in key or "_stderr," in key or not isinstance(value, int | float):
            continue
        metric, filter_name = key.split(",", 1)
        stderr = None
        if aggregation.get(metric) is mean:
            stderr = mean_metric([s[metric] for s in samples if s["filter"] == filter_name]).stderr
        metrics[metric if filter_name == "none" else key] = Metric(float(value), stderr)
    return metrics


def _dicts(metrics: dict[str, Metric]) -> dict[str, dict[str, float | None]]:
    return {name: m.to_dict() for name, m in metrics.items()}


def _choice_rules(
    model: GptlabLM, task: Task, samples: list[dict[str, Any]], uncond: dict[str, float]
) -> dict[str, Metric]:
    """GPT-3's `acc_token` (log-likelihood per token) and `acc_uncond` (relative to the choice's
    log-likelihood after "Answer:"), added to each sample with the choice each rule `picked`; the
    unconditional scores are shared by every K."""
    mine = [s for s in samples if s["filter"] == "none"]
    new = sorted({x for s in mine for _, x in s["arguments"]} - set(uncond))
    uncond.update({x: s.logprob for x, s in zip(new, model.score([(ANSWER_PROMPT, x) for x in new]), strict=True)})
    scored = []
    for sample in mine:
        choices = task.doc_to_choice(sample["doc"])
        if len(sample["arguments"]) != len(choices):  # acc_mutual_info's extra requests: not GPT-3's rules
            continue
        picks = choice_scores([r[0] for r in sample["filtered_resps"]],
                              [len(model.encode(c, x)[1]) for c, x in sample["arguments"]], choices,
                              [uncond[x] for _, x in sample["arguments"]])
        gold = _gold(sample["target"], choices)
        sample["picked"] = picks
        for rule in ("acc_token", "acc_uncond"):
            sample[rule] = float(picks[rule] in gold)
            sample["metrics"] = [*sample["metrics"], rule]
        scored.append(sample)
    if not scored:
        return {}
    return {rule: mean_metric([s[rule] for s in scored]) for rule in ("acc_token", "acc_uncond")}


def _gold(target: Any, choices: list[str]) -> list[int]:
    """The right choices' indices, read from a target as the harness reads it."""
    golds = target if isinstance(target, list) else [target]
    return [choices.index(g) if isinstance(g, str) and g in choices else g for g in golds]


def _token_perplexity(lm: LanguageModel, samples: list[dict[str, Any]]) -> Metric:
    total = sum(s["resps"][0][0] for s in samples)
    n_tokens = sum(len(lm.require_tokenizer().encode(s["target"])) for s in samples)
    return Metric(math.exp(-total / n_tokens) if n_tokens else math.nan, None)


def _group(results: dict[str, Any], group: str, reported: dict[str, Any], k: int) -> None:
    """A group's aggregate metrics, as the harness reports them (no standard errors)."""
    metrics = {key.removesuffix(",none"): {"value": float(v), "stderr": None} for key, v in reported.items()
               if "," in key and "_stderr," not in key and isinstance(v, int | float)}
    if not metrics:
        return
    entry = results.setdefault(group, {"source": None, "output_type": "group", "split": None,
                                       "docs": None, "shots": {}})
    entry["shots"][str(k)] = {"metrics": metrics, "shots_mean": float(k), "capped": 0}
