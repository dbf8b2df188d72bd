"""The scaling laws, fitted by least squares with their uncertainty.

L(C) = a·C^(−b) + c: validation loss against training compute (Kaplan et al. 2020; GPT-3 Figure 3.1).
L(N, D) = E + A/N^α + B/D^β: against non-embedding parameters and tokens (Hoffmann et al. 2022), which
needs runs of several token budgets per size to tell the two terms apart.

Each law is fitted with scipy's curve_fit from a few starting points (the best one kept), its inputs
divided by their geometric mean so the parameters are of order one. A prediction's interval is the
delta method on curve_fit's covariance (scaled by the residuals), plus the residual variance, since
a new run scatters about the curve as the fitted ones do; its half-width is the t quantile at the
fit's degrees of freedom. Few runs give wide intervals, which is the honest answer.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from gptlab.errors import GptlabError

COMPUTE_LAW = "L(C) = a·C^-b + c"
DATA_LAW = "L(N, D) = E + A/N^alpha + B/D^beta"
CONFIDENCE = 0.95
FLOOR_AT_ZERO = 1e-6
"""A fitted floor (c, E) below this sits at its bound: the runs gave the fit no flattening to estimate it from."""


@dataclass(frozen=True)
class Prediction:
    loss: float
    low: float | None
    """Bounds of the 95% interval; None when the fit has no degree of freedom left to estimate it."""
    high: float | None

    def doubt(self) -> str | None:
        """Why the interval says little, when it does: there is none, or it is as wide as the loss it brackets
        (so it reaches 0, or nearly, and cannot tell a good run from a useless one)."""
        if self.low is None or self.high is None:
            return "the fit has no 95% interval (no degree of freedom left to estimate one)"
        if self.high - self.low >= self.loss:
            return (f"its 95% interval, {self.low:.4f} to {self.high:.4f}, is wider than the loss {self.loss:.4f} "
                    "itself: the runs scatter too much about the law to predict with it")
        return None


@dataclass
class Law:
    """A fitted law: its parameters in the units of the inputs, and what its intervals need."""

    name: str
    params: dict[str, float]
    stderr: dict[str, float | None]
    theta: list[float]
    """The fitted vector in normalised coordinates (see `_compute_model`, `_data_model`)."""
    covariance: list[list[float]] | None
    scale: list[float]
    """The geometric means the inputs were divided by."""
    residual_var: float
    dof: int
    runs: list[str] = field(default_factory=list)
    """The runs fitted."""

    def predict(self, *x: float) -> Prediction:
        model = _MODELS[self.name]
        theta = np.array(self.theta)
        point = np.array(x, dtype=float)[:, None] / np.array(self.scale)[:, None]
        loss = float(model(point, *theta)[0])
        if self.covariance is None or self.dof < 1:
            return Prediction(loss, None, None)
        steps = np.diag(np.maximum(1e-6, 1e-6 * np.abs(theta)))  # row i moves parameter i alone
        grad = np.array([(model(point, *(theta + h)) - model(point, *(theta - h)))[0] / (2 * h[i]) for i, h in enumerate(steps)])
        var = float(grad @ np.array(self.covariance) @ grad) + self.residual_var
        from scipy.stats import t

        half = float(t.ppf(0.5 + CONFIDENCE / 2, self.dof)) * math.sqrt(max(var, 0.0))
        return Prediction(loss, max(0.0, loss - half), loss + half)  # a cross-entropy is never negative

    def caveat(self) -> str | None:
        """A warning when the fitted floor sits at its bound of 0: the runs still fall as steeply as ever (or more), so
        the law extrapolates as a bare power law, which these runs cannot vouch for."""
        name = "c" if "c" in self.params else "E"
        if self.params[name] >= FLOOR_AT_ZERO:
            return None
        return (f"the fitted floor {name} is 0: the runs' losses do not flatten yet, so {self.name} extrapolates as a bare "
                "power law and may be far off; add larger runs, past the steepest part of the fall")

    def to_dict(self) -> dict:
        return {"law": self.name, "params": self.params, "stderr": self.stderr, "runs": self.runs,
                "degrees_of_freedom": self.dof, "residual_rms": math.sqrt(self.residual_var),
                "fit": {"theta": self.theta, "covariance": self.covariance, "scale": self.scale,
                        "residual_var": self.residual_var}}

    @classmethod
    def from_dict(cls, data: dict) -> Law:
        fit = data["fit"]
        return cls(data["law"], data["params"], data["stderr"], fit["theta"], fit["covariance"], fit["scale"],
                   fit["residual_var"], data["degrees_of_freedom"], data["runs"])


def _compute_model(x: np.ndarray, log_a: float, b: float, c: float) -> np.ndarray:
    return np.exp(log_a) * x[0] ** -b + c


def _data_model(x: np.ndarray, e: float, log_a: float, alpha: float, log_b: float, beta: float) -> np.ndarray:
    return e + np.exp(log_a) * x[0] ** -alpha + np.exp(log_b) * x[1] ** -beta


_MODELS: dict[str, Callable[..., np.ndarray]] = {COMPUTE_LAW: _compute_model, DATA_LAW: _data_model}


def fit_compute_law(flops: Sequence[float], losses: Sequence[float], runs: Sequence[str]) -> Law:
    """L(C) = a·C^(−b) + c through the runs; four at least, so one degree of freedom is left for the interval."""
    c_vals = np.asarray(flops, dtype=float)
    y = _check(c_vals[:, None], losses, runs, 4, COMPUTE_LAW)
    scale = _geomean(c_vals)
    floor = float(y.min())
    starts = [(math.log(max(float(y.mean()) - f * floor, 1e-3)), b, f * floor)
              for f, b in itertools.product((0.0, 0.5, 0.8, 0.95), (0.05, 0.2, 0.5))]
    bounds = ([-30.0, 0.0, 0.0], [30.0, 3.0, floor])
    theta, cov, residual_var, dof = _least_squares(_compute_model, c_vals[None] / scale, y, starts, bounds)
    log_a, b, c = theta
    a = math.exp(log_a) * scale**b  # a·(C/s)^-b = (a·s^b)·C^-b
    stderr = _stderr(cov, 3)
    a_err = None if stderr[0] is None else a * stderr[0]
    return Law(COMPUTE_LAW, {"a": a, "b": b, "c": c}, {"a": a_err, "b": stderr[1], "c": stderr[2]},
               theta, _list(cov), [scale], residual_var, dof, list(runs))


def fit_data_law(params: Sequence[float], tokens: Sequence[float], losses: Sequence[float], runs: Sequence[str]) -> Law:
    """L(N, D) = E + A/N^α + B/D^β; six runs at least, with sizes and token budgets that vary apart."""
    n_vals, d_vals = np.asarray(params, dtype=float), np.asarray(tokens, dtype=float)
    if len(n_vals) and np.ptp(np.log(d_vals / n_vals)) < math.log(1.5):
        raise GptlabError(
            "it needs several token budgets per size (tokens per parameter that differ by 1.5x or more); "
            "sweep with several tokens per parameter (R1 R2 ...)"
        )
    y = _check(np.stack([n_vals, d_vals], axis=1), losses, runs, 6, DATA_LAW)
    scale = [_geomean(n_vals), _geomean(d_vals)]
    floor = float(y.min())
    starts = []
    for f, alpha, beta in itertools.product((0.5, 0.9), (0.2, 0.5), (0.2, 0.5)):
        log_term = math.log(max((float(y.mean()) - f * floor) / 2, 1e-3))
        starts.append((f * floor, log_term, alpha, log_term, beta))
    bounds = ([0.0, -30.0, 0.0, -30.0, 0.0], [floor, 30.0, 3.0, 30.0, 3.0])
    x = np.stack([n_vals / scale[0], d_vals / scale[1]])
    theta, cov, residual_var, dof = _least_squares(_data_model, x, y, starts, bounds)
    e, log_a, alpha, log_b, beta = theta
    big_a, big_b = math.exp(log_a) * scale[0] ** alpha, math.exp(log_b) * scale[1] ** beta
    s = _stderr(cov, 5)
    stderr = {"E": s[0], "A": None if s[1] is None else big_a * s[1], "alpha": s[2],
              "B": None if s[3] is None else big_b * s[3], "beta": s[4]}
    return Law(DATA_LAW, {"E": e, "A": big_a, "alpha": alpha, "B": big_b, "beta": beta}, stderr,
               theta, _list(cov), scale, residual_var, dof, list(runs))


def _check(points: np.ndarray, losses: Sequence[float], runs: Sequence[str], least: int, law: str) -> np.ndarray:
    """The losses as an array, once every run has a finite one and there are `least` different points."""
    for name, loss in zip(runs, losses, strict=True):
        if not math.isfinite(loss):
            raise GptlabError(f"run {name} ended with validation loss {loss}: it diverged; lower lr_scale and rerun it")
    if len(runs) < least:
        raise GptlabError(
            f"{len(runs)} run{'s' * (len(runs) != 1)} {'are' if len(runs) != 1 else 'is'} too few to fit {law} with an "
            f"uncertainty; it takes {least} at least (more sizes or points)"
        )
    distinct = len(np.unique(points, axis=0))
    if distinct < least:
        raise GptlabError(f"{law} needs {least} different runs at least; these are only {distinct}")
    return np.asarray(losses, dtype=float)


def _least_squares(model, x: np.ndarray, y: np.ndarray, starts, bounds) -> tuple[list[float], np.ndarray | None, float, int]:
    """The best of curve_fit's solutions from `starts`: (theta, covariance or None, residual variance, dof)."""
    from scipy.optimize import OptimizeWarning, curve_fit

    best = None
    for start in starts:
        start = np.clip(start, np.array(bounds[0]) + 1e-9, np.array(bounds[1]) - 1e-9)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", OptimizeWarning)
                theta, cov = curve_fit(model, x, y, p0=start, bounds=bounds, maxfev=20000)
        except (RuntimeError, ValueError):
            continue
        sse = float(np.sum((model(x, *theta) - y) ** 2))
        if best is None or sse < best[0]:
            best = (sse, theta, cov)
    if best is None:
        raise GptlabError("the scaling fit did not converge from any starting point")
    sse, theta, cov = best
    dof = len(y) - len(theta)
    usable = dof > 0 and np.all(np.isfinite(cov))
    return [float(v) for v in theta], cov if usable else None, sse / dof if dof > 0 else 0.0, dof


def _stderr(cov: np.ndarray | None, n: int) -> list[float | None]:
    if cov is None:
        return [None] * n
    return [float(math.sqrt(max(v, 0.0))) for v in np.diag(cov)]


def _list(cov: np.ndarray | None) -> list[list[float]] | None:
    return None if cov is None else [[float(v) for v in row] for row in cov]


def _geomean(values: np.ndarray) -> float:
    return float(np.exp(np.mean(np.log(values))))
