"""MinHash LSH fuzzy deduplication (GPT-3 Appendix A), vectorised with numpy.

A document is the set of its word k-gram shingles. MinHash keeps, for each of num_perm seeded
hash functions, the smallest hash over that set, so two signatures agree at a position with
probability equal to the Jaccard similarity J of the two sets. LSH cuts a signature into `bands`
bands of `rows` positions and makes two documents candidates when any whole band agrees, which
happens with probability 1 - (1 - J**rows)**bands: an S-curve that keeps near-duplicates and
drops the rest without comparing all pairs.

    sigs = signatures(texts, params)
    keep = ~duplicates_to_remove(lsh_clusters(sigs, params))

LSH needs only each document's bucket per band (`band_rows`), never the signatures themselves, and
a bucket's members can be found wherever its rows are gathered. So a corpus too large for one
machine splits its rows by key: each partition yields `candidate_edges` and `reference_matches`,
and `components` joins the edges of all partitions into the clusters `lsh_clusters` computes in
memory (see `stages.dedup`).
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain, pairwise

import numpy as np

from gptlab.errors import GptlabError

WORD = re.compile(r"\w+")
EMPTY = np.iinfo(np.uint32).max
"""Every position of an empty document's signature: LSH skips such rows, so they match nothing."""
DOCS_PER_CHUNK = 1024
"""Documents tokenised together: bounds the Python word lists held at once."""
SHINGLES_PER_BLOCK = 16384
"""Shingles hashed at once: a num_perm x block uint64 work array, 14 MiB at 112 hashes (measured best)."""


@dataclass(frozen=True)
class MinHashParams:
    """Shingling and LSH banding; signatures are only comparable under equal params.

    The default 16 bands x 7 rows (112 hashes) puts the S-curve 1 - (1 - J**7)**16 at
    J=0.8: 0.977, J=0.7: 0.75, J=0.5: 0.12, J=0.3: 0.004, so pairs with Jaccard >= 0.8 are found
    with more than 95% probability while dissimilar pairs rarely become candidates. FineWeb's
    14 x 8 reaches only 0.92 at J=0.8; 20 x 6 reaches 0.998 there but flags 27% of pairs at J=0.5
    and costs 120 hashes. GPT-3's Spark MinHashLSH with 10 hashes is bands=10, rows=1.
    """

    shingle_size: int = 5
    """Words per shingle, as in FineWeb/datatrove."""
    bands: int = 16
    rows: int = 7
    seed: int = 0
    """Picks the hash functions: documents hashed with different seeds never match."""

    def __post_init__(self) -> None:
        for name in ("shingle_size", "bands", "rows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise GptlabError(f"minhash {name} must be a positive integer, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise GptlabError(f"minhash seed must be a non-negative integer, got {self.seed!r}")

    @property
    def num_perm(self) -> int:
        return self.bands * self.rows


@dataclass(frozen=True)
class _Coefficients:
    word: np.ndarray
    """Odd multipliers, one per shingle position, so that word order matters."""
    mul: np.ndarray
    add: np.ndarray
    """(mul * x + add) >> 32 over 64-bit words is a 2-universal hash of 32-bit x (Dietzfelbinger)."""
    band: np.ndarray
    """Odd multipliers that fold a band's rows into one 64-bit bucket key."""


@functools.cache
def _coefficients(params: MinHashParams) -> _Coefficients:
    rng = np.random.default_rng(params.seed)  # PCG64: the same draws on every machine

    def draw(n: int) -> np.ndarray:
        return rng.integers(0, 2**64, size=n, dtype=np.uint64, endpoint=False)

    return _Coefficients(
        word=draw(params.shingle_size) | 1,
        mul=draw(params.num_perm),
        add=draw(params.num_perm),
        band=draw(params.num_perm) | 1,
    )


def _ascii_table() -> bytes:
    words = {c for c in range(128) if WORD.fullmatch(chr(c))}
    return bytes(ord(chr(c).lower()) if c in words else ord(" ") for c in range(256))


ASCII_WORDS = _ascii_table()
"""bytes.translate table that lowercases ASCII word characters and blanks the rest."""


def _words(text: str) -> list[bytes]:
    """`\\w+` words of the lowercased text as UTF-8; ASCII text, the common case, skips re: 2.5x faster."""
    if text.isascii():
        return text.encode().translate(ASCII_WORDS).split()
    return [word.encode() for word in WORD.findall(text.lower())]


def _word_hashes(words: list[bytes], cache: dict[bytes, int]) -> np.ndarray:
    # Python's hash() is salted per process; blake2b is stable and runs once per distinct word.
    cache.update(
        (w, int.from_bytes(hashlib.blake2b(w, digest_size=8).digest(), "little")) for w in set(words).difference(cache)
    )
    return np.fromiter(map(cache.__getitem__, words), dtype=np.uint64, count=len(words))


def _shingle_hashes(
    texts: Sequence[str], coef: _Coefficients, cache: dict[bytes, int]
) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes of every document's shingles, concatenated, and each document's offsets into them."""
    docs = [_words(text) for text in texts]
    n_words = np.array([len(d) for d in docs], dtype=np.int64)
    words = _word_hashes(list(chain.from_iterable(docs)), cache)

    # Leave k-1 zero words after each document: a window then never spans two documents, and a
    # document shorter than k words hashes as one shingle, its whole word list padded with zeros.
    k = len(coef.word)
    padded = np.zeros(len(words) + (k - 1) * len(docs), dtype=np.uint64)
    padded[np.arange(len(words)) + (k - 1) * np.repeat(np.arange(len(docs)), n_words)] = words
    windows = np.zeros(len(padded) - (k - 1), dtype=np.uint64)
    for i, multiplier in enumerate(coef.word):
        windows += padded[i : i + len(windows)] * multiplier  # wraps mod 2**64; high bits mix every word

    n_shingles = np.where(n_words > 0, np.maximum(n_words - (k - 1), 1), 0)
    offsets = np.concatenate([[0], np.cumsum(n_shingles)])
    doc_start = np.cumsum(n_words + k - 1) - (n_words + k - 1)
    starts = np.arange(offsets[-1]) + np.repeat(doc_start - offsets[:-1], n_shingles)
    return windows[starts] >> 32, offsets


def _minhash_into(out: np.ndarray, shingles: np.ndarray, offsets: np.ndarray, coef: _Coefficients) -> None:
    """Lower `out` [docs, num_perm] to the minimum hash of each document's shingles, block by block."""
    doc_of = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    work = np.empty((len(coef.mul), min(SHINGLES_PER_BLOCK, len(shingles))), dtype=np.uint64)
    for lo in range(0, len(shingles), SHINGLES_PER_BLOCK):
        block, docs = shingles[lo : lo + SHINGLES_PER_BLOCK], doc_of[lo : lo + SHINGLES_PER_BLOCK]
        hashed = work[:, : len(block)]
        np.multiply(coef.mul[:, None], block, out=hashed)
        hashed += coef.add[:, None]
        first = np.flatnonzero(np.diff(docs, prepend=-1))  # where each document's run starts
        # Shifting after the min is the same as before it: shifts are monotone.
        mins = (np.minimum.reduceat(hashed, first, axis=1).T >> 32).astype(np.uint32)
        ids = docs[first]
        out[ids] = np.minimum(out[ids], mins)


def signatures(texts: Sequence[str], params: MinHashParams) -> np.ndarray:
    """MinHash signatures [len(texts), num_perm] uint32, identical on every machine and process.

    Text is lowercased and split into `\\w+` words. A document with fewer than shingle_size words
    is one shingle of all its words; one with no words gets the EMPTY signature and never matches.
    """
    coef = _coefficients(params)
    sigs = np.full((len(texts), params.num_perm), EMPTY, dtype=np.uint32)
    cache: dict[bytes, int] = {}
    for lo in range(0, len(texts), DOCS_PER_CHUNK):
        chunk = texts[lo : lo + DOCS_PER_CHUNK]
        shingles, offsets = _shingle_hashes(chunk, coef, cache)
        _minhash_into(sigs[lo : lo + len(chunk)], shingles, offsets, coef)
    return sigs


ROW = np.dtype([("band", np.int32), ("key", np.uint64), ("doc", np.int64)])
"""One document's bucket in one band. LSH works on these rows alone, so they can be sharded by key
across processes (a bucket never spans two shards) instead of holding every signature at once."""


def _band_keys(sigs: np.ndarray, params: MinHashParams) -> tuple[np.ndarray, np.ndarray]:
    """One 64-bit bucket key per (band, document), and which documents may match at all."""
    if sigs.ndim != 2 or sigs.shape[1] != params.num_perm:
        raise GptlabError(f"signatures must have shape [n, {params.num_perm}] for these params, got {list(sigs.shape)}")
    multipliers = _coefficients(params).band
    keys = np.zeros((params.bands, len(sigs)), dtype=np.uint64)
    for column, multiplier in enumerate(multipliers):  # column by column: no uint64 copy of all signatures
        keys[column // params.rows] += sigs[:, column].astype(np.uint64) * multiplier
    return keys, ~(sigs == EMPTY).all(axis=1)


def band_rows(sigs: np.ndarray, params: MinHashParams, first: int = 0) -> np.ndarray:
    """ROW records of every band of every non-empty document, numbered from `first`, band by band."""
    keys, valid = _band_keys(sigs, params)
    docs = np.flatnonzero(valid)
    rows = np.empty((params.bands, len(docs)), dtype=ROW)
    rows["band"] = np.arange(params.bands, dtype=np.int32)[:, None]
    rows["key"] = keys[:, docs]
    rows["doc"] = docs + first
    return rows.ravel()


def _buckets(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row order that puts each bucket's rows together, and where each bucket starts in it.

    Bands are few: sort rows by band (stable, so nearly free on band_rows' band-major order), then
    each band's keys on their own, which is about twice as fast as sorting by (band, key) at once.
    """
    order = np.argsort(rows["band"], kind="stable")
    band, key = rows["band"][order], rows["key"][order]
    for lo, hi in pairwise([0, *(np.flatnonzero(np.diff(band)) + 1), len(order)]):
        within = np.argsort(key[lo:hi])
        order[lo:hi], key[lo:hi] = order[lo:hi][within], key[lo:hi][within]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (band[1:] != band[:-1]) | (key[1:] != key[:-1])
    return order, np.flatnonzero(new)


def _bucket_min(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """For each row of bucket-ordered `values`, the smallest value of its bucket."""
    return np.repeat(np.minimum.reduceat(values, starts), np.diff(starts, append=len(values)))


def candidate_edges(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges (smallest document of the bucket, other member) of every bucket with more than one document."""
    order, starts = _buckets(rows)
    docs = rows["doc"][order]
    head = _bucket_min(docs, starts)
    follower = docs != head
    return head[follower], docs[follower]


def components(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The documents that edges a-b touch, sorted, and the root of each: the smallest of its component.

    Documents without an edge are their own roots; leaving them out keeps memory to the edges.
    """
    nodes = np.unique(np.concatenate([a, b]))
    parent = _union_find(len(nodes), np.searchsorted(nodes, a), np.searchsorted(nodes, b))
    return nodes, nodes[parent]  # nodes is sorted: the smallest position is the smallest document


def smallest_match(docs: np.ndarray, refs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each distinct document of the pairs docs-refs, sorted, with its smallest reference."""
    order = np.lexsort((refs, docs))
    docs, refs = docs[order], refs[order]
    first = np.ones(len(docs), dtype=bool)
    first[1:] = docs[1:] != docs[:-1]
    return docs[first], refs[first]


def reference_matches(rows: np.ndarray, reference_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Documents of `rows` sharing a bucket with `reference_rows`, sorted, each with the smallest such reference."""
    both = np.concatenate([reference_rows, rows])
    order, starts = _buckets(both)
    docs = both["doc"][order]
    is_input = (np.arange(len(both)) >= len(reference_rows))[order]
    no_reference = np.iinfo(np.int64).max
    best = _bucket_min(np.where(is_input, no_reference, docs), starts)
    hit = is_input & (best != no_reference)
    return smallest_match(docs[hit], best[hit])


def _union_find(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Root of each node, the smallest index of its component, for the undirected edges a-b.

    Union-find in rounds rather than edge by edge, so numpy does the work: hook the larger root of
    every edge that still crosses two trees under the smaller one, then compress paths by pointer
    jumping. Roots only ever decrease, so it terminates, usually within a few rounds.
    """
    parent = np.arange(n)
    while True:
        ra, rb = parent[a], parent[b]
        crossing = ra != rb
        if not crossing.any():
            return parent
        a, b, ra, rb = a[crossing], b[crossing], ra[crossing], rb[crossing]
        np.minimum.at(parent, np.maximum(ra, rb), np.minimum(ra, rb))
        while not np.array_equal(grand := parent[parent], parent):
            parent = grand


def lsh_clusters(sigs: np.ndarray, params: MinHashParams) -> np.ndarray:
    """Cluster id per document (int64): the smallest index among documents linked by shared buckets."""
    nodes, roots = components(*candidate_edges(band_rows(sigs, params)))
    clusters = np.arange(len(sigs), dtype=np.int64)
    clusters[nodes] = roots
    return clusters


def duplicates_to_remove(cluster_ids: np.ndarray) -> np.ndarray:
    """True for every document but the first of its cluster, so the earliest copy survives."""
    return np.asarray(cluster_ids) != np.arange(len(cluster_ids))


def match_reference(sigs: np.ndarray, reference_sigs: np.ndarray, params: MinHashParams) -> np.ndarray:
    """For each document, the smallest index of a reference document sharing a bucket, or -1.

    GPT-3 dropped web documents that duplicate another dataset (WebText); the reference side is
    only indexed, so its own duplicates do not matter.
    """
    docs, refs = reference_matches(band_rows(sigs, params), band_rows(reference_sigs, params))
    found = np.full(len(sigs), -1, dtype=np.int64)
    found[docs] = refs
    return found
