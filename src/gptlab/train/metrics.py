"""What a run shows: metrics.jsonl, a loss.png curve, and optionally TensorBoard."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gptlab import atomic
from gptlab.errors import GptlabError


class MetricsLog:
    """Append-only JSONL, one object per logged step. On resume, rows after the resumed step are
    dropped first, so the file reads as if the run had never stopped."""

    def __init__(self, path: Path, resume_step: int | None, tensorboard_dir: Path | None = None):
        self.path = path
        self.rows: list[dict[str, Any]] = []
        if resume_step is not None and path.is_file():
            for line in path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by the kill
                if row.get("step", 0) <= resume_step:
                    self.rows.append(row)
        atomic.write_text(path, "".join(json.dumps(r) + "\n" for r in self.rows))
        self._file = open(path, "a")
        self._tb = _tensorboard(tensorboard_dir) if tensorboard_dir is not None else None

    def log(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        if self._tb is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)):
                    self._tb.add_scalar(key, value, row["step"])

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def _tensorboard(directory: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise GptlabError("tensorboard: true needs the tensorboard package: pip install tensorboard") from None
    return SummaryWriter(str(directory))


def plot_loss(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """Training loss (raw and smoothed) and validation loss against steps, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    if train:
        steps, losses = zip(*train)
        smooth = len(losses) >= _MIN_POINTS_TO_SMOOTH
        ax.plot(steps, losses, color="tab:blue", alpha=0.3 if smooth else 1.0, linewidth=1, label="train loss")
        if smooth:
            ax.plot(steps, _ema(losses), color="tab:blue", linewidth=2, label="train loss (smoothed)")
    if val:
        steps, losses = zip(*val)
        ax.plot(steps, losses, "o-", color="tab:orange", linewidth=2, label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic.write_figure(path, fig)


_MIN_POINTS_TO_SMOOTH = 50


def _ema(values: tuple[float, ...], alpha: float = 0.1) -> list[float]:
    """Exponential moving average, bias-corrected so the curve does not start pinned to the first value."""
    out, avg = [], 0.0
    for n, v in enumerate(values, start=1):
        avg = alpha * v + (1 - alpha) * avg
        out.append(avg / (1 - (1 - alpha) ** n))
    return out
