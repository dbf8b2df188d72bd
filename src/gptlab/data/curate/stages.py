"""The curation stages: quality filter, dedup, decontaminate, mix. Each is a few datatrove
pipeline steps run by `executor.Workspace` over the input files, plus any single-process phase
that needs the whole corpus at once (LSH clustering, n-gram counts, the mixture's draw of
documents, made from their lengths alone).

Documents keep their `id` through every stage; a document that decontamination cuts into
pieces becomes `id#0`, `id#1`, ... .
"""

from __future__ import annotations

import math
import os
import shutil
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from gptlab import atomic
from gptlab.data.curate import decontaminate as decon
from gptlab.data.curate import mixture
from gptlab.data.curate.executor import REMOVED, Executor, ReadInputs, Workspace, WriteOutputs, write_counts
from gptlab.data.curate.minhash import (
    ROW,
    MinHashParams,
    band_rows,
    candidate_edges,
    components,
    reference_matches,
    signatures,
    smallest_match,
)
from gptlab.data.curate.quality_filter import pareto_keep, plot_scores
from gptlab.data.shards import DEFAULT_SHARD_TOKENS, Part, TokenView, token_dtype, write_shards
from gptlab.errors import GptlabError
from gptlab.sources import expand, iter_documents

_BATCH = 512
"""Documents scored or signed at once: enough for numpy to pay off, few enough to stream."""


def _batches(data: DocumentsPipeline) -> Iterator[list[Document]]:
    batch: list[Document] = []
    for document in data or ():
        batch.append(document)
        if len(batch) == _BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _files(specs: Sequence[str], output: str) -> list[str]:
    """The files `specs` stand for. An output among them is refused: the next read of these
    inputs would take its shards and listings for input and double the corpus."""
    out = Path(output).resolve()
    for spec in specs:
        folder = Path(spec).resolve()
        if Path(spec).is_dir() and out.is_relative_to(folder):
            where = "the" if out == folder else "inside the"
            raise GptlabError(
                f"the output {output} is {where} input folder {spec}; choose an output outside the inputs"
            )
    files = expand(specs)
    for file in files:
        if file.resolve().is_relative_to(out):
            raise GptlabError(f"input {file} is inside the output {output}; choose an output outside the inputs")
    return [str(file) for file in files]


def _check_whole(what: str, value: Any, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise GptlabError(f"{what} must be a whole number, {least} or more, got {value!r}")


def _settings(stage: str, files: list[str], **options: Any) -> dict[str, Any]:
    return {"stage": stage, "inputs": files, **options}


# --- quality filter --------------------------------------------------------------------------------


class ScoreAndKeep(PipelineStep):
    """Classifier score on every document; GPT-3's Pareto rule decides which to keep."""

    name, type = "score and keep", "Filter"

    def __init__(self, model: str, alpha: float, seed: int, work: str):
        super().__init__()
        self.model, self.alpha, self.seed, self.work = model, alpha, seed, work

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        from gptlab.data.curate.classifier import QualityClassifier  # scikit-learn: ~1 s to import

        classifier = QualityClassifier.load(self.model)
        all_scores, all_kept = [], []
        for batch in _batches(data):
            scores = classifier.score([d.text for d in batch])
            kept = pareto_keep(scores, [d.id for d in batch], self.alpha, self.seed)
            for document, score, keep in zip(batch, scores.tolist(), kept.tolist()):
                document.metadata["quality_score"] = round(score, 6)
                if not keep:
                    document.metadata[REMOVED] = "pareto: low quality score"
                yield document
            all_scores.append(scores)
            all_kept.append(kept)
        scores = np.concatenate(all_scores) if all_scores else np.empty(0)
        kept = np.concatenate(all_kept) if all_kept else np.empty(0, bool)
        _save_npz(Path(self.work) / "scores" / f"{rank:05d}.npz", scores=scores, kept=kept)


def quality_filter(
    inputs: Sequence[str],
    output: str,
    model: str,
    executor: Executor,
    alpha: float = 9.0,
    seed: int = 0,
    fmt: str = "jsonl.gz",
    removed_text: bool = False,
) -> dict[str, Any]:
    from gptlab.data.curate.classifier import QualityClassifier

    files = _files(inputs, output)
    QualityClassifier.load(model)  # a bad model path fails here, once, not in every task
    executor.start()
    ws = Workspace(
        output, _settings("filter", files, model=str(Path(model).resolve()), alpha=alpha, seed=seed, fmt=fmt)
    )
    work = str(ws.work)
    ws.run(
        "filter",
        [
            ReadInputs(files, work, str(ws.malformed)),
            ScoreAndKeep(model, alpha, seed, work),
            WriteOutputs(output, fmt, work, removed_text),
        ],
        len(files),
        executor,
    )
    parts = [np.load(p) for p in sorted((ws.work / "scores").glob("*.npz"))]
    scores = np.concatenate([p["scores"] for p in parts])
    kept = np.concatenate([p["kept"] for p in parts])
    plot_scores(scores, kept, Path(output) / "scores.png", alpha)
    return ws.finish("filter", mean_score=round(float(scores.mean()), 4) if len(scores) else None)


# --- fuzzy deduplication ------------------------------------------------------------------------------


PARTITION_BYTES = 2**30
"""Input bytes per bucket partition by default. Band rows take bands x 20 bytes per document, about
a tenth of a few-KB document's text, so a candidates task holds ~100 MB of rows per partition; a
small corpus gets one partition, linked in this process without starting workers."""
MAX_PARTITIONS = 64
"""Default partitions at most: every signing task writes one file per partition."""
WITHIN = "duplicate: near-duplicate within the input"
OF_REFERENCE = "duplicate: near-duplicate of the reference set"


@dataclass(frozen=True)
class Signed:
    """Where a Sign phase of `tasks` tasks leaves its ids and buckets. Documents are numbered
    globally, task by task in rank order, as if all had been signed in one list."""

    ids: Path
    buckets: Path
    tasks: int

    def ids_file(self, rank: int) -> Path:
        return self.ids / f"{rank:05d}.npy"

    def bucket_file(self, rank: int, part: int) -> Path:
        return self.buckets / f"{rank:05d}" / f"{part:03d}.npy"

    def _ids(self, rank: int) -> np.ndarray:
        return np.load(self.ids_file(rank), mmap_mode="r")  # reads ids only when indexed

    def offsets(self) -> np.ndarray:
        """Each task's first global document number, and the total at the end."""
        return np.cumsum([0, *(len(self._ids(rank)) for rank in range(self.tasks))], dtype=np.int64)

    def partition(self, part: int) -> np.ndarray:
        """Bucket partition `part` of every task, in global document numbers."""
        offsets, rows = self.offsets(), [np.empty(0, ROW)]
        for rank in range(self.tasks):
            rows.append(np.load(self.bucket_file(rank, part)))
            rows[-1]["doc"] += offsets[rank]
        return np.concatenate(rows)

    def names(self, docs: np.ndarray) -> np.ndarray:
        """The ids of global documents `docs`, reading only those from each task's ids."""
        offsets, order = self.offsets(), np.argsort(docs, kind="stable")
        bounds = np.searchsorted(docs[order], offsets)
        names = np.empty(len(docs), dtype=object)
        for rank in range(self.tasks):
            these = order[bounds[rank] : bounds[rank + 1]]
            if len(these):
                names[these] = self._ids(rank)[docs[these] - offsets[rank]]
        return names


class Sign(PipelineStep):
    """A task's document ids, and its documents' LSH buckets split by key into `partitions` files,
    so that one later task per partition sees whole buckets; signatures are dropped batch by batch."""

    name, type = "minhash buckets", "Dedup"

    def __init__(self, params: MinHashParams, partitions: int, into: Signed):
        super().__init__()
        self.params, self.partitions, self.into = params, partitions, into

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        ids: list[str] = []
        rows = [np.empty(0, ROW)]
        for batch in _batches(data):
            rows.append(band_rows(signatures([d.text for d in batch], self.params), self.params, first=len(ids)))
            ids += [d.id for d in batch]
        _save_npy(self.into.ids_file(rank), np.array(ids, dtype=str))
        table = np.concatenate(rows)
        part = table["key"] % np.uint64(self.partitions)
        for p in range(self.partitions):
            _save_npy(self.into.bucket_file(rank, p), table[part == p])
        yield from ()


class LinkCandidates(PipelineStep):
    """Task `rank` gathers bucket partition `rank` of every signing task and saves what it links:
    each document to the smallest document linked to it here (the partition's components, so at
    most one edge per document) and to the smallest reference document sharing a bucket with it."""

    name, type = "link bucket members", "Dedup"

    def __init__(self, inputs: Signed, reference: Signed, into: Path):
        super().__init__()
        self.inputs, self.reference, self.into = inputs, reference, into

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        rows = self.inputs.partition(rank)
        nodes, roots = components(*candidate_edges(rows))
        linked = nodes != roots
        docs, refs = reference_matches(rows, self.reference.partition(rank))
        _save_npz(self.into / f"{rank:03d}.npz", doc=nodes[linked], root=roots[linked], ref_doc=docs, ref=refs)
        yield from ()


class DropDuplicates(PipelineStep):
    """Marks the documents the clustering phase chose to remove, with the cluster they belong to."""

    name, type = "drop duplicates", "Dedup"

    def __init__(self, decisions: str):
        super().__init__()
        self.decisions = decisions

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        decided = np.load(Path(self.decisions) / f"{rank:05d}.npz")
        reasons, clusters = decided["reason"].tolist(), decided["cluster"].tolist()
        for document, reason, cluster in zip(data, reasons, clusters, strict=True):
            if reason:
                document.metadata[REMOVED] = reason
                document.metadata["duplicate_cluster"] = cluster
            yield document


def _decide(inputs: Signed, reference: Signed, edges: Path, into: Path) -> None:
    """Per-task removal reasons and clusters from the partitions' edges: union-find over only the
    documents that have an edge, so memory follows the duplicates, not the corpus."""
    parts = [np.load(path) for path in sorted(edges.glob("*.npz"))]

    def column(name: str) -> np.ndarray:
        return np.concatenate([part[name] for part in parts])

    nodes, roots = components(column("doc"), column("root"))
    removed = nodes != roots
    dups, clusters = nodes[removed], roots[removed]
    matched, refs = smallest_match(column("ref_doc"), column("ref"))
    cluster_names, ref_names = inputs.names(clusters), "reference:" + reference.names(refs)
    offsets = inputs.offsets()
    staging = into.with_name(into.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    for rank in range(inputs.tasks):
        lo, hi = offsets[rank], offsets[rank + 1]
        reason, cluster = np.full(hi - lo, "", dtype=object), np.full(hi - lo, "", dtype=object)
        for docs, names, why in ((dups, cluster_names, WITHIN), (matched, ref_names, OF_REFERENCE)):
            these = slice(*np.searchsorted(docs, [lo, hi]))  # the reference reason, set last, wins
            reason[docs[these] - lo] = why
            cluster[docs[these] - lo] = names[these]
        _save_npz(staging / f"{rank:05d}.npz", reason=reason.astype(str), cluster=cluster.astype(str))
    os.replace(staging, into)


def dedup(
    inputs: Sequence[str],
    output: str,
    executor: Executor,
    params: MinHashParams = MinHashParams(),
    against: Sequence[str] = (),
    fmt: str = "jsonl.gz",
    removed_text: bool = False,
    partitions: int | None = None,
) -> dict[str, Any]:
    """Within `inputs`, keep the first document of each near-duplicate cluster; drop those that
    near-duplicate any document of `against` (GPT-3 removed WebText duplicates from Common Crawl).

    Scales out like the large-scale dedups: the parallel "sign" phase writes each document's LSH
    buckets split into `partitions` by key (default: one per PARTITION_BYTES of input files); a
    parallel "candidates" phase, one task per partition, links the members of each bucket; only
    those links reach the single-process union-find, never the signatures. So a sign task holds
    its own documents' rows, a candidates task one partition of all rows, and the union-find the
    documents that have a near-duplicate.
    """
    files, reference = _files(inputs, output), _files(against, output) if against else []
    if partitions is None:
        partitions = min(MAX_PARTITIONS, 1 + sum(os.path.getsize(f) for f in files) // PARTITION_BYTES)
    _check_whole("dedup partitions", partitions, 1)
    executor.start()
    ws = Workspace(
        output,
        _settings("dedup", files, against=reference, minhash=params.__dict__, partitions=partitions, fmt=fmt),
    )
    work = str(ws.work)
    signed = Signed(ws.work / "ids", ws.work / "buckets", len(files))
    ref_signed = Signed(ws.work / "reference-ids", ws.work / "reference-buckets", len(reference))
    ws.run(
        "sign",
        [ReadInputs(files, work, str(ws.malformed)), Sign(params, partitions, signed)],
        len(files),
        executor,
    )
    if reference:
        ws.run(
            "sign-reference",
            [
                ReadInputs(reference, str(ws.work / "reference"), str(ws.malformed / "reference")),
                Sign(params, partitions, ref_signed),
            ],
            len(reference),
            executor,
        )
    ws.run("candidates", [LinkCandidates(signed, ref_signed, ws.work / "edges")], partitions, executor)
    decisions = ws.once("decisions", lambda into: _decide(signed, ref_signed, ws.work / "edges", into))
    ws.run(
        "write",
        [
            ReadInputs(files, work, str(ws.malformed)),
            DropDuplicates(str(decisions)),
            WriteOutputs(output, fmt, work, removed_text),
        ],
        len(files),
        executor,
    )
    return ws.finish("dedup")


# --- decontamination -----------------------------------------------------------------------------------


class CountCollisions(PipelineStep):
    """How many of this task's documents contain each benchmark n-gram, and which documents do."""

    name, type = "count benchmark n-grams", "Decontamination"

    def __init__(self, ngrams: str, n: int, into: str):
        super().__init__()
        self.ngrams, self.n, self.into = ngrams, n, into

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        ngrams = frozenset(np.load(self.ngrams).tolist())
        counts: Counter[int] = Counter()
        hits = []
        for document in data or ():
            found = decon.colliding_ngrams(document.text, ngrams, self.n)
            counts.update(found)
            hits.append(bool(found))
        _save_npz(
            Path(self.into) / f"{rank:05d}.npz",
            ngrams=np.array(list(counts), dtype=np.uint64),
            documents=np.array(list(counts.values()), dtype=np.int64),
            hits=np.array(hits, dtype=bool),
        )
        yield from ()


class Decontaminate(PipelineStep):
    """GPT-3's rule: cut colliding n-grams with a margin; drop short pieces and shredded documents."""

    name, type = "decontaminate", "Decontamination"

    def __init__(
        self, ngrams: str, ignore: str, collisions: str, n: int, margin: int, min_piece: int, max_pieces: int, work: str
    ):
        super().__init__()
        self.ngrams, self.ignore, self.collisions, self.n, self.work = ngrams, ignore, collisions, n, work
        self.margin, self.min_piece, self.max_pieces = margin, min_piece, max_pieces

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        ngrams = frozenset(np.load(self.ngrams).tolist())
        ignore = frozenset(np.load(self.ignore).tolist())
        hits = np.load(Path(self.collisions) / f"{rank:05d}.npz")["hits"].tolist()
        counts: Counter[str] = Counter()
        for document, hit in zip(data or (), hits, strict=True):
            if not hit:  # the counting pass found no benchmark n-gram in it: nothing to cut
                counts["decontaminate_clean"] += 1
                counts["documents_out"] += 1
                yield document
                continue
            pieces, report = decon.decontaminate(
                document.text, ngrams, self.n, self.margin, self.min_piece, self.max_pieces, ignore
            )
            counts[f"decontaminate_{report['reason']}"] += 1
            counts["collisions"] += int(report["collisions"])
            counts["chars_removed"] += int(report["chars_removed"])
            if pieces is None:
                document.metadata[REMOVED] = f"contaminated: {report['reason']}"
                yield document
                continue
            counts["documents_out"] += 1
            if len(pieces) == 1 and report["reason"] == "clean":
                yield document
            else:
                for k, piece in enumerate(pieces):
                    yield Document(
                        text=piece,
                        id=f"{document.id}#{k}",
                        metadata={**document.metadata, "decontaminated_from": document.id},
                    )
        write_counts(self.work, f"{rank:05d}.decontaminate", counts)


def decontaminate(
    inputs: Sequence[str],
    output: str,
    benchmarks: Sequence[str],
    executor: Executor,
    n: int = 13,
    margin: int = 200,
    min_piece: int = 200,
    max_pieces: int = 10,
    max_documents: int = 10,
    fmt: str = "jsonl.gz",
    removed_text: bool = False,
) -> dict[str, Any]:
    """`max_documents`: n-grams found in more documents than this are common phrases, not leaks."""
    files, bench_files = _files(inputs, output), _files(benchmarks, output)
    executor.start()
    ws = Workspace(
        output,
        _settings(
            "decontaminate",
            files,
            benchmarks=bench_files,
            n=n,
            margin=margin,
            min_piece=min_piece,
            max_pieces=max_pieces,
            max_documents=max_documents,
            fmt=fmt,
        ),
    )
    work = str(ws.work)

    def benchmark_ngrams(into: Path) -> None:
        texts = (doc.text for doc in iter_documents(bench_files))
        _save_npy(into, np.array(sorted(decon.benchmark_ngrams(texts, n)), dtype=np.uint64))

    ngrams = ws.once("benchmark-ngrams.npy", benchmark_ngrams)
    ws.run(
        "count",
        [ReadInputs(files, work, str(ws.malformed)), CountCollisions(str(ngrams), n, str(ws.work / "collisions"))],
        len(files),
        executor,
    )

    def frequent(into: Path) -> None:
        total: Counter[int] = Counter()
        for path in sorted((ws.work / "collisions").glob("*.npz")):
            part = np.load(path)
            total.update(dict(zip(part["ngrams"].tolist(), part["documents"].tolist())))
        _save_npy(into, np.array(sorted(k for k, c in total.items() if c > max_documents), dtype=np.uint64))

    ignore = ws.once("frequent-ngrams.npy", frequent)
    step = Decontaminate(str(ngrams), str(ignore), str(ws.work / "collisions"), n, margin, min_piece, max_pieces, work)
    ws.run(
        "write",
        [ReadInputs(files, work, str(ws.malformed)), step, WriteOutputs(output, fmt, work, removed_text, pieces=True)],
        len(files),
        executor,
    )
    return ws.finish(
        "decontaminate", benchmark_ngrams=len(np.load(ngrams)), ngrams_ignored_as_common=len(np.load(ignore))
    )


# --- mixture and token shards ------------------------------------------------------------------------------


class Tokenize(PipelineStep):
    """A task's documents as one token file, each followed by <|endoftext|>, written batch by batch,
    and where each document ends in it."""

    name, type = "tokenize", "Tokenizer"

    def __init__(self, tokenizer: str, into: str):
        super().__init__()
        self.tokenizer, self.into = tokenizer, into

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        from gptlab.tokenizer import load_tokenizer

        tokenizer = load_tokenizer(self.tokenizer)
        dtype = token_dtype(tokenizer.vocab_size)
        lengths: list[int] = []
        with atomic.Writer(Path(self.into) / f"{rank:05d}.bin") as out:
            for batch in _batches(data):
                arrays = [
                    np.array(ids + [tokenizer.eot_id], dtype) for ids in tokenizer.encode_batch([d.text for d in batch])
                ]
                out.write(np.concatenate(arrays).data)
                lengths += map(len, arrays)
        _save_npy(Path(self.into) / f"{rank:05d}.ends.npy", np.cumsum(lengths, dtype=np.int64))
        yield from ()


def mix(
    sources: dict[str, Sequence[str]],
    weights: dict[str, float],
    tokenizer: str,
    output: str,
    executor: Executor,
    tokens: int | None = None,
    seed: int = 0,
    shard_tokens: int = DEFAULT_SHARD_TOKENS,
    max_epochs: float = mixture.MAX_EPOCHS,
) -> dict[str, Any]:
    """Sample documents from each source in proportion to its weight (not its size), repeating a
    source for as many epochs as `tokens` needs (`max_epochs` at most), and write them, interleaved,
    as token shards.

    Each source gets exactly its share of the budget: its documents are drawn whole, in a fresh
    random order each epoch, and the last one drawn is cut to fit (and still ends with
    <|endoftext|>). Without `tokens` the budget is the largest one at which no source repeats.
    Every option is checked, and a budget that would repeat a source past `max_epochs` refused
    (from the files' sizes where they bound it), before any tokenising. The tasks tokenise into
    files, and each document is read back from them when the shards reach it: memory holds where
    documents end, never their tokens.
    """
    from gptlab.tokenizer import load_tokenizer

    share = mixture.shares(weights, sources)
    _check_mix_numbers(tokens, seed, shard_tokens, max_epochs)
    files = {name: _files(paths, output) for name, paths in sources.items()}
    tok = load_tokenizer(tokenizer)
    if tok.eot_id is None:
        raise GptlabError(f"the tokenizer in {tokenizer} has no <|endoftext|> to join documents with")
    if tokens is not None:
        for name, quota in mixture.quotas(share, tokens).items():
            mixture.check_epochs(name, quota, mixture.most_tokens(files[name]), max_epochs, bound=True)
    executor.start()
    ws = Workspace(
        output,
        _settings(
            "mix",
            sorted(f for fs in files.values() for f in fs),
            sources=files,
            weights=share,
            tokenizer=str(Path(tokenizer).resolve()),
            tokens=tokens,
            seed=seed,
        ),
    )
    tokenized = _tokenize_sources(ws, files, tokenizer, tok.vocab_size, executor)
    lengths = {name: np.diff(source.ends, prepend=0) for name, source in tokenized.items()}
    available = {name: int(lengths[name].sum()) for name in sources}
    quotas = _quotas(share, available, tokens, max_epochs)
    rng = np.random.default_rng(seed)
    chosen = {name: _take(lengths[name], quotas[name], rng) for name in sources}
    which, position = _interleave({name: len(docs) for name, (docs, _) in chosen.items()}, rng)
    names = list(chosen)

    def documents() -> Iterator[np.ndarray]:
        for s, i in zip(which.tolist(), position.tolist()):
            docs, keep = chosen[names[s]]
            document = tokenized[names[s]].document(docs[i])
            if i == len(docs) - 1 and keep < len(document):  # the source's last document, cut to its quota
                document = document[:keep].copy()
                document[-1] = tok.eot_id
            yield document

    written = write_shards(output, documents(), tok.vocab_size, tok.eot_id, shard_tokens, tokenizer="tokenizer")
    tok.save(Path(output) / "tokenizer")
    report = {
        name: {
            "weight": round(share[name], 4),
            "tokens_available": available[name],
            "tokens_taken": quotas[name],
            "share": round(quotas[name] / written, 4),
            "epochs": round(quotas[name] / available[name], 3),
        }
        for name in sources
    }
    return ws.finish(
        "mix", documents_written=len(which), tokens_written=written, token_budget=sum(quotas.values()), sources=report
    )


def _check_mix_numbers(tokens: int | None, seed: int, shard_tokens: int, max_epochs: float) -> None:
    if tokens is not None:
        _check_whole("the token budget", tokens, 1)
    _check_whole("the seed", seed, 0)
    _check_whole("shard_tokens", shard_tokens, 1)
    if not max_epochs >= 1:
        raise GptlabError(f"max_epochs must be 1 or more, got {max_epochs}")


def _tokenize_sources(
    ws: Workspace, files: dict[str, list[str]], tokenizer: str, vocab_size: int, executor: Executor
) -> dict[str, _Tokenized]:
    """Each source's documents tokenized into files of its own under the workspace, read back lazily."""
    for name, source_files in files.items():
        work = str(ws.work / "sources" / name)
        ws.run(
            f"tokenize-{name}",
            [
                ReadInputs(source_files, work, str(ws.malformed / name)),
                Tokenize(tokenizer, str(ws.work / "tokens" / name)),
            ],
            len(source_files),
            executor,
        )
    dtype = token_dtype(vocab_size)
    return {name: _Tokenized.load(ws.work / "tokens" / name, len(fs), dtype, vocab_size) for name, fs in files.items()}


def _quotas(share: dict[str, float], available: dict[str, int], tokens: int | None, max_epochs: float) -> dict[str, int]:
    """Tokens to take from each source: its share of `tokens`, or without a budget the most that repeats no source."""
    if not all(available.values()):
        raise GptlabError(f"source(s) without any text: {', '.join(n for n, a in available.items() if not a)}")
    if tokens is None:
        quotas = mixture.quotas(share, min(math.floor(available[name] / share[name]) for name in share))
        quotas = {name: min(quota, available[name]) for name, quota in quotas.items()}  # not a rounding token more
    else:
        quotas = mixture.quotas(share, tokens)
    for name, quota in quotas.items():
        mixture.check_epochs(name, quota, available[name], max_epochs)
    return quotas


@dataclass(frozen=True)
class _Tokenized:
    """A source's documents, left in its tokenize tasks' token files: only where each ends is held."""

    tokens: TokenView
    ends: np.ndarray

    @classmethod
    def load(cls, directory: Path, tasks: int, dtype: np.dtype, vocab_size: int) -> _Tokenized:
        parts, ends, offset = [], [np.empty(0, np.int64)], 0
        for rank in range(tasks):
            task_ends = np.load(directory / f"{rank:05d}.ends.npy")
            n = int(task_ends[-1]) if len(task_ends) else 0
            parts.append(Part(directory / f"{rank:05d}.bin", dtype, 0, n))
            ends.append(task_ends + offset)
            offset += n
        return cls(TokenView(parts, dtype, vocab_size), np.concatenate(ends))

    def document(self, i: int) -> np.ndarray:
        """Document `i`'s tokens, read from its file now."""
        return np.asarray(self.tokens[int(self.ends[i - 1]) if i else 0 : int(self.ends[i])])


def _take(lengths: np.ndarray, quota: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Documents (their indices) in whole epochs of fresh random orders until they hold `quota` tokens, and how
    many tokens of the last one to keep for exactly `quota`."""
    taken, count = [np.empty(0, np.int64)], 0
    while count < quota:
        order = rng.permutation(len(lengths))
        ends = count + np.cumsum(lengths[order])
        order = order[: int(np.searchsorted(ends, quota)) + 1]  # through the document that reaches the quota
        taken.append(order)
        count = int(ends[len(order) - 1])
    docs = np.concatenate(taken)
    return docs, (int(lengths[docs[-1]]) - (count - quota) if len(docs) else 0)


def _interleave(counts: dict[str, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Each source's documents spread evenly, jittered, over the output: any stretch of the shards
    holds the sources in about their mixture proportions. Returns, in output order, each document's
    source (its place in `counts`) and its place among that source's documents."""
    keys = [(np.arange(count) + rng.random(count)) / max(count, 1) for count in counts.values()]
    order = np.argsort(np.concatenate(keys), kind="stable")
    which = np.repeat(np.arange(len(counts)), list(counts.values()))
    position = np.concatenate([np.arange(count) for count in counts.values()])
    return which[order], position[order]


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic.write_bytes(path, buffer.getvalue())


def _save_npy(path: Path, array: np.ndarray) -> None:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    atomic.write_bytes(path, buffer.getvalue())
