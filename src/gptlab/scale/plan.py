"""From a fitted sweep: the loss of a run not yet made, and the run to make for a compute budget.

A plan follows the sweep's own rules (shape, learning rate, batch, recipe), so that the law it was
fitted under applies to it. With L(N, D) fitted, the plan spends the budget on the shape that law
predicts best; with L(C) alone, it keeps the sweep's tokens per parameter (the geometric mean over
the runs L(C) was fitted to), since that is the allocation L(C) describes, and takes the largest
shape whose tokens fit the budget.
"""

from __future__ import annotations

import dataclasses
import math
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gptlab.errors import GptlabError
from gptlab.scale import report
from gptlab.scale.fit import Prediction
from gptlab.scale.shapes import SMALLEST, rule_shapes
from gptlab.scale.sweep import Recipe, RunSpec, budget_run, run_spec, train_settings


FAR = 1000
"""A prediction past this multiple of the largest run's compute is flagged: the sweep tests nothing like it."""


@dataclass(frozen=True)
class Estimate:
    prediction: Prediction
    bits_per_byte: Prediction | None
    """The same in bits per byte of the validation text, when the runs measured it."""
    beyond: float
    """How far past the largest run this lies, in compute (taken as 6·N·D for a prediction from N and D)."""
    law: str
    caveat: str | None
    """Why the law may not extrapolate well, when the fit shows it (see Law.caveat)."""
    of: str
    """The run predicted: `1e+10 FLOPs`, or `N parameters on D tokens`."""

    @property
    def warnings(self) -> list[str]:
        """Every reason to doubt the estimate: the law's caveat, a point far past the sweep, an interval that says little."""
        found = [self.caveat] if self.caveat else []
        if self.beyond > FAR:
            found.append(f"{self.beyond:.3g}x the compute of the sweep's largest run is far outside the sweep (more than "
                         f"{FAR:,}x): nothing there tests the law, so the prediction and its interval are guesses; "
                         "sweep larger runs first")
        if doubt := self.prediction.doubt():
            found.append(f"the prediction says little: {doubt}; add runs, or larger ones")
        return found

    def describe(self) -> str:
        """`predicted validation loss 1.2340 nats/token (95%: 1.1990 to 1.2690), 1.7800 bits/byte (...)` and how far
        it extrapolates."""

        def interval(p: Prediction, unit: str) -> str:
            span = "" if p.low is None else f" (95%: {p.low:.4f} to {p.high:.4f})"
            return f"{p.loss:.4f} {unit}{span}"

        text = f"predicted validation loss {interval(self.prediction, 'nats/token')}"
        if self.bits_per_byte is not None:
            text += f", {interval(self.bits_per_byte, 'bits/byte')}"
        where = f"{self.beyond:.3g}x the compute of the largest run" if self.beyond > 1 else "within the sweep"
        return f"{text}; by {self.law}, {where}"

    def answer(self) -> str:
        """The prediction, saying of what."""
        return f"{self.of}: {self.describe()}"


def predict(summary: dict[str, Any], flops: float | None = None, params: float | None = None,
            tokens: float | None = None) -> Estimate:
    """The validation loss of a run of `flops` (by L(C)), or of `params` non-embedding parameters trained on
    `tokens` tokens (by L(N, D))."""
    if (flops is None) == (params is None and tokens is None):
        raise GptlabError("give the compute (flops), or the parameters with the tokens (params and tokens)")
    largest = max(r["flops"] for r in summary["runs"])
    if flops is not None:
        _check_flops(flops)
        law = report.compute_law(summary)
        prediction, at, of = law.predict(flops), flops, f"{flops:.3g} FLOPs"
    else:
        if not all(v is not None and math.isfinite(v) and v > 0 for v in (params, tokens)):
            raise GptlabError("give the compute, or the parameters with the tokens, as positive finite numbers")
        law = report.data_law(summary)
        if law is None:
            raise GptlabError(f"this sweep has no L(N, D) ({summary['loss_vs_params_and_tokens']['why']}); predict from the compute")
        prediction, at, of = law.predict(params, tokens), 6 * params * tokens, f"{params:,.0f} parameters on {tokens:,.0f} tokens"
    return Estimate(prediction, _in_bits(summary, prediction), at / largest, law.name, law.caveat(), of)


def _check_flops(flops: float) -> None:
    if not (math.isfinite(flops) and flops > 0):
        raise GptlabError(f"the compute must be a positive, finite number of FLOPs, got {flops:g}")


def _in_bits(summary: dict[str, Any], prediction: Prediction) -> Prediction | None:
    per_nat = summary.get("bits_per_byte_per_nat")
    if per_nat is None:
        return None
    scaled = [None if v is None else v * per_nat for v in (prediction.loss, prediction.low, prediction.high)]
    return Prediction(*scaled)


@dataclass(frozen=True)
class Plan:
    spec: RunSpec
    flops: int
    """What the planned run spends exactly (its steps are whole)."""
    tokens: int
    estimate: Estimate
    epochs: float
    settings: dict[str, Any]
    """The `gptlab train` settings, the same recipe as the sweep's runs."""
    budget: float
    """The compute asked for."""

    @property
    def warnings(self) -> list[str]:
        found = list(self.estimate.warnings)
        if self.epochs > 1:
            found.append(f"that is {self.epochs:.2f} epochs of the training data; the law assumes unrepeated data")
        return found

    def describe(self) -> str:
        """The run, its cost and its predicted loss, then the `gptlab train` command that makes it."""
        shape = self.spec.shape
        return (f"for {self.budget:.3g} FLOPs: {shape.params:,} non-embedding parameters ({shape}) on {self.tokens:,} "
                f"tokens ({self.tokens / shape.params:.1f} per parameter), {self.spec.steps:,} steps of "
                f"{self.spec.batch_size}, spending {self.flops:.3g} FLOPs\n{self.estimate.describe()}\n{self.command()}")

    def command(self) -> str:
        """`gptlab train` with every setting that differs from its defaults."""
        from gptlab.train.config import TrainConfig

        defaults = dataclasses.asdict(TrainConfig())
        words = ["gptlab", "train"]
        for key, value in self.settings.items():
            if key == "data":
                for path in value:
                    words += ["--data", path]
            elif key not in defaults or value != defaults[key]:
                words += ["--" + key.replace("_", "-"), str(value)]
        return shlex.join(words)


def plan(directory: str | Path, flops: float, out: str | Path | None = None) -> Plan:
    """The run to make with `flops` of training compute, by the sweep in `directory`, into `out` (default
    DIR/planned-C)."""
    _check_flops(flops)
    out = Path(directory) / f"planned-{flops:.0e}" if out is None else out
    summary = report.read(directory)
    recipe = Recipe.from_dict(summary["recipe"])
    law = report.data_law(summary)
    if law is None:
        fitted = [r for r in summary["runs"] if r["fitted"]]
        ratio = math.exp(np.mean([math.log(r["tokens_per_param"]) for r in fitted]))
        spec = budget_run(recipe, flops, ratio)
    else:
        spec = _best_for_budget(recipe, flops, law)
    tokens = spec.tokens(recipe)
    used = spec.flops(recipe)
    if law is None:
        estimate = predict(summary, flops=used)
    else:
        estimate = predict(summary, params=spec.shape.params, tokens=tokens)
    settings = train_settings(recipe, summary["data"], spec, Path(out))
    return Plan(spec, used, tokens, estimate, tokens / summary["data"]["train_tokens"], settings, flops)


def _best_for_budget(recipe: Recipe, flops: float, law) -> RunSpec:
    """Of the rule's shapes, each trained on the tokens that spend `flops`, the one L(N, D) predicts lowest."""
    best = None
    for shape in rule_shapes(math.sqrt(flops / 6)):  # N·6N ≤ C: at least one token per parameter
        tokens = flops / shape.flops_per_token(recipe.seq_len)
        try:
            spec = run_spec(recipe, shape, tokens / shape.params, tokens)
        except GptlabError:  # less than one step
            continue
        loss = law.predict(shape.params, spec.tokens(recipe)).loss
        if best is None or loss < best[0]:
            best = (loss, spec)
    if best is None:
        raise GptlabError(f"{flops:.3g} FLOPs cannot train even the smallest shape ({SMALLEST}) for one step")
    return best[1]
