"""`gptlab predict`: label the rows of a JSONL file with a GPT-1 fine-tuned checkpoint."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


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
    parser.add_argument("--batch-size", type=int, default=32, help="examples per forward pass (default 32)")
    parser.add_argument("--device", default="auto", help="torch device: auto (GPU if present), cpu, cuda, ...")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    import gptlab
    from gptlab import atomic
    from gptlab.finetune.predict import accuracy, check_output, predict
    from gptlab.finetune.tasks import read_rows

    if args.output is not None:
        check_output(args.output, args.input)
    rows = read_rows(args.input)
    predictions = predict(gptlab.load(args.checkpoint, device=args.device), rows, args.batch_size)
    text = "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in predictions)
    if args.output is None:
        sys.stdout.write(text)
    else:
        replaced = " (replacing the file that was there)" if args.output.exists() else ""
        atomic.write_text(args.output, text)
        print(f"wrote {len(predictions)} predictions to {args.output}{replaced}", file=sys.stderr)
    if (score := accuracy(predictions)) is not None:
        stderr = "" if score.stderr is None else f" ± {score.stderr:.4f}"
        correct = sum(p["correct"] for p in predictions)
        print(f"accuracy {score.value:.4f}{stderr} ({correct} of {len(predictions)} rows correct)", file=sys.stderr)
