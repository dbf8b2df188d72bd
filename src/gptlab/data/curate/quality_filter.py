"""GPT-3's quality filter (Appendix A): keep a document iff np.random.pareto(alpha) > 1 - score.

The Pareto draw keeps most high-scoring documents and some low-scoring ones, so the filtered
corpus is not limited to text that looks like the curated sets. P(pareto(alpha) > t) = (1 + t)^-alpha,
so a document with score s survives with probability (2 - s)^-alpha; GPT-3 used alpha = 9.

Each document's draw comes from a hash of (seed, document id) instead of a shared random stream,
so its decision is the same however the corpus is sharded, batched, ordered or parallelised.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

import numpy as np

from gptlab import atomic
from gptlab.errors import GptlabError

GPT3_ALPHA = 9.0


def keep_probability(scores: Sequence[float] | np.ndarray, alpha: float = GPT3_ALPHA) -> np.ndarray:
    """Chance that `pareto_keep` keeps a document of each score: (2 - score)^-alpha."""
    scores = _checked_scores(scores, alpha)
    return (2.0 - scores) ** -alpha


def pareto_keep(
    scores: Sequence[float] | np.ndarray,
    ids: Sequence[str],
    alpha: float = GPT3_ALPHA,
    seed: int = 0,
) -> np.ndarray:
    """Boolean keep mask: pareto(alpha) > 1 - score, with each draw fixed by (seed, id).

    Documents sharing an id share their draw, so give every document a unique id.
    """
    scores = _checked_scores(scores, alpha)
    if len(ids) != len(scores):
        raise GptlabError(f"pareto_keep got {len(scores)} scores but {len(ids)} ids")
    if not 0 <= seed < 2**64:
        raise GptlabError(f"seed must be an integer in [0, 2**64), got {seed}")
    return _pareto_draws(ids, alpha, seed) > 1.0 - scores


def _checked_scores(scores: Sequence[float] | np.ndarray, alpha: float) -> np.ndarray:
    if not alpha > 0:
        raise GptlabError(f"the Pareto shape alpha must be positive, got {alpha}")
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1 or not np.all((scores >= 0) & (scores <= 1)):  # also rejects NaN
        raise GptlabError("quality scores must be a flat sequence of probabilities in [0, 1]")
    return scores


def _pareto_draws(ids: Sequence[str], alpha: float, seed: int) -> np.ndarray:
    """One Pareto (Lomax, numpy's `pareto`) draw per id, by inverting its survival function.

    A 64-bit keyed BLAKE2 hash of the id gives a uniform u in (0, 1); u^(-1/alpha) - 1 then has
    P(X > t) = (1 + t)^-alpha, the distribution of np.random.pareto(alpha), with no per-document
    generator to construct.
    """
    key = int(seed).to_bytes(8, "little")
    bits = np.fromiter(
        (int.from_bytes(hashlib.blake2b(i.encode("utf-8"), digest_size=8, key=key).digest(), "little") for i in ids),
        dtype=np.uint64,
        count=len(ids),
    )
    uniform = ((bits >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53  # 53 random bits, never 0 or 1
    return uniform ** (-1.0 / alpha) - 1.0


def plot_scores(
    scores: np.ndarray,
    kept: np.ndarray,
    path: str | os.PathLike,
    alpha: float = GPT3_ALPHA,
) -> None:
    """PNG of the score histogram (all and kept documents) under the keep-probability curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = _checked_scores(scores, alpha)
    kept = np.asarray(kept, dtype=bool)
    if kept.shape != scores.shape:
        raise GptlabError(f"plot_scores got {len(scores)} scores but a keep mask of shape {kept.shape}")
    bins = np.linspace(0.0, 1.0, 51)
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    ax.hist(scores, bins=bins, color="tab:gray", alpha=0.5, label=f"all ({len(scores):,})")
    ax.hist(scores[kept], bins=bins, color="tab:blue", alpha=0.7, label=f"kept ({int(kept.sum()):,})")
    ax.set_xlabel("quality classifier score")
    ax.set_ylabel("documents")
    ax.set_xlim(0.0, 1.0)
    curve = ax.twinx()
    grid = np.linspace(0.0, 1.0, 201)
    curve.plot(
        grid, keep_probability(grid, alpha), color="tab:red", linewidth=2, label=f"keep probability (α={alpha:g})"
    )
    curve.set_ylabel("keep probability")
    curve.set_ylim(0.0, 1.05)
    handles, labels = ax.get_legend_handles_labels()
    more_handles, more_labels = curve.get_legend_handles_labels()
    ax.legend(handles + more_handles, labels + more_labels, loc="upper left")
    ax.set_title("Quality filter: classifier scores and Pareto keep rule")
    fig.tight_layout()
    atomic.write_figure(path, fig)
