"""What an evaluation leaves behind: results.json, a terminal table, and accuracy against K."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from gptlab import atomic

ACCURACY = {"multiple_choice": "acc", "loglikelihood": "acc", "generate_until": "exact_match"}
"""The metric plotted against K for each output type."""


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


def plot(results: dict[str, Any], path: str | os.PathLike) -> bool:
    """Accuracy against K, one line per task (GPT-3's figure); False when no task has an accuracy."""
    lines = {
        name: ([int(k) for k in entry["shots"]], [v["metrics"][ACCURACY[entry["output_type"]]]["value"] for v in entry["shots"].values()])
        for name, entry in results["tasks"].items()
        if ACCURACY.get(entry["output_type"]) in next(iter(entry["shots"].values()))["metrics"]
    }
    if not lines:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for name, (shots, values) in lines.items():
        axes.plot(shots, values, marker="o", label=name)
    shots = sorted({k for ks, _ in lines.values() for k in ks})
    axes.set_xticks(shots)
    axes.set_xlabel("examples in context (K)")
    axes.set_ylabel("accuracy")
    axes.set_title(f"{model_name(results['model']) if results['model'] else 'model'}: zero-, one- and few-shot")
    axes.set_ylim(0, 1)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    atomic.write_figure(path, figure)
    return True


def write(results: dict[str, Any], out: str | os.PathLike) -> list[Path]:
    """results.json and accuracy_vs_shots.png in `out`, each written atomically; the paths written."""
    out = Path(out)
    atomic.write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    written = [out / "results.json"]
    if plot(results, out / "accuracy_vs_shots.png"):
        written.append(out / "accuracy_vs_shots.png")
    return written
