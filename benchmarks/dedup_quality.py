"""Near-duplicate detection quality of gptlab's MinHash LSH on edited copies of real text.

tinyshakespeare is cut into distinct source documents of --words words. Each source gets one copy
in which every word is, with probability equal to its edit rate (cycling through --rates), replaced
by a random corpus word, deleted, or followed by an inserted one. The exact Jaccard similarity of
each (source, copy) pair is computed on the same word shingles gptlab uses (lowercased `\\w+`
words, --shingle-size grams), independently of gptlab. Then gptlab deduplicates the shuffled
sources and copies together (`signatures` + `lsh_clusters`):

- precision: of all pairs of documents put in one cluster, the share that are a source and its copy;
- recall: of the (source, copy) pairs with Jaccard >= 0.8, the share put in one cluster;
- recall per edit rate, and per Jaccard range next to the S-curve 1 - (1 - J**rows)**bands.

Prints one JSON object.

    python benchmarks/dedup_quality.py [--words 150] [--seed 0] [--bands 16 --rows 7]
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from gptlab.data.curate.minhash import MinHashParams, lsh_clusters, signatures

CORPUS = Path(__file__).resolve().parents[1].parent / "shared/data/tinyshakespeare.txt"
WORD = re.compile(r"\w+")
JACCARD_RANGES = [0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 1.01]


def edit(words: list[str], rate: float, vocabulary: list[str], rng: np.random.Generator) -> list[str]:
    out = []
    for word in words:
        op = rng.integers(3) if rng.random() < rate else -1
        if op == 0:
            out.append(vocabulary[rng.integers(len(vocabulary))])  # substitute
        elif op == 2:
            out += [word, vocabulary[rng.integers(len(vocabulary))]]  # insert after
        elif op == -1:
            out.append(word)  # op 1 deletes it
    return out


def shingle_set(text: str, k: int) -> set[tuple[str, ...]]:
    words = WORD.findall(text.lower())
    if len(words) < k:
        return {tuple(words)} if words else set()
    return {tuple(words[i : i + k]) for i in range(len(words) - k + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--words", type=int, default=150, help="whitespace-separated words per source document")
    parser.add_argument("--sources", type=int, default=None, help="at most this many source documents (default: all)")
    parser.add_argument("--rates", type=float, nargs="+", default=[0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shingle-size", type=int, default=MinHashParams.shingle_size)
    parser.add_argument("--bands", type=int, default=MinHashParams.bands)
    parser.add_argument("--rows", type=int, default=MinHashParams.rows)
    args = parser.parse_args()
    params = MinHashParams(shingle_size=args.shingle_size, bands=args.bands, rows=args.rows, seed=args.seed)
    rng = np.random.default_rng(args.seed)

    tokens = CORPUS.read_text(encoding="utf-8").split()
    chunks = [tokens[i : i + args.words] for i in range(0, len(tokens) - args.words + 1, args.words)]
    chunks = chunks[: args.sources]
    rates = [args.rates[i % len(args.rates)] for i in range(len(chunks))]
    sources = [" ".join(chunk) for chunk in chunks]
    copies = [" ".join(edit(chunk, rate, tokens, rng)) for chunk, rate in zip(chunks, rates)]
    jaccards = [jaccard(shingle_set(s, params.shingle_size), shingle_set(c, params.shingle_size))
                for s, c in zip(sources, copies)]

    # Document 2i is source i, 2i+1 its copy; dedup sees them shuffled.
    docs = [doc for pair in zip(sources, copies) for doc in pair]
    order = rng.permutation(len(docs))
    clusters = np.empty(len(docs), dtype=np.int64)
    clusters[order] = lsh_clusters(signatures([docs[i] for i in order], params), params)

    members = defaultdict(list)
    for doc, cluster in enumerate(clusters):
        members[cluster].append(doc)
    detected = [(a, b) for group in members.values() for a, b in itertools.combinations(group, 2)]
    true_detected = sum(a // 2 == b // 2 for a, b in detected)
    found = clusters[0::2] == clusters[1::2]  # per source: is its copy in its cluster?

    J = np.array(jaccards)
    high = J >= 0.8
    s_curve = 1 - (1 - J**params.rows) ** params.bands
    rates_arr = np.array(rates)
    by_rate = [{
        "edit_rate": rate, "pairs": int(sel.sum()),
        "jaccard_mean": round(float(J[sel].mean()), 3), "jaccard_min": round(float(J[sel].min()), 3),
        "recall": round(float(found[sel].mean()), 3),
    } for rate in args.rates if (sel := rates_arr == rate).any()]
    by_jaccard = [{
        "jaccard": f"[{lo}, {min(hi, 1.0)}{']' if hi > 1 else ')'}", "pairs": int(sel.sum()),
        "recall": round(float(found[sel].mean()), 3), "s_curve": round(float(s_curve[sel].mean()), 3),
    } for lo, hi in itertools.pairwise(JACCARD_RANGES) if (sel := (J >= lo) & (J < hi)).any()]

    precision = true_detected / len(detected) if detected else 1.0
    recall = float(found[high].mean()) if high.any() else float("nan")
    print(json.dumps({
        "benchmark": "dedup_quality",
        "sources": len(sources), "documents": len(docs), "words_per_source": args.words, "seed": args.seed,
        "shingle_size": params.shingle_size, "bands": params.bands, "rows": params.rows, "num_perm": params.num_perm,
        "precision": round(precision, 4),
        "detected_pairs": len(detected), "false_pairs": len(detected) - true_detected,
        "recall_jaccard_ge_0.8": round(recall, 4),
        "pairs_jaccard_ge_0.8": int(high.sum()),
        "s_curve_at_0.8": round(1 - (1 - 0.8**params.rows) ** params.bands, 4),
        "by_edit_rate": by_rate,
        "by_jaccard": by_jaccard,
        "goals": {"recall_jaccard_ge_0.8": ">= 0.95", "precision": ">= 0.95"},
        "goals_met": recall >= 0.95 and precision >= 0.95,
    }, indent=2))


if __name__ == "__main__":
    main()
