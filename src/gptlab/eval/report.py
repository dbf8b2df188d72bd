"""What an evaluation leaves behind: results.json, a terminal table, and accuracy against K."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gptlab import atomic
from gptlab.errors import GptlabError
from gptlab.files import check_not_under_a_file

if TYPE_CHECKING:
    from matplotlib.figure import Figure

ACCURACY = {"multiple_choice": "acc", "loglikelihood": "acc", "generate_until": "exact_match"}
"""The metric plotted against K for each output type."""
RESULTS, PLOT = "results.json", "accuracy_vs_shots.png"
SAMPLES = re.compile(r"samples_.*\.jsonl")
CAPPED_LABEL = "capped K (fewer than K examples fit)"
_UNSAFE = re.compile(r"[^\w.-]")
"""Characters a task's name may hold that a samples file's name does not."""


def table(results: dict[str, Any]) -> str:
    """One row per task, K and metric: value and standard error."""
    rows = [("task", "K", "metric", "value", "stderr")]
    for name, entry in results["tasks"].items():
        for k, at_k in entry["shots"].items():
            shots = k if entry["output_type"] != "loglikelihood_rolling" else "-"
            if at_k.get("capped"):
                shots = f"{k} (~{at_k['shots_mean']:.1f})"
            for metric, m in at_k["metrics"].items():
                stderr = "" if m["stderr"] is None else f"± {m['stderr']:.4f}"
                value = f"{m['value']:.4f}" if abs(m["value"]) < 1e5 else f"{m['value']:.4e}"
                rows.append((name, shots, metric, value, stderr))
            if entry["output_type"] == "loglikelihood_rolling":
                break  # the same for every K
    widths = [max(len(str(row[i])) for row in rows) for i in range(5)]
    lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def model_name(checkpoint: str | os.PathLike) -> str:
    """What results call a checkpoint: one inside a training run (`runs/mine/final`) is named after the run."""
    path = Path(checkpoint).resolve()
    return f"{path.parent.name}-{path.name}" if (path.parent / "metrics.jsonl").is_file() else path.name


def figure(results: dict[str, Any]) -> Figure | None:
    """Accuracy against K, one line per task (GPT-3's figure), with standard-error bars; a K capped for
    some prompts (fewer examples fit the context or the few-shot pool) is drawn hollow. None when no task
    has an accuracy."""
    lines = {
        name: [(int(k), at_k["metrics"][metric], at_k.get("capped", 0) > 0) for k, at_k in entry["shots"].items()]
        for name, entry in results["tasks"].items()
        if (metric := _accuracy(entry)) is not None
    }
    if not lines:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawing, axes = plt.subplots(figsize=(6, 4))
    for name, points in lines.items():
        shots = [k for k, _, _ in points]
        values = [m["value"] for _, m, _ in points]
        errors = [m["stderr"] or 0.0 for _, m, _ in points]
        color = axes.errorbar(shots, values, yerr=errors, capsize=3, label=name).lines[0].get_color()
        for cut in (False, True):
            marked = [(k, m["value"]) for k, m, capped in points if capped == cut]
            if marked:
                axes.plot(*zip(*marked), "o", color=color, markerfacecolor="white" if cut else color, zorder=3)
    if any(capped for points in lines.values() for _, _, capped in points):
        axes.plot([], [], "o", color="gray", markerfacecolor="white", label=CAPPED_LABEL)
    axes.set_xticks(sorted({k for points in lines.values() for k, _, _ in points}))
    axes.set_xlabel("examples in context (K)")
    axes.set_ylabel("accuracy (± standard error)")
    axes.set_title(f"{model_name(results['model']) if results['model'] else 'model'}: zero-, one- and few-shot")
    axes.set_ylim(0, 1)
    axes.grid(alpha=0.3)
    axes.legend()
    drawing.tight_layout()
    return drawing


def _accuracy(entry: dict[str, Any]) -> str | None:
    """The metric an entry plots: its output type's accuracy, under the first filter that reports it."""
    wanted = ACCURACY.get(entry["output_type"])
    metrics = next(iter(entry["shots"].values()))["metrics"]
    return next((m for m in metrics if wanted and m.split(",")[0] == wanted), None)


def plot(results: dict[str, Any], path: str | os.PathLike) -> bool:
    """`figure` written to `path` as PNG; False when there is nothing to plot."""
    drawing = figure(results)
    if drawing is not None:
        atomic.write_figure(path, drawing)
    return drawing is not None


def check_out(out: str | os.PathLike) -> None:
    """Refuse an output directory that cannot be made, or that holds an earlier evaluation's files
    (nothing is overwritten): checked before the work, so that none of it is lost at the end."""
    out = Path(out)
    check_not_under_a_file(out, out)
    if out.is_dir():
        earlier = sorted(p.name for p in out.iterdir() if p.name in (RESULTS, PLOT) or SAMPLES.fullmatch(p.name))
        if earlier:
            shown = ", ".join(earlier[:3]) + (", ..." if len(earlier) > 3 else "")
            raise GptlabError(f"{out} already holds an evaluation ({shown}); choose another output directory "
                              f"or move those files away")


def to_json(results: dict[str, Any]) -> str:
    """results.json's text: the results without the logged samples, which have files of their own."""
    return json.dumps({key: value for key, value in results.items() if key != "samples"}, indent=2) + "\n"


def write(results: dict[str, Any], out: str | os.PathLike) -> list[Path]:
    """results.json, accuracy_vs_shots.png and, where samples were logged, one samples_<task>_<K>shot.jsonl
    per task and K, each written atomically into `out` (which must hold no earlier evaluation); the paths."""
    out = Path(out)
    check_out(out)
    atomic.write_text(out / RESULTS, to_json(results))
    written = [out / RESULTS]
    if plot(results, out / PLOT):
        written.append(out / PLOT)
    for name, records in results.get("samples", {}).items():
        path = out / f"samples_{_UNSAFE.sub('_', name)}.jsonl"
        atomic.write_text(path, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records))
        written.append(path)
    return written
