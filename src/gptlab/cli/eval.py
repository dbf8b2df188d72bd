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
            "YAML over local JSONL files) at each number of examples K, with the harness's prompts, few-shot draws "
            "and metrics, so the numbers match `lm_eval` on the same model. Writes results.json and "
            "accuracy_vs_shots.png."
        ),
    )
    parser.add_argument("checkpoint", type=Path, help="gptlab checkpoint directory")
    parser.add_argument("--task", action="extend", nargs="+", default=[], metavar="NAME_OR_YAML",
                        help="task YAML files or built-in task names")
    parser.add_argument("--shots", type=int, nargs="+", default=[0], metavar="K",
                        help="numbers of in-context examples, e.g. --shots 0 1 5 (default 0)")
    parser.add_argument("--text", type=Path, action="append", default=[], metavar="FILE",
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


def default_out(checkpoint: Path) -> Path:
    """runs/eval/<the checkpoint's name>."""
    from gptlab.eval.report import model_name

    return Path("runs") / "eval" / model_name(checkpoint)


def run(args: argparse.Namespace) -> None:
    from gptlab.errors import GptlabError
    from gptlab.eval import report
    from gptlab.eval.tasks import load_task

    if not args.task and not args.text:
        raise GptlabError("nothing to evaluate: pass --task (a task YAML) or --text FILE")
    tasks = [load_task(t) for t in args.task]  # bad task files fail at once, before PyTorch is imported
    out = args.out or default_out(args.checkpoint)
    report.check_out(out)

    import gptlab
    from gptlab.eval.runner import evaluate
    from gptlab.threads import use_threads

    use_threads(args.threads)
    lm = gptlab.load(args.checkpoint, device=args.device)
    results = evaluate(lm, tasks, args.shots, texts=args.text, limit=args.limit, batch_size=args.batch_size,
                       progress=sys.stderr.isatty(), log_samples=args.log_samples)
    written = report.write(results, out)
    if args.json:
        print(report.to_json(results), end="")
    else:
        print(report.table(results))
        print("wrote " + ", ".join(map(str, written)))
