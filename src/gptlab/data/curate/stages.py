"""The curation stages: quality filter, dedup, decontaminate, mix. Each is a few datatrove
pipeline steps run by `engine.Workspace` over the input files, plus any single-process phase
that needs the whole corpus at once (LSH clustering, n-gram counts, the mixture).

Documents keep their `id` through every stage; a document that decontamination cuts into
pieces becomes `id#0`, `id#1`, ... .
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from gptlab import atomic
from gptlab.data.curate import decontaminate as decon
from gptlab.data.curate.documents import expand_inputs, read_documents
from gptlab.data.curate.engine import REMOVED, Engine, ReadInputs, Workspace, WriteOutputs, write_counts
from gptlab.data.curate.minhash import MinHashParams, duplicates_to_remove, lsh_clusters, match_reference, signatures
from gptlab.data.curate.quality_filter import pareto_keep, plot_scores
from gptlab.data.shards import token_dtype, write_shards
from gptlab.errors import GptlabError

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


def _files(inputs: Sequence[str]) -> list[str]:
    return [str(path) for path in expand_inputs(inputs)]


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
    engine: Engine,
    alpha: float = 9.0,
    seed: int = 0,
    fmt: str = "jsonl.gz",
    removed_text: bool = False,
) -> dict[str, Any]:
    from gptlab.data.curate.classifier import QualityClassifier

    files = _files(inputs)
    QualityClassifier.load(model)  # a bad model path fails here, once, not in every task
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
        engine,
    )
    parts = [np.load(p) for p in sorted((ws.work / "scores").glob("*.npz"))]
    scores = np.concatenate([p["scores"] for p in parts])
    kept = np.concatenate([p["kept"] for p in parts])
    plot_scores(scores, kept, Path(output) / "scores.png", alpha)
    return ws.finish("filter", mean_score=round(float(scores.mean()), 4) if len(scores) else None)


# --- fuzzy deduplication ------------------------------------------------------------------------------


class Sign(PipelineStep):
    """MinHash signatures of a task's documents, saved in document order."""

    name, type = "minhash signatures", "Dedup"

    def __init__(self, params: MinHashParams, into: str):
        super().__init__()
        self.params, self.into = params, into

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        ids, sigs = [], []
        for batch in _batches(data):
            ids += [d.id for d in batch]
            sigs.append(signatures([d.text for d in batch], self.params))
        empty = np.empty((0, self.params.num_perm), np.uint32)
        _save_npz(
            Path(self.into) / f"{rank:05d}.npz",
            ids=np.array(ids, dtype=str),
            sigs=np.concatenate(sigs) if sigs else empty,
        )
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


def dedup(
    inputs: Sequence[str],
    output: str,
    engine: Engine,
    params: MinHashParams = MinHashParams(),
    against: Sequence[str] = (),
    fmt: str = "jsonl.gz",
    removed_text: bool = False,
) -> dict[str, Any]:
    """Within `inputs`, keep the first document of each near-duplicate cluster; drop those that
    near-duplicate any document of `against` (GPT-3 removed WebText duplicates from Common Crawl)."""
    files, reference = _files(inputs), _files(against) if against else []
    ws = Workspace(output, _settings("dedup", files, against=reference, minhash=params.__dict__, fmt=fmt))
    work = str(ws.work)
    ws.run(
        "sign",
        [ReadInputs(files, work, str(ws.malformed)), Sign(params, str(ws.work / "signatures"))],
        len(files),
        engine,
    )
    if reference:
        ref_work = str(ws.work / "reference")
        ws.run(
            "sign-reference",
            [
                ReadInputs(reference, ref_work, str(ws.malformed / "reference")),
                Sign(params, str(ws.work / "reference-signatures")),
            ],
            len(reference),
            engine,
        )

    def cluster(into: Path) -> None:
        parts = [np.load(ws.work / "signatures" / f"{rank:05d}.npz") for rank in range(len(files))]
        ids = np.concatenate([p["ids"] for p in parts]) if parts else np.empty(0, str)
        sigs = np.concatenate([p["sigs"] for p in parts])
        clusters = lsh_clusters(sigs, params)
        removed = duplicates_to_remove(clusters)
        reasons = np.where(removed, "duplicate: near-duplicate within the input", "").astype(object)
        cluster_of = np.where(removed, ids[clusters], "").astype(object)
        if reference:
            ref = [np.load(ws.work / "reference-signatures" / f"{r:05d}.npz") for r in range(len(reference))]
            ref_ids = np.concatenate([p["ids"] for p in ref])
            match = match_reference(sigs, np.concatenate([p["sigs"] for p in ref]), params)
            hit = match >= 0
            reasons[hit] = "duplicate: near-duplicate of the reference set"
            cluster_of[hit] = ["reference:" + ref_ids[m] for m in match[hit]]
        start = 0
        staging = into.with_name(into.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        for rank, part in enumerate(parts):
            end = start + len(part["ids"])
            _save_npz(
                staging / f"{rank:05d}.npz",
                reason=reasons[start:end].astype(str),
                cluster=cluster_of[start:end].astype(str),
            )
            start = end
        os.replace(staging, into)

    decisions = ws.once("decisions", cluster)
    ws.run(
        "write",
        [
            ReadInputs(files, work, str(ws.malformed)),
            DropDuplicates(str(decisions)),
            WriteOutputs(output, fmt, work, removed_text),
        ],
        len(files),
        engine,
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
            elif len(pieces) == 1 and report["reason"] == "clean":
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
    engine: Engine,
    n: int = 13,
    margin: int = 200,
    min_piece: int = 200,
    max_pieces: int = 10,
    max_documents: int = 10,
    fmt: str = "jsonl.gz",
    removed_text: bool = False,
) -> dict[str, Any]:
    """`max_documents`: n-grams found in more documents than this are common phrases, not leaks."""
    files, bench_files = _files(inputs), _files(benchmarks)
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
        def fail(file: str, line: int | None, reason: str) -> None:
            raise GptlabError(f"benchmark file {file}{f' line {line}' if line else ''}: {reason}")

        texts = (doc.text for path in bench_files for doc in read_documents(path, fail))
        _save_npy(into, np.array(sorted(decon.benchmark_ngrams(texts, n)), dtype=np.uint64))

    ngrams = ws.once("benchmark-ngrams.npy", benchmark_ngrams)
    ws.run(
        "count",
        [ReadInputs(files, work, str(ws.malformed)), CountCollisions(str(ngrams), n, str(ws.work / "collisions"))],
        len(files),
        engine,
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
        [ReadInputs(files, work, str(ws.malformed)), step, WriteOutputs(output, fmt, work, removed_text)],
        len(files),
        engine,
    )
    return ws.finish(
        "decontaminate", benchmark_ngrams=len(np.load(ngrams)), ngrams_ignored_as_common=len(np.load(ignore))
    )


# --- mixture and token shards ------------------------------------------------------------------------------


class Tokenize(PipelineStep):
    """A task's documents as one token stream, each followed by <|endoftext|>, plus document ends."""

    name, type = "tokenize", "Tokenizer"

    def __init__(self, tokenizer: str, into: str):
        super().__init__()
        self.tokenizer, self.into = tokenizer, into

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        from gptlab.tokenizer import load_tokenizer

        tokenizer = load_tokenizer(self.tokenizer)
        dtype = token_dtype(tokenizer.vocab_size)
        arrays = []
        for batch in _batches(data):
            arrays += [
                np.array(ids + [tokenizer.eot_id], dtype) for ids in tokenizer.encode_batch([d.text for d in batch])
            ]
        ends = np.cumsum([len(a) for a in arrays], dtype=np.int64)
        _save_npz(
            Path(self.into) / f"{rank:05d}.npz",
            tokens=np.concatenate(arrays) if arrays else np.empty(0, dtype),
            ends=ends,
        )
        yield from ()


def mix(
    sources: dict[str, Sequence[str]],
    weights: dict[str, float],
    tokenizer: str,
    output: str,
    engine: Engine,
    tokens: int | None = None,
    seed: int = 0,
    shard_tokens: int = 100_000_000,
) -> dict[str, Any]:
    """Sample documents from each source in proportion to its weight (not its size), repeating a
    source for as many epochs as `tokens` needs, and write them, interleaved, as token shards.

    Without `tokens` the budget is the largest one at which no source repeats.
    """
    from gptlab.tokenizer import load_tokenizer

    if set(weights) != set(sources):
        raise GptlabError(f"give a weight for each source: sources {sorted(sources)}, weights {sorted(weights)}")
    if any(w <= 0 for w in weights.values()):
        raise GptlabError("mixture weights must be positive")
    tok = load_tokenizer(tokenizer)
    if tok.eot_id is None:
        raise GptlabError(f"the tokenizer in {tokenizer} has no <|endoftext|> to join documents with")
    files = {name: _files(paths) for name, paths in sources.items()}
    total_weight = sum(weights.values())
    share = {name: weights[name] / total_weight for name in sources}
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
    for name, source_files in files.items():
        work = str(ws.work / "sources" / name)
        ws.run(
            f"tokenize-{name}",
            [
                ReadInputs(source_files, work, str(ws.malformed / name)),
                Tokenize(tokenizer, str(ws.work / "tokens" / name)),
            ],
            len(source_files),
            engine,
        )
    documents = {name: _documents(ws.work / "tokens" / name, len(fs)) for name, fs in files.items()}
    available = {name: int(sum(len(d) for d in docs)) for name, docs in documents.items()}
    if not all(available.values()):
        raise GptlabError(f"source(s) without any text: {', '.join(n for n, a in available.items() if not a)}")
    budget = tokens or int(min(available[name] / share[name] for name in sources))
    rng = np.random.default_rng(seed)
    chosen = {name: _take(documents[name], share[name] * budget, rng) for name in sources}
    order = _interleave({name: len(docs) for name, docs in chosen.items()}, rng)
    written = write_shards(
        output, (chosen[name][i] for name, i in order), tok.vocab_size, tok.eot_id, shard_tokens, tokenizer="tokenizer"
    )
    tok.save(Path(output) / "tokenizer")
    report = {
        name: {
            "weight": round(share[name], 4),
            "tokens_available": available[name],
            "tokens_taken": int(sum(len(d) for d in chosen[name])),
            "epochs": round(sum(len(d) for d in chosen[name]) / available[name], 3),
        }
        for name in sources
    }
    return ws.finish("mix", tokens_written=written, token_budget=budget, sources=report)


def _documents(directory: Path, tasks: int) -> list[np.ndarray]:
    docs = []
    for rank in range(tasks):
        part = np.load(directory / f"{rank:05d}.npz")
        docs += np.split(part["tokens"], part["ends"][:-1]) if len(part["ends"]) else []
    return docs


def _take(documents: list[np.ndarray], quota: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Whole epochs in fresh random orders until `quota` tokens are reached."""
    taken, count = [], 0
    while count < quota:
        for i in rng.permutation(len(documents)):
            if count >= quota:
                break
            taken.append(documents[i])
            count += len(documents[i])
    return taken


def _interleave(counts: dict[str, int], rng: np.random.Generator) -> list[tuple[str, int]]:
    """Each source's documents spread evenly, jittered, over the output: any stretch of the shards
    holds the sources in about their mixture proportions."""
    keys, order = [], []
    for name, count in counts.items():
        keys.append((np.arange(count) + rng.random(count)) / max(count, 1))
        order += [(name, i) for i in range(count)]
    return [order[i] for i in np.argsort(np.concatenate(keys), kind="stable")] if order else []


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
