"""Throughput of the `gptlab data` pipeline (quality filter -> dedup -> decontaminate -> tokenize).

A synthetic crawl of --mb megabytes of text is written as JSONL shards in a scratch folder:
documents of 2-8 KB, each a random window of tinyshakespeare with a quarter of its words replaced
by random words of the play (so windows that overlap are not near-duplicates of each other), plus
~10% planted near-duplicates (copies with ~1% of words replaced), ~2% "web spam" word salad, one
malformed line per shard, and the lines of a small benchmark (tinyshakespeare lines of 13+
words) pasted verbatim into one to three documents each. A quality classifier (clean windows
against spam, timed apart as `classifier_train_seconds`) and a BPE-2048 tokenizer are trained
first, outside the stage timings.

Each stage then runs as its own `python -m gptlab data ...` process with --workers, reading the
previous stage's output folder. A stage's time is wall clock from process start to exit, so it
includes Python start-up, imports and the datatrove worker start-up (`cli_startup_seconds`, the
time of `gptlab data filter --help`, is the interpreter and CLI part of it); this weighs most on
small corpora. MB/s is the stage's input text (`bytes_in` of its stats.json, UTF-8 document text,
not file bytes) over its time; the pipeline's MB/s is the first stage's input over the sum of
the four stage times. Prints one JSON object.

    python benchmarks/data_pipeline.py [--mb 100] [--workers 2] [--shards 24] [--seed 0] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from gptlab.tokenizer import train_tokenizer

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tinyshakespeare.txt"
SPAM = np.array([
    "click", "here", "buy", "now", "free", "offer", "cheap", "deal", "win", "prize", "online", "casino", "loan",
    "bonus", "limited", "time", "act", "today", "best", "price", "discount", "crypto", "bitcoin", "guaranteed",
    "winner", "subscribe", "unlock", "exclusive", "www", "http://cheap-deals.example/offer", "$$$", "100%", "!!!",
], dtype=object)
SUBSTITUTED = 0.25  # share of a window's words replaced: overlapping windows share few 5- or 13-grams
NEAR_DUPLICATES = 0.10  # share of documents that are an edited copy of an earlier one
NEAR_DUPLICATE_EDITS = 0.01  # share of a copy's words replaced (Jaccard on word 5-grams ~0.9)
SPAM_SHARE = 0.02
MALFORMED = [b'{"id": "broken", "text": "no closing', b'{"id": "no-text"}', b'{"id": "latin1", "text": "caf\xe9"}']


class Corpus:
    """tinyshakespeare as words (newlines kept inside them) and a source of synthetic documents."""

    def __init__(self, text: str, rng: np.random.Generator):
        self.words = np.array(text.split(" "), dtype=object)
        self.vocabulary = np.array(text.split(), dtype=object)
        self.bytes_per_word = len(text) / len(self.words)
        self.rng = rng

    def window(self, size: int, substituted: float = SUBSTITUTED) -> str:
        """About `size` characters of the play from a random place, `substituted` of its words replaced."""
        n = max(int(size / self.bytes_per_word), 1)
        start = self.rng.integers(len(self.words) - n)
        return self.edit(self.words[start : start + n].copy(), substituted)

    def edit(self, words: np.ndarray, share: float) -> str:
        replace = self.rng.random(len(words)) < share
        words[replace] = self.vocabulary[self.rng.integers(len(self.vocabulary), size=int(replace.sum()))]
        return " ".join(words)

    def near_duplicate(self, text: str) -> str:
        return self.edit(np.array(text.split(" "), dtype=object), NEAR_DUPLICATE_EDITS)

    def spam(self, size: int) -> str:
        return " ".join(self.rng.choice(SPAM, size=max(size // 6, 1)))

    def size(self) -> int:
        return int(self.rng.integers(2000, 8000))


def build_crawl(corpus: Corpus, megabytes: float, benchmark: list[str], shards: int, folder: Path) -> dict:
    """The raw input: JSONL shards of windows, near-duplicates, spam and malformed lines."""
    rng = corpus.rng
    docs: list[tuple[str, str]] = []  # (id, text); the id's letter says what the document is
    windows: list[int] = []
    total = 0
    while total < megabytes * 1e6:
        kind = rng.random()
        if kind < NEAR_DUPLICATES and docs:
            original = docs[rng.integers(len(docs))][1]
            docs.append((f"n{len(docs)}", corpus.near_duplicate(original)))
        elif kind < NEAR_DUPLICATES + SPAM_SHARE:
            docs.append((f"s{len(docs)}", corpus.spam(corpus.size())))
        else:
            windows.append(len(docs))
            docs.append((f"w{len(docs)}", corpus.window(corpus.size())))
        total += len(docs[-1][1])

    contaminated = set()
    for line in benchmark:  # pasted between two words of 1-3 windows
        for i in rng.choice(windows, size=min(int(rng.integers(1, 4)), len(windows)), replace=False):
            doc_id, text = docs[i]
            cut = text.find(" ", int(rng.integers(len(text))))
            cut = len(text) if cut < 0 else cut
            docs[i] = (doc_id, f"{text[:cut]}\n{line}\n{text[cut:]}")
            contaminated.add(doc_id)

    folder.mkdir(parents=True)
    lines: list[list[bytes]] = [[] for _ in range(shards)]
    for (doc_id, text), shard in zip(docs, rng.integers(shards, size=len(docs))):
        lines[shard].append(json.dumps({"id": doc_id, "text": text}).encode())
    for shard, shard_lines in enumerate(lines):
        shard_lines.insert(int(rng.integers(len(shard_lines) + 1)), MALFORMED[shard % len(MALFORMED)])
        (folder / f"part-{shard:03d}.jsonl").write_bytes(b"\n".join(shard_lines) + b"\n")
    return {
        "documents": len(docs),
        "megabytes": round(sum(len(text.encode()) for _, text in docs) / 1e6, 2),
        "file_megabytes": round(sum(p.stat().st_size for p in folder.iterdir()) / 1e6, 2),
        "shards": shards,
        "near_duplicates": sum(doc_id[0] == "n" for doc_id, _ in docs),
        "spam": sum(doc_id[0] == "s" for doc_id, _ in docs),
        "malformed_lines": shards,
        "contaminated": len(contaminated),
    }


def write_jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path


def gptlab_data(*args: object) -> float:
    """Run `python -m gptlab data ARGS` and return its wall time; raise with its stderr if it fails."""
    start = time.perf_counter()
    command = [sys.executable, "-m", "gptlab", "data", *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command[1:])} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return seconds


def stage_report(output: Path, seconds: float) -> dict:
    """Time, input size, MB/s, documents in/out and removals, from the stage's stats.json."""
    stats = json.loads((output / "stats.json").read_text())
    megabytes = stats["bytes_in"] / 1e6
    report = {
        "seconds": round(seconds, 2),
        "mb_in": round(megabytes, 2),
        "mb_per_s": round(megabytes / seconds, 2),
        "documents_in": stats["documents_in"],
        "documents_out": stats.get("documents_out", stats["documents_in"]),  # tokenize keeps every document
        "removed_by_reason": stats["removed_by_reason"],
    }
    if stats.get("malformed"):
        report["malformed"] = stats["malformed"]
    extra = ("decontaminate_split", "decontaminate_too_many_pieces", "decontaminate_nothing_left", "collisions",
             "chars_removed", "tokens_written")
    report.update({key: stats[key] for key in extra if key in stats})
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=100.0, help="megabytes of document text in the raw crawl")
    parser.add_argument("--workers", type=int, default=2, help="--workers of every stage")
    parser.add_argument("--shards", type=int, default=24, help="input JSONL files, so tasks for every worker")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the corpus and stage outputs here (must not exist); default: a temporary folder")
    args = parser.parse_args()

    if args.workdir is not None and args.workdir.exists():
        parser.error(f"--workdir {args.workdir} exists; give a new folder")

    with tempfile.TemporaryDirectory() as scratch:
        root = args.workdir or Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        text = CORPUS.read_text(encoding="utf-8")
        rng = np.random.default_rng(args.seed)
        corpus = Corpus(text, rng)

        start = time.perf_counter()
        benchmark = [line.strip() for line in text.splitlines() if len(line.split()) >= 13]
        write_jsonl(root / "benchmark.jsonl", benchmark)
        crawl = build_crawl(corpus, args.mb, benchmark, args.shards, root / "raw")
        clean = [corpus.window(int(rng.integers(1000, 3000)), substituted=0.0) for _ in range(300)]
        positive = write_jsonl(root / "positive.jsonl", clean)
        spam = [corpus.spam(int(rng.integers(1000, 3000))) for _ in range(300)]
        negative = write_jsonl(root / "negative.jsonl", spam)
        train_tokenizer([CORPUS], vocab_size=2048, progress=False).save(root / "tokenizer")
        setup_seconds = time.perf_counter() - start

        startup = gptlab_data("filter", "--help")
        classifier = gptlab_data("classifier", "train", "--positive", positive, "--negative", negative,
                                 "--output", root / "classifier")
        workers = ("--workers", args.workers)
        stages = {
            "filter": ("filter", "--input", root / "raw", "--model", root / "classifier"),
            "dedup": ("dedup", "--input", root / "filter"),
            "decontaminate": ("decontaminate", "--input", root / "dedup", "--benchmark", root / "benchmark.jsonl"),
            "tokenize": ("tokenize", "--input", root / "decontaminate", "--tokenizer", root / "tokenizer"),
        }
        reports = {}
        for name, stage_args in stages.items():
            seconds = gptlab_data(*stage_args, "--output", root / name, *workers)
            reports[name] = stage_report(root / name, seconds)

    total = sum(r["seconds"] for r in reports.values())
    slowest = max(reports, key=lambda name: reports[name]["seconds"])
    print(json.dumps({
        "benchmark": "data_pipeline",
        "workers": args.workers, "cpus": os.cpu_count(), "seed": args.seed,
        "crawl": crawl,
        "benchmark_lines": len(benchmark),
        "setup_seconds": round(setup_seconds, 2),
        "cli_startup_seconds": round(startup, 2),
        "classifier_train_seconds": round(classifier, 2),
        "stages": reports,
        "pipeline": {
            "seconds": round(total, 2),
            "mb_in": reports["filter"]["mb_in"],
            "mb_per_s": round(reports["filter"]["mb_in"] / total, 2),
            "documents_in": reports["filter"]["documents_in"],
            "documents_out": reports["tokenize"]["documents_out"],
            "slowest_stage": slowest,
        },
    }, indent=2))


if __name__ == "__main__":
    main()
