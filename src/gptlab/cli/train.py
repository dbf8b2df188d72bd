"""`gptlab train`: pretrain a GPT from a YAML config, any key overridden on the command line."""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
from collections.abc import Callable
from typing import Any

from gptlab import recipes
from gptlab.cli.options import add_settings
from gptlab.model import GPTConfig
from gptlab.train.config import TrainConfig


def register(verbs: argparse._SubParsersAction) -> None:
    parser = verbs.add_parser(
        "train",
        help="pretrain a GPT on text, JSONL or token shards (resumable, torchrun-ready)",
        description=(
            "Pretrain a GPT with the GPT-3 recipe. Settings come from CONFIG (a YAML file, or a packaged recipe: "
            f"{', '.join(recipes.names())}) and any "
            "--key value on the command line; model fields (--n-layer, --d-model, --resid-pdrop, "
            "--attention global,local, --window-size, ...) override the --model preset. Scale out with "
            "`torchrun --nproc_per_node N -m gptlab train ...`."
        ),
    )
    parser.add_argument("config", nargs="?", help="YAML config file, or a packaged recipe's name")
    add_settings(parser.add_argument_group("training"), TrainConfig)
    model = parser.add_argument_group("model fields (override the preset)")
    for f in dataclasses.fields(GPTConfig):
        model.add_argument("--" + f.name.replace("_", "-"), dest=f"model.{f.name}", default=argparse.SUPPRESS, metavar="VALUE")
    parser.set_defaults(run=run)


def overrides(args: argparse.Namespace) -> dict:
    """The keys given on the command line: the settings, typed, and the model fields as typed in."""
    return {key: value for key, value in vars(args).items() if key not in ("config", "run")}


def resumably(run: Callable[[Any], Any], config: Any) -> Any:
    """`run(config)`; when a signal stops it, the error says which command continues the run."""
    from gptlab.errors import Interrupted

    try:
        return run(config)
    except Interrupted as e:
        argv = [a for a in sys.argv[1:] if a not in ("--resume", "--no-resume")]
        raise Interrupted(f"{e}; continue with: {shlex.join(['gptlab', *argv, '--resume'])}", e.exit_code - 128) from None


def run(args: argparse.Namespace) -> None:
    import gptlab
    from gptlab.train.config import build_config

    result = resumably(gptlab.train, build_config(args.config, overrides(args)))
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun, rank 0 reports for every process
    if result.val_bpb is not None:
        print(f"validation: {result.val_loss:.4f} nats/token, {result.val_bpb:.4f} bits/byte after {result.step} steps")
    print(f"checkpoint: {result.final}\nloss plot:  {result.out / 'loss.png'}\nmetrics:    {result.out / 'metrics.jsonl'}")
