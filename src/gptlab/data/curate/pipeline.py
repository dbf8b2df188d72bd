"""The data pipeline as Python calls. Each stage's settings are a dataclass whose fields are its verb's long
options (`write_removed` is `--write-removed`) and its keys in a pipeline YAML; `.run()` runs the stage and
returns a `StageResult`, and `run_pipeline` runs the stages a YAML file (or a mapping) lists, in order,
every stage's settings checked before the first one starts.

    from gptlab.data.curate.pipeline import Dedup, run_pipeline
    Dedup(input=("raw/",), output="out/dedup").run().stats["documents_out"]
    run_pipeline({"workers": 8, "stages": [{"dedup": {"input": ["raw/"], "output": "out/dedup"}}]})
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from gptlab.cluster import BACKENDS, check_backend
from gptlab.data.curate.mixture import MAX_EPOCHS
from gptlab.data.sources import SHARD_FORMATS, STAGE_STATS
from gptlab.errors import GptlabError


def setting(default: Any = dataclasses.MISSING, help: str = "", **cli: Any) -> Any:
    """A stage setting: its default and its help, plus `parse` (text or YAML value -> value) and argparse's
    `metavar`/`choices` where the command line needs them."""
    return field(default=default, metadata={"help": help, **cli})


def token_count(value: Any) -> int:
    """A token count, written as 60000, 6e4 or 6.0e+4."""
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and number >= 1):
        raise ValueError(f"expected a number of tokens, 1 or more, such as 6e4, got {value!r}")
    return int(number)


def _pairs(value: Any) -> list[tuple[str, Any]]:
    """NAME=VALUE items (a command line's, or a YAML list's), or a mapping whose values may be lists."""
    if isinstance(value, Mapping):
        return [(str(k), v) for k, vs in value.items() for v in (vs if isinstance(vs, list) else [vs])]
    pairs = []
    for item in [value] if isinstance(value, str) else value:
        name, sep, text = str(item).partition("=")
        if not sep or not name or not text:
            raise ValueError(f"{item!r}: expected NAME=VALUE")
        pairs.append((name, text))
    return pairs


def named_sources(value: Any) -> dict[str, tuple[str, ...]]:
    """Named sources, from NAME=PATH items (a name repeated for more paths) or a NAME: PATH(S) mapping."""
    sources: dict[str, tuple[str, ...]] = {}
    for name, path in _pairs(value):
        sources[name] = (*sources.get(name, ()), str(path))
    return sources


def named_weights(value: Any) -> dict[str, float]:
    """Mixture weights, from NAME=W items or a NAME: W mapping."""
    weights = {}
    for name, text in _pairs(value):
        try:
            weights[name] = float(text)
        except (TypeError, ValueError):
            raise ValueError(f"{name}={text}: not a number") from None
    return weights


@dataclass(frozen=True)
class StageResult:
    """What a stage did: its output folder, the stats it wrote there, and how long it took."""

    stage: str
    output: Path
    stats: dict[str, Any]
    seconds: float
    warnings: tuple[str, ...] = ()

    def report(self) -> str:
        """The result as the few lines `gptlab data` prints."""
        if self.stage == "classifier":
            held = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in self.stats.items())
            return f"held-out: {held}\nmodel: {self.output}"
        rate = self.stats.get("bytes_in", 0) / 1e6 / max(self.seconds, 1e-9)
        lines = [
            summary(self.stats),
            f"  time       {self.seconds:,.1f} s ({rate:,.2f} MB/s of input text)",
            f"  stats      {self.output / STAGE_STATS}",
        ]
        if self.stage == "filter":
            lines.append(f"  plot       {self.output / 'scores.png'}")
        for name, source in self.stats.get("sources", {}).items():
            lines.append(
                f"  {name:<10} weight {source['weight']:.3f}: {source['tokens_taken']:,} of "
                f"{source['tokens_available']:,} tokens ({source['share']:.1%} of the mix), {source['epochs']:.2f} epochs"
            )
        if "tokens_written" in self.stats:
            lines.append(f"  shards     {self.output}  ->  gptlab train --data {self.output}")
        return "\n".join(lines)


@dataclass(frozen=True)
class PipelineResult:
    stages: list[StageResult]

    @property
    def output(self) -> Path:
        """The last stage's output folder."""
        return self.stages[-1].output


# --- the stages' settings -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Classifier:
    """Fit logistic regression on hashed words: curated vs raw text."""

    stage: ClassVar[str] = "classifier"
    positive: tuple[str, ...] = setting(help="curated text (high quality)", metavar="PATH")
    negative: tuple[str, ...] = setting(help="raw web text", metavar="PATH")
    output: str = setting(help="model directory")
    seed: int = setting(0)
    test_fraction: float = setting(0.2, "held out for precision/recall/AUC")

    def run(self) -> StageResult:
        import json

        from gptlab import atomic
        from gptlab.data.curate.classifier import train_classifier
        from gptlab.data.sources import iter_documents

        def texts(specs: tuple[str, ...]) -> list[str]:
            return [document.text for document in iter_documents(specs)]

        started = time.perf_counter()
        model, metrics = train_classifier(texts(self.positive), texts(self.negative), self.seed, self.test_fraction)
        model.save(self.output)
        atomic.write_text(Path(self.output) / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        return StageResult(self.stage, Path(self.output), metrics, time.perf_counter() - started)


@dataclass(frozen=True, kw_only=True)
class _Stage:
    """Settings every parallel stage has: what it reads, where it writes, where its tasks run."""

    stage: ClassVar[str]
    input: tuple[str, ...] = setting(help="files, folders or globs", metavar="PATH")
    output: str = setting(help="output folder (rerun the command to resume)")
    executor: str = setting(
        "local", "local multiprocessing, or Ray (a cluster at RAY_ADDRESS, else a local one)", choices=BACKENDS
    )
    workers: int = setting(0, "tasks at once (default: one per CPU)")

    def __post_init__(self) -> None:
        check_backend(self.executor)
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0:
            raise GptlabError(f"workers must be 0 (one per CPU) or more, got {self.workers!r}")

    def run(self) -> StageResult:
        from gptlab.data.curate.executor import Executor  # datatrove: imported only to run

        started = time.perf_counter()
        stats = self._run(Executor(self.executor, self.workers))
        return StageResult(self.stage, Path(self.output), stats, time.perf_counter() - started, self._warnings(stats))

    def _run(self, executor: Any) -> dict[str, Any]:
        raise NotImplementedError

    def _warnings(self, stats: dict[str, Any]) -> tuple[str, ...]:
        return ()


@dataclass(frozen=True, kw_only=True)
class _DocumentStage(_Stage):
    """A stage that writes documents (not tokens)."""

    format: str = setting("jsonl.gz", choices=SHARD_FORMATS)
    write_removed: bool = setting(False, "keep removed documents' text in removed/")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.format not in SHARD_FORMATS:
            raise GptlabError(f"format must be one of {', '.join(SHARD_FORMATS)}, got {self.format!r}")


@dataclass(frozen=True, kw_only=True)
class Filter(_DocumentStage):
    """Keep a document iff pareto(alpha) > 1 - score (GPT-3's quality filter)."""

    stage: ClassVar[str] = "filter"
    model: str = setting(help="a classifier from `gptlab data classifier train`")
    alpha: float = setting(9.0, "Pareto shape (GPT-3: 9)")
    seed: int = setting(0)

    def _run(self, executor: Any) -> dict[str, Any]:
        from gptlab.data.curate.stages import quality_filter

        return quality_filter(
            self.input, self.output, self.model, executor, self.alpha, self.seed, self.format, self.write_removed
        )


@dataclass(frozen=True, kw_only=True)
class Dedup(_DocumentStage):
    """MinHash LSH fuzzy deduplication, within the input and against a reference set."""

    stage: ClassVar[str] = "dedup"
    against: tuple[str, ...] = setting(
        (), "drop documents that near-duplicate any of these (GPT-3: WebText)", metavar="PATH"
    )
    shingle_size: int | None = setting(None, "words per shingle (default 5)")
    bands: int | None = setting(None, "LSH bands")
    rows: int | None = setting(None, "hashes per band; bands x rows hashes in all")
    seed: int = setting(0)
    partitions: int | None = setting(
        None, "parallel LSH bucket partitions (default: one per GiB, at most 64)"
    )

    def _run(self, executor: Any) -> dict[str, Any]:
        from gptlab.data.curate.minhash import MinHashParams
        from gptlab.data.curate.stages import dedup

        given = {k: getattr(self, k) for k in ("shingle_size", "bands", "rows") if getattr(self, k) is not None}
        params = MinHashParams(**given, seed=self.seed)
        return dedup(
            self.input, self.output, executor, params, self.against, self.format, self.write_removed, self.partitions
        )


@dataclass(frozen=True, kw_only=True)
class Decontaminate(_DocumentStage):
    """Remove benchmark 13-grams with 200 characters around them (GPT-3)."""

    stage: ClassVar[str] = "decontaminate"
    benchmark: tuple[str, ...] = setting(help="benchmark files", metavar="PATH")
    ngram: int = setting(13, "words per n-gram (default 13)")
    margin: int = setting(200, "characters removed either side (default 200)")
    min_piece: int = setting(200, "drop pieces shorter than this (default 200)")
    max_pieces: int = setting(10, "drop documents cut into more (default 10)")
    max_documents: int = setting(10, "ignore n-grams found in more documents than this (default 10)")

    def _run(self, executor: Any) -> dict[str, Any]:
        from gptlab.data.curate.stages import decontaminate

        return decontaminate(
            self.input, self.output, self.benchmark, executor, self.ngram, self.margin, self.min_piece,
            self.max_pieces, self.max_documents, self.format, self.write_removed,
        )

    def _warnings(self, stats: dict[str, Any]) -> tuple[str, ...]:
        if stats["benchmark_ngrams"]:
            return ()
        return (f"the benchmark files hold no {self.ngram}-word text, so nothing was removed",)


@dataclass(frozen=True, kw_only=True)
class _TokenStage(_Stage):
    """A stage that writes token shards."""

    tokenizer: str = setting(help="a gptlab/GPT-2 tokenizer directory or checkpoint")
    shard_tokens: int | None = setting(None, "tokens per shard file (default 1e8)")

    def _mix(self, executor: Any, sources: dict, weights: dict, **options: Any) -> dict[str, Any]:
        from gptlab.data.curate.stages import mix

        if self.shard_tokens is not None:
            options["shard_tokens"] = self.shard_tokens
        return mix(sources, weights, self.tokenizer, self.output, executor, **options)


@dataclass(frozen=True, kw_only=True)
class Tokenize(_TokenStage):
    """Tokenise documents into token shards for `gptlab train`."""

    stage: ClassVar[str] = "tokenize"

    def _run(self, executor: Any) -> dict[str, Any]:
        # one source, read once
        return self._mix(executor, {"input": self.input}, {"input": 1.0}, tokens=None, seed=0, max_epochs=1.0)


@dataclass(frozen=True, kw_only=True)
class Mix(_TokenStage):
    """Sample named sources by weight, tokenise and write token shards for `gptlab train`."""

    stage: ClassVar[str] = "mix"
    input: dict[str, tuple[str, ...]] = setting(
        help="NAME=PATH: a named source (repeat the name for more paths)", metavar="PATH", parse=named_sources
    )
    weight: dict[str, float] = setting(
        help="mixture weights, renormalised (GPT-3: CommonCrawl=60 WebText2=22 ...)", metavar="NAME=W",
        parse=named_weights,
    )
    tokens: int | None = setting(
        None,
        "token budget, split exactly by weight; sources repeat as needed (default: the most without repeating any)",
        parse=token_count,
    )
    max_epochs: float = setting(
        MAX_EPOCHS,
        f"refuse a budget that repeats any source more often (default {MAX_EPOCHS:g}: past that, repeats add "
        "next to nothing)",
    )
    seed: int = setting(0)

    def _run(self, executor: Any) -> dict[str, Any]:
        return self._mix(
            executor, dict(self.input), dict(self.weight), tokens=self.tokens, seed=self.seed, max_epochs=self.max_epochs
        )


STAGES: dict[str, type] = {s.stage: s for s in (Classifier, Filter, Dedup, Decontaminate, Mix, Tokenize)}
"""Each stage's settings by its name in a pipeline YAML (and its verb: `gptlab data NAME`)."""
SHARED = ("executor", "workers")
"""Pipeline-level keys that every stage with that setting takes, unless it gives its own."""


# --- settings from YAML ------------------------------------------------------------------------------


def from_options(cls: type, options: Mapping[str, Any]) -> Any:
    """`cls`'s settings from a YAML mapping: lists for repeated values, a scalar for a one-item list, null or
    false (but for a flag) for the default."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in options.items():
        name = str(key).replace("-", "_")
        if name not in fields:
            raise GptlabError(f"unknown option {key} (its options: {', '.join(fields)})")
        if value is None or (value is False and hints[name] is not bool):
            continue
        try:
            values[name] = _coerce(value, hints[name], fields[name].metadata.get("parse"))
        except ValueError as e:
            raise GptlabError(f"{name}: {e}") from None
    missing = [name for name, f in fields.items() if f.default is dataclasses.MISSING and name not in values]
    if missing:
        raise GptlabError(f"missing {', '.join(missing)}")
    return cls(**values)


def _coerce(value: Any, kind: Any, parse: Callable[[Any], Any] | None) -> Any:
    if parse is not None:
        return parse(value)
    if typing.get_origin(kind) is tuple:
        return tuple(str(_scalar(v, str)) for v in (value if isinstance(value, list) else [value]))
    if isinstance(kind, types.UnionType):  # `X | None`
        kind = next(k for k in typing.get_args(kind) if k is not type(None))
    return _scalar(value, kind)


def _scalar(value: Any, kind: type) -> Any:
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, (int, str)) and not isinstance(value, bool),
        float: isinstance(value, (int, float, str)) and not isinstance(value, bool),
        str: isinstance(value, (str, int, float)) and not isinstance(value, bool),
    }[kind]
    try:
        if ok:
            return kind(value)
    except ValueError:
        pass
    raise ValueError(f"expected {names[kind]}, got {value!r}")


def load_pipeline(pipeline: str | os.PathLike | Mapping[str, Any]) -> list[Any]:
    """The stages' settings of a pipeline YAML file or mapping: `stages:` (a list of one-key mappings, stage
    name to its options), and `executor:`/`workers:` for every stage that runs tasks."""
    import yaml

    from gptlab.files import read_text

    where = "the pipeline" if isinstance(pipeline, Mapping) else str(pipeline)
    if isinstance(pipeline, Mapping):
        spec: Any = pipeline
    else:
        try:
            spec = yaml.safe_load(read_text(pipeline)) or {}
        except yaml.YAMLError as e:
            raise GptlabError(f"{pipeline} is not valid YAML: {str(e).splitlines()[0]}") from None
    stages = spec.get("stages") if isinstance(spec, Mapping) else None
    if not isinstance(stages, list) or not stages:
        raise GptlabError(f"{where}: expected a `stages:` list, e.g. - dedup: {{input: raw/, output: out/}}")
    shared = {k: spec[k] for k in SHARED if k in spec}
    settings = []
    for number, stage in enumerate(stages, 1):
        if not (isinstance(stage, Mapping) and len(stage) == 1) or next(iter(stage)) not in STAGES:
            raise GptlabError(f"{where}: stage {number} must be one of {', '.join(STAGES)} with its options")
        ((name, options),) = stage.items()
        if not isinstance(options or {}, Mapping):
            raise GptlabError(f"{where}: stage {number} ({name}): expected its options as a mapping")
        cls = STAGES[name]
        names = {f.name for f in dataclasses.fields(cls)}
        try:
            settings.append(from_options(cls, {**{k: v for k, v in shared.items() if k in names}, **(options or {})}))
        except GptlabError as e:
            raise GptlabError(f"{where}: stage {number} ({name}): {e}") from None
    return settings


def run_pipeline(
    pipeline: str | os.PathLike | Mapping[str, Any],
    on_start: Callable[[int, int, str], None] | None = None,
    on_done: Callable[[StageResult], None] | None = None,
) -> PipelineResult:
    """Run the stages of a pipeline YAML file (or mapping, as `load_pipeline` reads it) in order. Rerunning it
    resumes: finished stages and tasks are skipped. `on_start(number, total, name)` and `on_done(result)` are
    called around each stage."""
    stages = load_pipeline(pipeline)
    results = []
    for number, settings in enumerate(stages, 1):
        if on_start is not None:
            on_start(number, len(stages), settings.stage)
        results.append(settings.run())
        if on_done is not None:
            on_done(results[-1])
    return PipelineResult(results)


# --- reporting -----------------------------------------------------------------------------------------


_SUMMED_UP = {
    "stage", "documents_in", "documents_out", "pieces_out", "documents_removed", "documents_written", "tokens_written",
    "bytes_in", "bytes_out", "removed_by_reason", "malformed", "repaired",
}
"""Stats that `summary` words itself; it lists the others as they are."""


def summary(stats: dict[str, Any]) -> str:
    """The stats as a few lines a person reads at a glance."""
    lines = [f"{stats['stage']}:"]
    docs_in, bytes_in = stats.get("documents_in", 0), stats.get("bytes_in", 0)
    if "tokens_written" in stats:  # mix, tokenize: token shards, documents sampled by weight (some repeated)
        written = f"{stats['documents_written']:,} written ({stats['tokens_written']:,} tokens)"
        lines.append(f"  documents  {docs_in:,} in -> {written}")
        lines.append(f"  bytes      {bytes_in / 1e6:,.2f} MB in")
    else:
        docs_out, bytes_out = stats.get("documents_out", 0), stats.get("bytes_out", 0)
        share = f" ({docs_out / docs_in:.1%} kept)" if docs_in else ""
        if "pieces_out" in stats:  # decontaminate: documents cut into pieces
            lines.append(f"  documents  {docs_in:,} in -> {stats['pieces_out']:,} pieces out from {docs_out:,} documents{share}")
        else:
            lines.append(f"  documents  {docs_in:,} in -> {docs_out:,} out{share}")
        lines.append(f"  bytes      {bytes_in / 1e6:,.2f} MB in -> {bytes_out / 1e6:,.2f} MB out")
    for reason, count in stats.get("removed_by_reason", {}).items():
        lines.append(f"  removed    {count:,} ({reason})")
    if stats.get("malformed"):
        lines.append(f"  malformed  {stats['malformed']:,} input records or files skipped (listed in malformed/)")
    if stats.get("repaired"):
        repaired = f"{stats['repaired']:,} text files kept, invalid UTF-8 replaced by U+FFFD"
        lines.append(f"  repaired   {repaired} (listed in malformed/)")
    for key, value in stats.items():
        if key in _SUMMED_UP or isinstance(value, dict):  # mix's per-source table: StageResult.report words it
            continue
        lines.append(f"  {key:<10} {value:,}" if isinstance(value, (int, float)) else f"  {key}: {value}")
    return "\n".join(lines)
