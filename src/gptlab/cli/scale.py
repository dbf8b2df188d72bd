"""`gptlab scale`: sweep small models, fit the scaling laws, predict and plan a bigger run."""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number such as 3e5, got {text!r}")
    return value


def register(verbs: argparse._SubParsersAction) -> None:
    from gptlab.scale import shapes  # its rules word the help; light (no torch)

    parser = verbs.add_parser("scale", help="sweep model sizes, fit the scaling law, predict and plan a bigger run")
    sub = parser.add_subparsers(metavar="ACTION", required=True)

    sweep = sub.add_parser(
        "sweep",
        help="train a family of models of increasing size and fit L(C) (and L(N, D)) to their losses",
        description=(
            "Train models of increasing size on the same data with the same recipe, each an ordinary gptlab training "
            "run in OUT/runs/, then fit L(C) = a·C^-b + c (and L(N, D) = E + A/N^alpha + B/D^beta when there are "
            "several token budgets per size) and write OUT/scaling.json and OUT/scaling.png. Shapes: "
            f"{shapes.SHAPE_RULE}. Sizes are non-embedding parameters N; compute: {shapes.FLOPS_RULE}; "
            f"{shapes.HYPERPARAMETER_RULE}. Rerun the command to continue: finished runs are skipped, an interrupted "
            "one resumes."
        ),
    )
    sweep.add_argument("--data", nargs="+", action="extend", required=True, metavar="PATH",
                       help="text files, folders, JSONL or token shards, as for `gptlab train`")
    sweep.add_argument("--tokenizer", default="byte", help="byte, char, bpe:N (fitted once, shared) or a directory (default byte)")
    family = sweep.add_mutually_exclusive_group(required=True)
    family.add_argument("--sizes", nargs="+", type=_number, metavar="N", help="non-embedding parameter counts")
    family.add_argument("--flops", nargs=2, type=_number, metavar=("C_MIN", "C_MAX"),
                        help="compute budgets from C_MIN to C_MAX FLOPs, evenly spaced in log; each trains the largest "
                             "shape whose tokens fit it")
    sweep.add_argument("--points", type=int, default=5, help="budgets between C_MIN and C_MAX (default 5)")
    sweep.add_argument("--tokens-per-param", nargs="+", type=_number, default=[20.0], metavar="R",
                       help="training tokens per parameter; several give several budgets per size and fit L(N, D) "
                            "(default 20, about compute-optimal)")
    sweep.add_argument("--seq-len", type=int, default=128, help="training context (default 128)")
    sweep.add_argument("--batch-size", type=int, help="sequences per step (default: 0.2920·C^0.3271 tokens' worth)")
    sweep.add_argument("--lr-scale", type=_number, default=1.0, help="multiplies the learning-rate rule (default 1)")
    sweep.add_argument("--eval-windows", type=int, default=200, help="validation windows scored at the end (default 200)")
    sweep.add_argument("--val-fraction", type=_number, default=0.1, help="held-out share of the data (default 0.1)")
    sweep.add_argument("--seed", type=int, default=1337)
    sweep.add_argument("--out", type=Path, required=True, help="sweep directory (rerun the command to continue)")
    sweep.add_argument("--executor", default="local", choices=("local", "ray"),
                       help="runs one after another here, or side by side on Ray (a cluster at RAY_ADDRESS, else a local one; "
                            "paths must be on storage every node sees)")
    sweep.add_argument("--threads", type=int, help="CPU threads per run; on Ray the CPUs each run reserves (default 1 there)")
    sweep.add_argument("--device", default="auto", help="auto, cpu, cuda, ... (on Ray, cuda reserves a GPU per run)")
    sweep.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bars")
    sweep.set_defaults(run=run_sweep)

    predict = sub.add_parser(
        "predict",
        help="the validation loss (and bits per byte) of a run not yet made, from a sweep's fit",
        description="Predict the final validation loss of a run with --flops C of training compute (by L(C)), or with "
                    "--params N non-embedding parameters and --tokens D (by L(N, D)), with a 95%% interval.",
    )
    predict.add_argument("dir", type=Path, help="a sweep directory (holding scaling.json)")
    predict.add_argument("--flops", type=_number, help="training compute of the run")
    predict.add_argument("--params", type=_number, help="non-embedding parameters of the run")
    predict.add_argument("--tokens", type=_number, help="training tokens of the run")
    predict.set_defaults(run=run_predict)

    plan = sub.add_parser(
        "plan",
        help="the model size and token count for a compute budget, as a `gptlab train` command",
        description="Recommend the shape and token count for --flops C of training compute from a sweep's fit, with "
                    "the sweep's recipe, and print it as a `gptlab train` command with its predicted loss.",
    )
    plan.add_argument("dir", type=Path, help="a sweep directory (holding scaling.json)")
    plan.add_argument("--flops", type=_number, required=True, help="training compute to spend")
    plan.add_argument("--out", type=Path, help="run directory of the planned run (default DIR/planned-C)")
    plan.set_defaults(run=run_plan)


def run_sweep(args: argparse.Namespace) -> None:
    from gptlab.errors import Interrupted
    from gptlab.scale.sweep import SweepConfig, run_sweep

    fields = {f.name for f in dataclasses.fields(SweepConfig)}
    config = SweepConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in vars(args).items() if k in fields})
    try:
        result = run_sweep(config)
    except Interrupted as e:
        raise Interrupted(f"{e}; rerun the same command to continue the sweep", e.exit_code - 128) from None
    print(result.report())


def run_predict(args: argparse.Namespace) -> None:
    from gptlab.scale import report
    from gptlab.scale.plan import predict

    estimate = predict(report.read(args.dir), args.flops, args.params, args.tokens)
    print(estimate.answer())
    _warn(estimate.warnings)


def run_plan(args: argparse.Namespace) -> None:
    from gptlab.scale.plan import plan

    result = plan(args.dir, args.flops, args.out)
    print(result.describe())
    _warn(result.warnings)


def _warn(warnings: list[str]) -> None:
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
