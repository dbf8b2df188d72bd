"""Throughput of gptlab's MinHash LSH deduplication against datasketch, on one core.

Documents are runs of tinyshakespeare paragraphs of 2-5 KB, repeated with a few random word
substitutions until the corpus reaches --mb megabytes, then shuffled, so LSH has real
near-duplicates to find. gptlab runs `signatures` + `lsh_clusters`; datasketch runs `MinHash`
(the same num_perm, one `update` per shingle, the same word 5-gram shingles, permutations shared
between documents as its docs advise) + `MinHashLSH` insert of every document and a query for
each; `update_batch` in place of the per-shingle `update` is reported beside it, not in the goal.
All start from the raw text. Each figure is the best of --repeat runs, the engines
interleaved so that machine noise hits them alike. Prints one JSON object.

    python benchmarks/dedup_speed.py [--mb 8] [--repeat 3] [--seed 0] [--unicode]
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[var] = "1"  # one core, set before numpy loads its thread pools

import argparse
import functools
import json
import re
import time
from pathlib import Path

import numpy as np
from datasketch import MinHash, MinHashLSH

from gptlab.data.curate.minhash import MinHashParams, duplicates_to_remove, lsh_clusters, signatures

CORPUS = Path(__file__).resolve().parents[1].parent / "shared/data/tinyshakespeare.txt"
WORD = re.compile(r"\w+")


def build_documents(text: str, megabytes: float, rng: np.random.Generator) -> list[str]:
    """Source documents of 2-5 KB, then copies with 0-5% of words substituted up to the target size."""
    sources, current = [], ""
    target = rng.integers(2000, 5000)
    for paragraph in text.split("\n\n"):
        current += paragraph + "\n\n"
        if len(current) >= target:
            sources.append(current)
            current, target = "", rng.integers(2000, 5000)
    vocabulary = text.split()
    docs, size = list(sources), len(text)
    while size < megabytes * 1e6:
        source = sources[rng.integers(len(sources))].split(" ")
        edited = rng.random(len(source)) < rng.choice([0.0, 0.01, 0.05])
        for i in np.flatnonzero(edited):
            source[i] = vocabulary[rng.integers(len(vocabulary))]
        docs.append(" ".join(source))
        size += len(docs[-1])
    return [docs[i] for i in rng.permutation(len(docs))]


def run_gptlab(docs: list[str], params: MinHashParams) -> int:
    clusters = lsh_clusters(signatures(docs, params), params)
    return int(duplicates_to_remove(clusters).sum())


def run_datasketch(docs: list[str], params: MinHashParams, batch: bool = False) -> int:
    template = MinHash(num_perm=params.num_perm, seed=params.seed + 1)
    k = params.shingle_size
    minhashes = []
    for doc in docs:
        words = WORD.findall(doc.lower())
        shingles = [" ".join(words[i : i + k]).encode() for i in range(max(len(words) - k + 1, 1) if words else 0)]
        m = MinHash(num_perm=params.num_perm, permutations=template.permutations, scheme=template.scheme)
        if batch:
            m.update_batch(shingles)
        else:
            for shingle in shingles:
                m.update(shingle)
        minhashes.append(m)
    lsh = MinHashLSH(num_perm=params.num_perm, params=(params.bands, params.rows))
    for i, m in enumerate(minhashes):
        lsh.insert(i, m)
    # The same "removed" count as gptlab's when candidate sets are cliques: documents with an earlier candidate.
    return sum(min(lsh.query(m)) < i for i, m in enumerate(minhashes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=8.0, help="corpus size in megabytes")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bands", type=int, default=MinHashParams.bands)
    parser.add_argument("--rows", type=int, default=MinHashParams.rows)
    parser.add_argument("--unicode", action="store_true", help="curly apostrophes: time the non-ASCII tokenizer path")
    args = parser.parse_args()

    params = MinHashParams(bands=args.bands, rows=args.rows, seed=args.seed)
    text = CORPUS.read_text(encoding="utf-8")
    docs = build_documents(text.replace("'", "\u2019") if args.unicode else text, args.mb, np.random.default_rng(args.seed))
    megabytes = sum(len(d.encode()) for d in docs) / 1e6
    engines = {
        "gptlab": run_gptlab,
        "datasketch": run_datasketch,
        "datasketch_update_batch": functools.partial(run_datasketch, batch=True),
    }
    seconds = {name: float("inf") for name in engines}
    removed = {}
    for _ in range(args.repeat):
        for name, run in engines.items():
            start = time.perf_counter()
            removed[name] = run(docs, params)
            seconds[name] = min(seconds[name], time.perf_counter() - start)

    mb_per_s = {name: round(megabytes / s, 2) for name, s in seconds.items()}
    print(json.dumps({
        "benchmark": "dedup_speed",
        "documents": len(docs), "megabytes": round(megabytes, 2),
        "shingle_size": params.shingle_size, "bands": params.bands, "rows": params.rows, "num_perm": params.num_perm,
        "threads": 1, "seed": args.seed, "ascii_documents": sum(d.isascii() for d in docs),
        "gptlab_mb_per_s": mb_per_s["gptlab"],
        "datasketch_mb_per_s": mb_per_s["datasketch"],
        "datasketch_update_batch_mb_per_s": mb_per_s["datasketch_update_batch"],
        "ratio": round(mb_per_s["gptlab"] / mb_per_s["datasketch"], 2),
        "ratio_vs_update_batch": round(mb_per_s["gptlab"] / mb_per_s["datasketch_update_batch"], 2),
        "removed": removed,
        "goals": {"ratio": ">= 5", "gptlab_mb_per_s": ">= 10"},
    }, indent=2))


if __name__ == "__main__":
    main()
