"""What a sweep leaves behind: scaling.json (runs, rules, fitted laws), scaling.png, and a terminal table."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gptlab import atomic
from gptlab.errors import GptlabError
from gptlab.files import read_json_object
from gptlab.scale.fit import Law

SCALING_FILE = "scaling.json"
PLOT_FILE = "scaling.png"
EXTRAPOLATE = 100
"""The plotted curve runs to this multiple of the largest run's compute."""
NEXT = 10
"""The budget suggested next, as a multiple of the largest run's compute; the table says how well L(C) predicts it."""


@dataclass(frozen=True)
class Mark:
    """A point added to the plot: a prediction with its interval, and what was measured there."""

    flops: float
    predicted: float
    low: float | None
    high: float | None
    measured: float | None = None


def write(out: str | os.PathLike, summary: dict[str, Any]) -> list[Path]:
    out = Path(out)
    atomic.write_text(out / SCALING_FILE, json.dumps(summary, indent=2) + "\n")
    plot(summary, out / PLOT_FILE)
    return [out / SCALING_FILE, out / PLOT_FILE]


def read(directory: str | os.PathLike) -> dict[str, Any]:
    """A finished sweep's scaling.json."""
    path = Path(directory) / SCALING_FILE
    if not path.is_file():
        raise GptlabError(f"no {SCALING_FILE} in {directory}: run a sweep into it to the end first")
    return read_json_object(path)


def compute_law(summary: dict[str, Any]) -> Law:
    return Law.from_dict(summary["loss_vs_compute"])


def data_law(summary: dict[str, Any]) -> Law | None:
    entry = summary["loss_vs_params_and_tokens"]
    return Law.from_dict(entry) if entry.get("fitted", True) else None


def table(summary: dict[str, Any]) -> str:
    """One row per run, then the fitted laws and any run that repeated its data."""
    head = ("run", "params", "tokens", "tok/param", "FLOPs", "epochs", "val loss", "bits/byte")
    rows = [head]
    for r in summary["runs"]:
        epochs = f"{r['epochs']:.2f}" + (" !" if r["repeats_data"] else "")
        bpb = "" if r["val_bpb"] is None else f"{r['val_bpb']:.4f}"
        rows.append((r["name"] + ("" if r["fitted"] else " (off frontier)"), f"{r['params']:,}", f"{r['tokens']:,}",
                     f"{r['tokens_per_param']:.1f}", f"{r['flops']:.3g}", epochs, f"{r['val_loss']:.4f}", bpb))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    compute, data = compute_law(summary), data_law(summary)
    lines.append(describe(compute))
    lines.append(describe(data) if data else f"L(N, D) not fitted: {summary['loss_vs_params_and_tokens']['why']}")
    lines += [f"! {caveat}" for caveat in (compute.caveat(), data and data.caveat()) if caveat]
    largest = max(r["flops"] for r in summary["runs"])
    if doubt := compute.predict(NEXT * largest).doubt():
        lines.append(f"! {compute.name} predicts little at {NEXT}x the largest run's compute ({NEXT * largest:.3g} FLOPs): "
                     f"{doubt}; add runs, or larger ones")
    repeated = [r["name"] for r in summary["runs"] if r["repeats_data"]]
    if repeated:
        lines.append(f"! {', '.join(repeated)} repeated their data (more than one epoch); the laws assume unrepeated data")
    return "\n".join(lines)


def describe(law: Law) -> str:
    """The law with its fitted values and standard errors."""
    values = ", ".join(f"{k} = {_number(v)}" + (f" ± {_number(law.stderr[k])}" if law.stderr.get(k) is not None else "")
                       for k, v in law.params.items())
    return f"{law.name}: {values} ({len(law.runs)} runs, residual rms {math.sqrt(law.residual_var):.4f})"


def _number(value: float) -> str:
    return f"{value:.4g}"


def plot(summary: dict[str, Any], path: str | os.PathLike, marks: Sequence[Mark] = ()) -> None:
    """Validation loss against training compute, log-log: the runs, the fitted L(C) with its 95% band out to
    EXTRAPOLATE times the largest run, and `marks` (predictions, with what was measured)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import FuncFormatter

    law = compute_law(summary)
    runs = summary["runs"]
    largest = max([r["flops"] for r in runs] + [m.flops for m in marks])
    grid = np.logspace(math.log10(min(r["flops"] for r in runs) / 2), math.log10(largest * EXTRAPOLATE), 200)
    predictions = [law.predict(c) for c in grid]
    shown = [r["val_loss"] for r in runs] + [p.loss for p in predictions] + [m.measured or m.predicted for m in marks]
    bottom, top = min(shown) / 1.25, max(shown) * 1.25  # an interval reaching 0 or far up would flatten the curve
    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=100)
    if all(p.low is not None for p in predictions):
        axes.fill_between(grid, [max(p.low, bottom) for p in predictions], [min(p.high, top) for p in predictions],
                          color="tab:blue", alpha=0.15, label="95% interval")
    a, b, c = (law.params[k] for k in "abc")
    axes.plot(grid, [p.loss for p in predictions], color="tab:blue", label=f"L(C) = {a:.3g}·C^-{b:.3f} + {c:.3f}")
    for fitted, repeated, style, label in ((True, False, "o", "runs"), (False, False, "o", "runs off the frontier"),
                                           (True, True, "s", "runs that repeat data"), (False, True, "s", None)):
        chosen = [r for r in runs if r["fitted"] == fitted and r["repeats_data"] == repeated]
        if chosen:
            axes.plot([r["flops"] for r in chosen], [r["val_loss"] for r in chosen], style, color="black",
                      fillstyle="full" if fitted else "none", label=label)
    for mark in marks:
        error = None if mark.low is None else [[mark.predicted - mark.low], [mark.high - mark.predicted]]
        axes.errorbar([mark.flops], [mark.predicted], yerr=error, fmt="D", color="tab:red", capsize=4,
                      label=f"predicted {mark.predicted:.4f}")
        if mark.measured is not None:
            axes.plot([mark.flops], [mark.measured], "*", color="tab:green", markersize=12, label=f"measured {mark.measured:.4f}")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_ylim(bottom, top)
    plain = FuncFormatter(lambda value, _: f"{value:g}")  # 2.5, not 2.5×10^0
    axes.yaxis.set_major_formatter(plain)
    axes.yaxis.set_minor_formatter(plain)
    axes.set_xlabel("training compute C (FLOPs)")
    axes.set_ylabel("validation loss (nats/token)")
    axes.set_title(f"{len(runs)} runs, {summary['recipe']['tokenizer']} tokens, context {summary['recipe']['seq_len']}")
    axes.grid(alpha=0.3, which="both")
    axes.legend(fontsize=8)
    figure.tight_layout()
    atomic.write_figure(path, figure)
