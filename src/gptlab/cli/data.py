"""`gptlab data ...`: the GPT-3 corpus pipeline, one verb per stage, or all of them from a YAML file.

`gptlab data run PIPELINE.yaml` runs the stages listed there in order; each stage's keys are the
long options of its verb (`input`, `output`, `model`, ...), so a YAML stage and a command line
mean exactly the same thing.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from gptlab.data.curate.mixture import MAX_EPOCHS
from gptlab.errors import GptlabError
from gptlab.sources import SHARD_FORMATS

STAGES = ("classifier", "filter", "dedup", "decontaminate", "mix", "tokenize")


def register(verbs: argparse._SubParsersAction) -> None:
    parser = verbs.add_parser(
        "data",
        help="prepare a corpus the way GPT-3 did: classify, filter, dedup, decontaminate, mix, tokenize",
        description="GPT-3's data pipeline (Appendix A and C). Every stage reads JSONL (`text`, `id`), Parquet or "
        "plain text files, folders or globs, and writes shards, removal listings and stats.json to --output. "
        "Rerun a killed command to resume it.",
    )
    stages = parser.add_subparsers(title="stages", metavar="STAGE", required=True)

    classifier = stages.add_parser("classifier", help="the quality classifier").add_subparsers(
        title="actions", metavar="ACTION", required=True
    )
    train = classifier.add_parser("train", help="fit logistic regression on hashed words: curated vs raw text")
    train.add_argument("--positive", nargs="+", required=True, metavar="PATH", help="curated text (high quality)")
    train.add_argument("--negative", nargs="+", required=True, metavar="PATH", help="raw web text")
    train.add_argument("--output", required=True, type=Path, help="model directory")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--test-fraction", type=float, default=0.2, help="held out for precision/recall/AUC")
    train.set_defaults(run=_classifier_train)

    filt = _stage(stages, "filter", "keep a document iff pareto(alpha) > 1 - score (GPT-3's quality filter)")
    filt.add_argument("--model", required=True, help="a classifier from `gptlab data classifier train`")
    filt.add_argument("--alpha", type=float, default=9.0, help="Pareto shape (GPT-3: 9)")
    filt.add_argument("--seed", type=int, default=0)
    filt.set_defaults(run=_filter)

    dedup = _stage(stages, "dedup", "MinHash LSH fuzzy deduplication, within the input and against --against")
    dedup.add_argument(
        "--against",
        nargs="+",
        default=[],
        metavar="PATH",
        help="drop documents that near-duplicate any of these (GPT-3: WebText)",
    )
    dedup.add_argument("--shingle-size", type=int, default=None, help="words per shingle (default 5)")
    dedup.add_argument("--bands", type=int, default=None, help="LSH bands")
    dedup.add_argument("--rows", type=int, default=None, help="hashes per band; bands x rows hashes in all")
    dedup.add_argument("--seed", type=int, default=0)
    dedup.add_argument(
        "--partitions", type=int, default=None, help="parallel LSH bucket partitions (default: one per GiB, at most 64)"
    )
    dedup.set_defaults(run=_dedup)

    decon = _stage(stages, "decontaminate", "remove benchmark 13-grams with 200 characters around them (GPT-3)")
    decon.add_argument("--benchmark", nargs="+", required=True, metavar="PATH", help="benchmark files")
    decon.add_argument("--ngram", type=int, default=13, help="words per n-gram (default 13)")
    decon.add_argument("--margin", type=int, default=200, help="characters removed either side (default 200)")
    decon.add_argument("--min-piece", type=int, default=200, help="drop pieces shorter than this (default 200)")
    decon.add_argument("--max-pieces", type=int, default=10, help="drop documents cut into more (default 10)")
    decon.add_argument(
        "--max-documents", type=int, default=10, help="ignore n-grams found in more documents than this (default 10)"
    )
    decon.set_defaults(run=_decontaminate)

    mix = _stage(
        stages,
        "mix",
        "sample named sources by weight, tokenise and write token shards for `gptlab train`",
        documents_out=False,
        input_help="NAME=PATH: a named source (repeat the name for more paths)",
    )
    mix.add_argument(
        "--weight",
        nargs="+",
        required=True,
        metavar="NAME=W",
        help="mixture weights, renormalised (GPT-3: CommonCrawl=60 WebText2=22 ...)",
    )
    _token_options(mix)
    mix.add_argument(
        "--tokens",
        type=_token_count,
        default=None,
        help="token budget, split exactly by weight; sources repeat as needed (default: the most without repeating any)",
    )
    mix.add_argument(
        "--max-epochs",
        type=float,
        default=MAX_EPOCHS,
        help=f"refuse a budget that repeats any source more often (default {MAX_EPOCHS:g}: past that, repeats add "
        "next to nothing)",
    )
    mix.add_argument("--seed", type=int, default=0)
    mix.set_defaults(run=_mix)

    tokenize = _stage(
        stages, "tokenize", "tokenise documents into token shards for `gptlab train`", documents_out=False
    )
    _token_options(tokenize)
    tokenize.set_defaults(run=_tokenize, tokens=None, seed=0, max_epochs=1.0)  # one source, read once

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


def _stage(stages, name: str, help: str, documents_out: bool = True, input_help: str = "files, folders or globs"):
    parser = stages.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".")
    parser.add_argument("--input", nargs="+", required=True, metavar="PATH", help=input_help)
    parser.add_argument("--output", required=True, help="output folder (rerun the command to resume)")
    if documents_out:
        parser.add_argument("--format", default="jsonl.gz", choices=SHARD_FORMATS)
        parser.add_argument("--write-removed", action="store_true", help="keep removed documents' text in removed/")
    parser.add_argument(
        "--executor",
        default="local",
        choices=("local", "ray"),
        help="local multiprocessing, or Ray (a cluster at RAY_ADDRESS, else a local one)",
    )
    parser.add_argument("--workers", type=int, default=0, help="tasks at once (default: one per CPU)")
    return parser


def _token_count(text: str) -> int:
    """A token count, written as 60000 or 6e4."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 1):
        raise argparse.ArgumentTypeError(f"expected a number of tokens, 1 or more, such as 6e4, got {text!r}")
    return int(value)


def _token_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tokenizer", required=True, help="a gptlab/GPT-2 tokenizer directory or checkpoint")
    parser.add_argument("--shard-tokens", type=int, default=100_000_000, help="tokens per shard file")


def _engine(args: argparse.Namespace):
    from gptlab.data.curate.engine import Engine

    args.started = time.perf_counter()  # the stage's clock, for its summary
    if args.workers < 0:
        raise GptlabError(f"--workers must be 0 (one per CPU) or more, got {args.workers}")
    return Engine(args.executor, args.workers)


def _report(stats: dict[str, Any], args: argparse.Namespace) -> None:
    from gptlab.data.curate.engine import summary

    print(summary(stats))
    seconds = time.perf_counter() - args.started
    print(f"  time       {seconds:,.1f} s ({stats.get('bytes_in', 0) / 1e6 / seconds:,.2f} MB/s of input text)")
    print(f"  stats      {Path(args.output) / 'stats.json'}")


def _classifier_train(args: argparse.Namespace) -> None:
    from gptlab import atomic
    from gptlab.data.curate.classifier import train_classifier
    from gptlab.sources import iter_documents

    def texts(specs: list[str]) -> list[str]:
        return [document.text for document in iter_documents(specs)]

    model, metrics = train_classifier(texts(args.positive), texts(args.negative), args.seed, args.test_fraction)
    model.save(args.output)
    atomic.write_text(args.output / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    print("held-out: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()))
    print(f"model: {args.output}")


def _filter(args: argparse.Namespace) -> None:
    from gptlab.data.curate.stages import quality_filter

    stats = quality_filter(
        args.input, args.output, args.model, _engine(args), args.alpha, args.seed, args.format, args.write_removed
    )
    _report(stats, args)
    print(f"  plot       {Path(args.output) / 'scores.png'}")


def _dedup(args: argparse.Namespace) -> None:
    from gptlab.data.curate.minhash import MinHashParams
    from gptlab.data.curate.stages import dedup

    given = {
        k: v
        for k, v in (("shingle_size", args.shingle_size), ("bands", args.bands), ("rows", args.rows))
        if v is not None
    }
    params = MinHashParams(**given, seed=args.seed)
    engine = _engine(args)
    stats = dedup(
        args.input, args.output, engine, params, args.against, args.format, args.write_removed, args.partitions
    )
    _report(stats, args)


def _decontaminate(args: argparse.Namespace) -> None:
    from gptlab.data.curate.stages import decontaminate

    stats = decontaminate(
        args.input,
        args.output,
        args.benchmark,
        _engine(args),
        args.ngram,
        args.margin,
        args.min_piece,
        args.max_pieces,
        args.max_documents,
        args.format,
        args.write_removed,
    )
    _report(stats, args)
    if not stats["benchmark_ngrams"]:
        print(f"warning: the benchmark files hold no {args.ngram}-word text, so nothing was removed", file=sys.stderr)


def _named(items: list[str], what: str) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise GptlabError(f"{what} {item!r}: expected NAME=VALUE")
        pairs.append((name, value))
    return pairs


def _mix(args: argparse.Namespace) -> None:
    sources: dict[str, list[str]] = {}
    for name, path in _named(args.input, "--input"):
        sources.setdefault(name, []).append(path)
    weights = {}
    for name, value in _named(args.weight, "--weight"):
        try:
            weights[name] = float(value)
        except ValueError:
            raise GptlabError(f"--weight {name}={value}: not a number") from None
    _mix_sources(args, sources, weights)


def _tokenize(args: argparse.Namespace) -> None:
    _mix_sources(args, {"input": args.input}, {"input": 1.0})


def _mix_sources(args: argparse.Namespace, sources: dict[str, list[str]], weights: dict[str, float]) -> None:
    from gptlab.data.curate.stages import mix

    stats = mix(
        sources,
        weights,
        args.tokenizer,
        args.output,
        _engine(args),
        args.tokens,
        args.seed,
        args.shard_tokens,
        args.max_epochs,
    )
    _report(stats, args)
    for name, source in stats["sources"].items():
        print(
            f"  {name:<10} weight {source['weight']:.3f}: {source['tokens_taken']:,} of "
            f"{source['tokens_available']:,} tokens ({source['share']:.1%} of the mix), {source['epochs']:.2f} epochs"
        )
    print(f"  shards     {args.output}  ->  gptlab train --data {args.output}")


def _example(args: argparse.Namespace) -> None:
    from gptlab.data.example import write_example

    written = write_example(args.dir)
    print(f"wrote a demo corpus from Python's standard library to {args.dir}")
    for name, what in written.items():
        print(f"  {name:<14} {what}")


def _run_pipeline(args: argparse.Namespace) -> None:
    import yaml

    from gptlab.cli.main import build_parser
    from gptlab.files import read_text

    try:
        spec = yaml.safe_load(read_text(args.pipeline)) or {}
    except yaml.YAMLError as e:
        raise GptlabError(f"{args.pipeline} is not valid YAML: {str(e).splitlines()[0]}") from None
    stages = spec.get("stages") if isinstance(spec, dict) else None
    if not isinstance(stages, list) or not stages:
        raise GptlabError(f"{args.pipeline}: expected a `stages:` list, e.g. - dedup: {{input: raw/, output: out/}}")
    shared = {k: spec[k] for k in ("executor", "workers") if k in spec}
    parser = build_parser()
    for number, stage in enumerate(stages, 1):
        if not (isinstance(stage, dict) and len(stage) == 1) or next(iter(stage)) not in STAGES:
            raise GptlabError(f"{args.pipeline}: stage {number} must be one of {', '.join(STAGES)} with its options")
        ((name, options),) = stage.items()
        if name == "classifier":  # trained in one process: no executor options
            argv = ["data", "classifier", "train", *_as_argv(options or {})]
        else:
            argv = ["data", name, *_as_argv({**shared, **(options or {})})]
        print(f"[{number}/{len(stages)}] {name}")
        complaint = io.StringIO()
        try:
            with contextlib.redirect_stderr(complaint):  # argparse's usage text would bury the one line that matters
                stage_args = parser.parse_args(argv)
        except SystemExit:
            reason = complaint.getvalue().strip().splitlines()[-1].partition("error: ")[2]
            raise GptlabError(f"{args.pipeline}: stage {number} ({name}): {reason}") from None
        stage_args.run(stage_args)


def _as_argv(options: dict[str, Any]) -> list[str]:
    """YAML options as the verb's long options: lists repeat, mappings become NAME=VALUE, true is a flag."""
    argv = []
    for key, value in options.items():
        flag = "--" + str(key).replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is False or value is None:
            continue
        elif isinstance(value, dict):
            argv += [flag, *(f"{k}={v}" for k, vs in value.items() for v in (vs if isinstance(vs, list) else [vs]))]
        elif isinstance(value, list):
            argv += [flag, *map(str, value)]
        else:
            argv += [flag, str(value)]
    return argv
