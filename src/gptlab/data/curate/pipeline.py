"""The data pipeline as Python calls. Each stage's settings are a dataclass whose fields are its verb's long
options (`write_removed` is `--write-removed`) and its keys in a pipeline YAML: a field's docstring is its help,
and its metadata may add a `parse` for values its type alone cannot read and the flag's `metavar`. `.run()`
runs the stage and returns a `StageResult`; `run_pipeline` runs the stages a YAML file (or a mapping) lists,
in order, every stage's settings checked before the first one starts.

    from gptlab.data.curate.pipeline import Dedup, run_pipeline
    Dedup(input=["raw/"], output="out/dedup").run().stats["documents_out"]
    run_pipeline({"workers": 8, "stages": [{"dedup": {"input": ["raw/"], "output": "out/dedup"}}]})
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from gptlab import settings
from gptlab.cluster import BACKENDS
from gptlab.data.curate.mixture import MAX_EPOCHS
from gptlab.sources import SHARD_FORMATS, STAGE_STATS
from gptlab.errors import GptlabError


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


def named_sources(value: Any) -> dict[str, list[str]]:
    """Named sources, from NAME=PATH items (a name repeated for more paths) or a NAME: PATH(S) mapping."""
    sources: dict[str, list[str]] = {}
    for name, path in _pairs(value):
        sources.setdefault(name, []).append(str(path))
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
    positive: list[str] = field(metadata={"metavar": "PATH"})
    """curated text (high quality)"""
    negative: list[str] = field(metadata={"metavar": "PATH"})
    """raw web text"""
    output: str
    """model directory"""
    seed: int = 0
    test_fraction: float = 0.2
    """held out for precision/recall/AUC"""

    def run(self) -> StageResult:
        import json

        from gptlab import atomic
        from gptlab.data.curate.classifier import train_classifier
        from gptlab.sources import iter_documents

        def texts(specs: list[str]) -> list[str]:
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
    input: list[str] = field(metadata={"metavar": "PATH"})
    """files, folders or globs"""
    output: str
    """output folder (rerun the command to resume)"""
    executor: Literal[BACKENDS] = "local"
    """local multiprocessing, or Ray (a cluster at RAY_ADDRESS, else a local one)"""
    workers: int = 0
    """tasks at once (default: one per CPU)"""

    def __post_init__(self) -> None:
        settings.coerce("executor", self.executor, Literal[BACKENDS])
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

    format: Literal[SHARD_FORMATS] = "jsonl.gz"
    write_removed: bool = False
    """keep removed documents' text in removed/"""

    def __post_init__(self) -> None:
        super().__post_init__()
        settings.coerce("format", self.format, Literal[SHARD_FORMATS])


@dataclass(frozen=True, kw_only=True)
class Filter(_DocumentStage):
    """Keep a document iff pareto(alpha) > 1 - score (GPT-3's quality filter)."""

    stage: ClassVar[str] = "filter"
    model: str
    """a classifier from `gptlab data classifier train`"""
    alpha: float = 9.0
    """Pareto shape (GPT-3: 9)"""
    seed: int = 0

    def _run(self, executor: Any) -> dict[str, Any]:
        from gptlab.data.curate.stages import quality_filter

        return quality_filter(
            self.input, self.output, self.model, executor, self.alpha, self.seed, self.format, self.write_removed
        )


@dataclass(frozen=True, kw_only=True)
class Dedup(_DocumentStage):
    """MinHash LSH fuzzy deduplication, within the input and against a reference set."""

    stage: ClassVar[str] = "dedup"
    against: list[str] = field(default_factory=list, metadata={"metavar": "PATH"})
    """drop documents that near-duplicate any of these (GPT-3: WebText)"""
    shingle_size: int | None = None
    """words per shingle (default 5)"""
    bands: int | None = None
    """LSH bands"""
    rows: int | None = None
    """hashes per band; bands x rows hashes in all"""
    seed: int = 0
    partitions: int | None = None
    """parallel LSH bucket partitions (default: one per GiB, at most 64)"""

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
    benchmark: list[str] = field(metadata={"metavar": "PATH"})
    """benchmark files"""
    ngram: int = 13
    """words per n-gram (default 13)"""
    margin: int = 200
    """characters removed either side (default 200)"""
    min_piece: int = 200
    """drop pieces shorter than this (default 200)"""
    max_pieces: int = 10
    """drop documents cut into more (default 10)"""
    max_documents: int = 10
    """ignore n-grams found in more documents than this (default 10)"""

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

    tokenizer: str
    """a gptlab/GPT-2 tokenizer directory or checkpoint"""
    shard_tokens: int | None = None
    """tokens per shard file (default 1e8)"""

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
    input: dict[str, list[str]] = field(metadata={"metavar": "PATH", "parse": named_sources})
    """NAME=PATH: a named source (repeat the name for more paths)"""
    weight: dict[str, float] = field(metadata={"metavar": "NAME=W", "parse": named_weights})
    """mixture weights, renormalised (GPT-3: CommonCrawl=60 WebText2=22 ...)"""
    tokens: int | None = field(default=None, metadata={"parse": token_count})
    """token budget, split exactly by weight; sources repeat as needed (default: the most without repeating any)"""
    max_epochs: float = MAX_EPOCHS
    """refuse a budget that repeats any source more often (default 16: past that, repeats add next to nothing)"""
    seed: int = 0

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
    """`cls`'s settings from a mapping (a YAML stage's, or a command line's): each value typed by its setting
    (a scalar for a one-item list), null or false (but for a flag) for the default."""
    known = {s.name: s for s in settings.settings(cls)}
    parse = {f.name: f.metadata.get("parse") for f in dataclasses.fields(cls)}
    values = {}
    for key, value in options.items():
        name = str(key).replace("-", "_")
        if name not in known:
            raise GptlabError(f"unknown option {key} (its options: {', '.join(known)})")
        if value is None or (value is False and settings.plain(known[name].hint) is not bool):
            continue
        if parse[name] is None:
            values[name] = settings.coerce(name, value, known[name].hint)
            continue
        try:
            values[name] = parse[name](value)
        except ValueError as e:
            raise GptlabError(f"{name}: {e}") from None
    missing = [name for name, s in known.items() if s.default is dataclasses.MISSING and name not in values]
    if missing:
        raise GptlabError(f"missing {', '.join(missing)}")
    return cls(**values)


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
    chosen = []
    for number, stage in enumerate(stages, 1):
        if not (isinstance(stage, Mapping) and len(stage) == 1) or next(iter(stage)) not in STAGES:
            raise GptlabError(f"{where}: stage {number} must be one of {', '.join(STAGES)} with its options")
        ((name, options),) = stage.items()
        if not isinstance(options or {}, Mapping):
            raise GptlabError(f"{where}: stage {number} ({name}): expected its options as a mapping")
        cls = STAGES[name]
        names = {f.name for f in dataclasses.fields(cls)}
        try:
            chosen.append(from_options(cls, {**{k: v for k, v in shared.items() if k in names}, **(options or {})}))
        except GptlabError as e:
            raise GptlabError(f"{where}: stage {number} ({name}): {e}") from None
    return chosen


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
    for number, stage in enumerate(stages, 1):
        if on_start is not None:
            on_start(number, len(stages), stage.stage)
        results.append(stage.run())
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
