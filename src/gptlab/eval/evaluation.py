"""`gptlab.evaluate`: one call that checks, loads, evaluates and writes, and prints nothing.

    import gptlab
    results = gptlab.evaluate("runs/mine/final", tasks=["demo/capitals.yaml"], shots=[0, 1, 3])
    results.metrics["capitals"][3]["acc"]

Task files, text files and the output directory are checked before PyTorch is imported or the model
loaded, so a bad input costs no work.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gptlab.errors import GptlabError
from gptlab.eval import report
from gptlab.eval.config import EvalConfig
from gptlab.eval.tasks import load_tasks
from gptlab.files import read_text

if TYPE_CHECKING:
    from gptlab.checkpoint.io import LanguageModel


@dataclass
class EvalResults:
    results: dict[str, Any]
    """What results.json holds (and the logged samples, under "samples", when asked for)."""
    paths: list[Path]
    """The files written: results.json, the plot, the samples files."""

    @property
    def metrics(self) -> dict[str, dict[int, dict[str, float]]]:
        """Task -> K -> metric -> value."""
        return {name: {int(k): {m: v["value"] for m, v in at_k["metrics"].items()} for k, at_k in entry["shots"].items()}
                for name, entry in self.results["tasks"].items()}

    def table(self) -> str:
        return report.table(self.results)

    def to_json(self) -> str:
        return report.to_json(self.results)


def evaluate(
    checkpoint_or_lm: str | os.PathLike | LanguageModel,
    config: EvalConfig | None = None,
    *,
    progress: bool = False,
    **settings: Any,
) -> EvalResults:
    """Each task at each K and the perplexity of each text file; results written under `out` (default
    runs/eval/<checkpoint name>). `settings` are EvalConfig's fields, over `config`."""
    given = not isinstance(checkpoint_or_lm, str | os.PathLike)
    checkpoint = getattr(checkpoint_or_lm, "path", None) if given else checkpoint_or_lm
    config = dataclasses.replace(config or EvalConfig(), **{**settings, "checkpoint": _text(checkpoint)})
    config.check()
    texts = {Path(path): _document(Path(path)) for path in config.texts}
    loaded = load_tasks(config.tasks)  # bad task files fail here, before PyTorch is imported
    out = Path(config.out) if config.out else default_out(config.checkpoint)
    report.check_out(out)

    from gptlab.eval.runner import evaluate_loaded
    from gptlab.threads import use_threads

    if given:
        use_threads(config.threads)  # config.load does it for a model it loads
    lm = checkpoint_or_lm if given else config.load(config.checkpoint)
    results = evaluate_loaded(lm, loaded, config.shots, texts=texts, limit=config.limit, batch_size=config.batch_size,
                              progress=progress, log_samples=config.log_samples)
    return EvalResults(results, report.write(results, out))


def default_out(checkpoint: str | os.PathLike | None) -> Path:
    """runs/eval/<the checkpoint's name>."""
    if checkpoint is None:
        raise GptlabError("the model has no checkpoint path to name its results after: give an output directory")
    return Path("runs") / "eval" / report.model_name(checkpoint)


def _text(path: str | os.PathLike | None) -> str | None:
    return None if path is None else str(path)


def _document(path: Path) -> str:
    """A text file to score, read before any scoring: an empty one has no perplexity."""
    text = read_text(path)
    if not text.strip():
        raise GptlabError(f"{path} holds no text (it is empty or only whitespace): nothing to score")
    return text
