"""`gptlab eval`: zero-, one- and few-shot evaluation (GPT-2/3) and perplexity of a text file."""

from __future__ import annotations

import argparse
import sys

from gptlab.cli.options import add_settings, given
from gptlab.eval.config import EvalConfig


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
    parser.add_argument("checkpoint", help="gptlab checkpoint directory")
    add_settings(parser, EvalConfig, skip=("checkpoint",))
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from gptlab.eval.evaluation import evaluate

    results = evaluate(args.checkpoint, progress=sys.stderr.isatty(), **given(args, EvalConfig))
    if args.json:
        print(results.to_json(), end="")
    else:
        print(results.table())
        print("wrote " + ", ".join(map(str, results.paths)))
