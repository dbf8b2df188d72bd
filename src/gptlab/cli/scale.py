"""`gptlab scale`: sweep small models, fit the scaling laws, predict and plan a bigger run."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from gptlab.cli.options import DeferredFlags, given


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
    from gptlab.scale.sweep import SweepConfig

    parser = verbs.add_parser("scale", help="sweep model sizes, fit the scaling law, predict and plan a bigger run")
    sub = parser.add_subparsers(metavar="ACTION", required=True, parser_class=DeferredFlags)

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
        config=SweepConfig,
    )
    sweep.set_defaults(run=run_sweep)

    predict = _from_sweep(
        sub, "predict", "the validation loss (and bits per byte) of a run not yet made, from a sweep's fit",
        "Predict the final validation loss of a run with --flops C of training compute (by L(C)), or with --params N "
        "non-embedding parameters and --tokens D (by L(N, D)), with a 95%% interval.",
    )
    predict.add_argument("--flops", type=_number, help="training compute of the run")
    predict.add_argument("--params", type=_number, help="non-embedding parameters of the run")
    predict.add_argument("--tokens", type=_number, help="training tokens of the run")
    predict.set_defaults(run=run_predict)

    plan = _from_sweep(
        sub, "plan", "the model size and token count for a compute budget, as a `gptlab train` command",
        "Recommend the shape and token count for --flops C of training compute from a sweep's fit, with the sweep's "
        "recipe, and print it as a `gptlab train` command with its predicted loss.",
    )
    plan.add_argument("--flops", type=_number, required=True, help="training compute to spend")
    plan.add_argument("--out", type=Path, help="run directory of the planned run (default DIR/planned-C)")
    plan.set_defaults(run=run_plan)


def _from_sweep(sub: argparse._SubParsersAction, name: str, help: str, description: str) -> argparse.ArgumentParser:
    """An action that reads a finished sweep's fit."""
    parser = sub.add_parser(name, help=help, description=description)
    parser.add_argument("dir", type=Path, help="a sweep directory (holding scaling.json)")
    return parser


def run_sweep(args: argparse.Namespace) -> None:
    from gptlab.errors import Interrupted
    from gptlab.scale.sweep import SweepConfig, run_sweep

    config = SweepConfig(**given(args, SweepConfig))
    try:
        result = run_sweep(config)
    except Interrupted as e:
        raise Interrupted(f"{e}; rerun the same command to continue the sweep", e.exit_code - 128) from None
    print(result.report())


def run_predict(args: argparse.Namespace) -> None:
    from gptlab.api import scale_predict

    estimate = scale_predict(args.dir, args.flops, args.params, args.tokens)
    print(estimate.answer())
    _warn(estimate.warnings)


def run_plan(args: argparse.Namespace) -> None:
    from gptlab.api import scale_plan

    result = scale_plan(args.dir, args.flops, args.out)
    print(result.describe())
    _warn(result.warnings)


def _warn(warnings: list[str]) -> None:
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
