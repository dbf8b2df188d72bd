"""The `gptlab` command: one sub-command per pipeline stage, each with its own --help."""

from __future__ import annotations

import argparse
import sys

from gptlab.cli import convert, data, eval, finetune, generate, model, predict, quickstart, scale, serve, tokenizer, train
from gptlab.errors import GptlabError, Interrupted

VERBS = (quickstart, train, finetune, predict, generate, serve, eval, scale, model, tokenizer, convert, data)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gptlab",
        description="GPT-1/2/3 from paper to practice: tokenizers, models, checkpoints, generation.",
        epilog="Run `gptlab VERB --help` for the options of each verb.",
    )
    verbs = parser.add_subparsers(title="verbs", metavar="VERB", required=True)
    for verb in VERBS:
        verb.register(verbs)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except Interrupted as e:
        print(f"gptlab: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except GptlabError as e:
        print(f"gptlab: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print("gptlab: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:  # e.g. `gptlab generate ... | head`
        sys.stderr.close()
        sys.exit(0)
