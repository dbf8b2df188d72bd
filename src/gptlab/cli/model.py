"""`gptlab model`: inspect presets and checkpoints without allocating their weights."""

from __future__ import annotations

import argparse
import json

from gptlab.model.config import PRESETS


def register(verbs: argparse._SubParsersAction) -> None:
    parser = verbs.add_parser("model", help="list presets, show a model's shape and parameter count")
    sub = parser.add_subparsers(metavar="ACTION", required=True)
    info = sub.add_parser(
        "info",
        help="shape and parameter count of a preset or checkpoint (built on the meta device: no memory)",
        description="Build the model on PyTorch's meta device and report its shape and unique parameter count.",
    )
    info.add_argument("name", help=f"a preset ({', '.join(PRESETS)}) or a checkpoint directory")
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")
    info.set_defaults(run=run_info)
    listing = sub.add_parser("list", help="list the presets")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(run=run_list)


def run_info(args: argparse.Namespace) -> None:
    from gptlab.checkpoint.info import model_info
    from gptlab.model.describe import table

    info = model_info(args.name)
    print(json.dumps(info, indent=2) if args.json else table(info))


def run_list(args: argparse.Namespace) -> None:
    from gptlab.model.describe import describe_presets, presets_table

    rows = describe_presets()
    print(json.dumps(rows, indent=2) if args.json else presets_table(rows))
