"""`gptlab eval`: zero-, one- and few-shot evaluation (GPT-2/3) and perplexity of a text file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gptlab.cli.options import add_threads


def register(verbs: argparse._SubParsersAction) -> None:
    parser = verbs.add_parser(
        "eval",
        help="zero-/one-/few-shot accuracy on tasks (lm-evaluation-harness YAML), perplexity of a text",
        description=(
            "Evaluate a checkpoint in context, as GPT-2 and GPT-3 did: each task (an lm-evaluation-harness task "
            "YAML over local data files, run by the harness's own task manager and evaluator) at each number of "
            "examples K, so the numbers match `lm_eval` on the same model. Writes results.json and "
            "accuracy_vs_shots.png."
        ),
    )
    parser.add_argument("checkpoint", type=Path, help="gptlab checkpoint directory")
    parser.add_argument("--task", dest="tasks", action="extend", nargs="+", default=[], metavar="NAME_OR_YAML",
                        help="task YAML files or built-in task names")
    parser.add_argument("--shots", type=int, nargs="+", default=[0], metavar="K",
                        help="numbers of in-context examples, e.g. --shots 0 1 5 (default 0)")
    parser.add_argument("--text", dest="texts", type=Path, action="append", default=[], metavar="FILE",
                        help="report perplexity and bits per byte of a text file (repeatable)")
    parser.add_argument("--limit", type=int, help="evaluate only the first N documents of each task")
    parser.add_argument("--batch-size", type=int, default=16, help="requests scored per forward pass (default 16)")
    parser.add_argument("--out", type=Path, help="output directory, which must hold no earlier evaluation "
                                                   "(default runs/eval/<checkpoint name>)")
    parser.add_argument("--log-samples", action="store_true",
                        help="also write each task document's requests, the model's answers and their scores to "
                             "OUT/samples_<task>_<K>shot.jsonl, in lm-evaluation-harness's --log_samples fields")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    parser.add_argument("--device", default="auto", help="torch device: auto (GPU if present), cpu, cuda, ...")
    add_threads(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from gptlab.eval.evaluation import evaluate

    results = evaluate(args.checkpoint, tasks=args.tasks, shots=args.shots, texts=args.texts, limit=args.limit,
                       batch_size=args.batch_size, out=args.out, log_samples=args.log_samples, device=args.device,
                       threads=args.threads, progress=sys.stderr.isatty())
    if args.json:
        print(results.to_json(), end="")
    else:
        print(results.table())
        print("wrote " + ", ".join(map(str, results.paths)))
