"""`gptlab data ...`: the GPT-3 corpus pipeline, one verb per stage, or all of them from a YAML file.

Each stage's options are the fields of its settings in `gptlab.data.curate.pipeline`, so a YAML stage
and a command line mean exactly the same thing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gptlab.cli.options import DeferredFlags, given
from gptlab.data.curate import pipeline
from gptlab.data.curate.pipeline import STAGES, StageResult


def register(verbs: argparse._SubParsersAction) -> None:
    parser = verbs.add_parser(
        "data",
        help="prepare a corpus the way GPT-3 did: classify, filter, dedup, decontaminate, mix, tokenize",
        description="GPT-3's data pipeline (Appendix A and C). Every stage reads JSONL (`text`, `id`), Parquet or "
        "plain text files, folders or globs, and writes shards, removal listings and stats.json to --output. "
        "Rerun a killed command to resume it.",
    )
    stages = parser.add_subparsers(title="stages", metavar="STAGE", required=True, parser_class=DeferredFlags)
    classifier = stages.add_parser("classifier", help="the quality classifier").add_subparsers(
        title="actions", metavar="ACTION", required=True, parser_class=DeferredFlags
    )
    _stage(classifier, "train", pipeline.Classifier)
    for name, settings in STAGES.items():
        if name != "classifier":
            _stage(stages, name, settings)

    example = stages.add_parser(
        "example",
        help="write a small demo corpus from Python's own docstrings (the README's tour runs on it)",
        description="Write a small, deterministic demo corpus to DIR, made offline from the standard library's "
        "docstrings: input.txt, books/, curated/, crawl_sample/, crawl/, webtext/ and evals/ for the stages, "
        "and tasks/ (a labelled task for `gptlab finetune`).",
    )
    example.add_argument("dir", type=Path, help="folder to write into")
    example.set_defaults(run=_example)

    run = stages.add_parser(
        "run",
        help="run the stages of a PIPELINE.yaml in order",
        description="Run the stages listed in a YAML file, in order. Each stage's keys are its verb's long "
        "options; lists repeat an option, mappings give NAME=VALUE pairs (mix), true turns a flag on.",
        epilog="example:\n  executor: local\n  workers: 8\n  stages:\n"
        "    - classifier: {positive: [curated/], negative: [crawl_sample/], output: runs/clf}\n"
        "    - filter: {input: [crawl/], output: out/filtered, model: runs/clf}\n"
        "    - dedup: {input: [out/filtered], output: out/dedup}\n"
        "    - decontaminate: {input: [out/dedup], output: out/clean, benchmark: [evals/]}\n"
        "    - mix: {input: {web: out/clean, books: books/}, weight: {web: 3, books: 1}, tokenizer: tok/, "
        "output: out/shards}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("pipeline", type=Path, help="YAML with `stages:` (and optional `executor:`, `workers:`)")
    run.set_defaults(run=_run_pipeline)


def _stage(stages: argparse._SubParsersAction, name: str, settings: type) -> None:
    """A stage's verb, with one option per setting of its settings class."""
    doc = settings.__doc__.strip()
    word = doc.split()[0]  # the listing's help starts in lower case, but a name such as MinHash keeps its capitals
    help = (doc if word[1:] != word[1:].lower() else doc[0].lower() + doc[1:]).rstrip(".")
    parser = stages.add_parser(name, help=help, description=doc, config=settings)
    parser.set_defaults(run=lambda args: _print(pipeline.from_options(settings, given(args, settings)).run()))


def _print(result: StageResult) -> None:
    print(result.report())
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)


def _example(args: argparse.Namespace) -> None:
    from gptlab.data.example import write_example

    written = write_example(args.dir)
    print(f"wrote a demo corpus from Python's standard library to {args.dir}")
    for name, what in written.items():
        print(f"  {name:<14} {what}")


def _run_pipeline(args: argparse.Namespace) -> None:
    pipeline.run_pipeline(args.pipeline, on_start=lambda number, total, name: print(f"[{number}/{total}] {name}"),
                          on_done=_print)
