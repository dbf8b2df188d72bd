"""The verbs' Python calls: each takes a config (object, recipe or YAML file) and keyword settings over it, does
the verb's work and returns what it made, printing nothing (progress bars aside).

    result = gptlab.train("shakespeare-char", max_steps=200, out="runs/x")
    print(result.val_bpb, result.final)
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from gptlab import settings as _settings
from gptlab.finetune.config import FinetuneConfig
from gptlab.loading import LoadConfig
from gptlab.recipes.quickstart import RECIPE as QUICKSTART_RECIPE
from gptlab.recipes.quickstart import QuickstartConfig
from gptlab.serve.config import ServeConfig
from gptlab.settings import AT_LEAST_1
from gptlab.train.config import TrainConfig, build_config

if TYPE_CHECKING:
    from gptlab.scale.plan import Estimate, Plan
    from gptlab.eval.metrics import Metric
    from gptlab.serve.server import Server
    from gptlab.train.trainer import TrainResult


def train(config: TrainConfig | str | os.PathLike | None = None, **settings: Any) -> TrainResult:
    """Pretrain: `config` is a TrainConfig, a packaged recipe's name or a YAML file; `settings` override it."""
    from gptlab.train.trainer import train as run

    return run(_train_config(TrainConfig, config, settings))


def finetune(config: FinetuneConfig | str | os.PathLike | None = None, **settings: Any) -> TrainResult:
    """Fine-tune a checkpoint (the `checkpoint` and `train` settings) on a task, GPT-1 style, or as a language
    model; `config` is a FinetuneConfig or a YAML file, `settings` override it."""
    from gptlab.finetune.run import finetune as run

    return run(_train_config(FinetuneConfig, config, settings))


def quickstart(config: QuickstartConfig | None = None, **settings: Any) -> TrainResult:
    """The main job: a BPE and a small GPT trained on this Python's standard library within `minutes`."""
    from gptlab.data.stdlib import stdlib_sources
    from gptlab.train.trainer import train as run

    knobs = _settings.make(QuickstartConfig, config, settings)
    files = [str(f) for f in stdlib_sources()]
    return run(build_config(QUICKSTART_RECIPE, {"data": files, **knobs.train_settings()}))


@dataclass
class PredictConfig(LoadConfig):
    """How a fine-tuned checkpoint labels rows."""

    batch_size: Annotated[int, AT_LEAST_1] = 32
    """Examples per forward pass."""


@dataclass
class Predictions:
    rows: list[dict[str, Any]]
    """Per input row, in order: {"label", "probabilities"} (and "correct" when every row had its label)."""
    accuracy: Metric | None
    """The share of correct rows, with its standard error; None unless every row had its label."""
    output: Path | None = None
    """The JSONL file written, if any."""
    replaced: bool = False
    """Whether that file replaced one that was there."""

    def jsonl(self) -> str:
        """The predictions as JSON lines, one per row."""
        return "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in self.rows)


def predict(
    checkpoint: str | os.PathLike, rows: Iterable[dict[str, Any]] | str | os.PathLike,
    output: str | os.PathLike | None = None, config: PredictConfig | None = None, **settings: Any,
) -> Predictions:
    """Label `rows` (dicts, or a JSONL file of them) with a fine-tuned checkpoint; with `output`, also write the
    predictions there as JSONL (atomically, never over the input)."""
    from gptlab import atomic
    from gptlab.finetune.predict import accuracy, check_output
    from gptlab.finetune.predict import predict as run
    from gptlab.finetune.tasks import read_rows

    config = _settings.make(PredictConfig, config, settings)
    from_file = isinstance(rows, (str, os.PathLike))
    if output is not None:
        check_output(output, rows if from_file else os.devnull)
    rows = read_rows(Path(rows)) if from_file else rows
    predictions = run(config.load(checkpoint), rows, config.batch_size)
    result = Predictions(predictions, accuracy(predictions))
    if output is not None:
        output = Path(output)
        result.output, result.replaced = output, output.exists()
        atomic.write_text(output, result.jsonl())
    return result


def serve(
    checkpoint: str | os.PathLike, config: ServeConfig | None = None, *, ready: Callable[[Server], None] | None = None,
    **settings: Any,
) -> None:
    """Serve `checkpoint` over OpenAI's API until stopped (blocking). `ready(server)` is called once the port is
    bound and the model loaded: to say where it listens, or to keep the server and `stop()` it from another
    thread."""
    from gptlab.serve.server import Server

    server = Server(checkpoint, _settings.make(ServeConfig, config, settings))
    if ready is not None:
        ready(server)
    server.run()


def scale_predict(sweep: str | os.PathLike, flops: float | None = None, params: float | None = None,
                  tokens: float | None = None) -> Estimate:
    """The validation loss the finished sweep in `sweep` predicts for a run of `flops`, or of `params`
    non-embedding parameters trained on `tokens` tokens (`gptlab scale predict`)."""
    from gptlab.scale import report
    from gptlab.scale.plan import predict

    return predict(report.read(sweep), flops, params, tokens)


def scale_plan(sweep: str | os.PathLike, flops: float, out: str | os.PathLike | None = None) -> Plan:
    """The run to make with `flops` of training compute, by the finished sweep in `sweep` (`gptlab scale plan`):
    its shape, tokens, predicted loss and the `gptlab train` settings, for `out` (default SWEEP/planned-C)."""
    from gptlab.scale.plan import plan

    return plan(sweep, flops, out)


def _train_config(cls: type[TrainConfig], config: Any, settings: dict[str, Any]) -> TrainConfig:
    if isinstance(config, cls):
        return dataclasses.replace(config, **settings) if settings else config
    return build_config(config, settings, cls)
