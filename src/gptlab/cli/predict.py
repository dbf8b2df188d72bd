"""`gptlab predict`: label the rows of a JSONL file with a GPT-1 fine-tuned checkpoint."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gptlab.cli.options import add_settings, given
from gptlab.api import PredictConfig


def register(verbs: argparse._SubParsersAction) -> None:
    parser = verbs.add_parser(
        "predict",
        help="predict labels for JSONL rows with a fine-tuned task checkpoint",
        description=(
            "Read rows shaped like the task's training rows (no label needed) and write one JSON object per row, "
            'in order: {"label": ..., "probabilities": {label: p}}, or for multiple choice the chosen index and one '
            'probability per choice. When every row has its label, each line also says whether it is "correct" and '
            "the accuracy is printed on stderr."
        ),
    )
    parser.add_argument("checkpoint", type=Path, help="checkpoint directory written by gptlab finetune")
    parser.add_argument("--input", type=Path, required=True, help="JSONL file of rows to label")
    parser.add_argument("--output", type=Path,
                        help="JSONL file to write (written atomically, never over --input; default: stdout)")
    add_settings(parser, PredictConfig, skip=("precision",))
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    import gptlab

    result = gptlab.predict(args.checkpoint, args.input, args.output, PredictConfig(**given(args, PredictConfig)))
    if result.output is None:
        sys.stdout.write(result.jsonl())
    else:
        replaced = " (replacing the file that was there)" if result.replaced else ""
        print(f"wrote {len(result.rows)} predictions to {result.output}{replaced}", file=sys.stderr)
    if (score := result.accuracy) is not None:
        stderr = "" if score.stderr is None else f" ± {score.stderr:.4f}"
        correct = sum(p["correct"] for p in result.rows)
        print(f"accuracy {score.value:.4f}{stderr} ({correct} of {len(result.rows)} rows correct)", file=sys.stderr)
