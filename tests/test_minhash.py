"""MinHash LSH deduplication: Jaccard estimates, determinism, clustering, reference matching."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from gptlab.data.curate import minhash
from gptlab.data.curate.minhash import (
    EMPTY,
    MinHashParams,
    band_rows,
    candidate_edges,
    components,
    duplicates_to_remove,
    lsh_clusters,
    match_reference,
    reference_matches,
    signatures,
    smallest_match,
)
from gptlab.errors import GptlabError

VOCAB = [f"w{i}" for i in range(20_000)]


def random_doc(rng: np.random.Generator, n_words: int = 200) -> list[str]:
    return [VOCAB[i] for i in rng.integers(len(VOCAB), size=n_words)]


def substituted(words: list[str], rate: float, rng: np.random.Generator) -> list[str]:
    return [VOCAB[rng.integers(len(VOCAB))] if rng.random() < rate else w for w in words]


def shingles(text: str, k: int = 5) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i : i + k]) for i in range(max(len(words) - k + 1, 1))}


def jaccard(a: str, b: str) -> float:
    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / len(sa | sb)


def near_duplicate_pairs(n: int, rates: list[float], seed: int = 0) -> list[str]:
    """Documents 2i and 2i+1 are a random document and a copy with rates[i % len(rates)] of words substituted."""
    rng = np.random.default_rng(seed)
    docs = []
    for i in range(n):
        words = random_doc(rng)
        docs += [" ".join(words), " ".join(substituted(words, rates[i % len(rates)], rng))]
    return docs


def test_signature_agreement_estimates_jaccard():
    docs = near_duplicate_pairs(12, [0.0, 0.01, 0.03, 0.05, 0.1, 0.2])
    sigs = signatures(docs, MinHashParams())
    estimates = (sigs[0::2] == sigs[1::2]).mean(axis=1)
    truth = np.array([jaccard(a, b) for a, b in zip(docs[0::2], docs[1::2])])
    assert truth.min() < 0.5 and truth.max() > 0.9
    assert np.abs(estimates - truth).mean() < 0.1
    assert np.abs(estimates - truth).max() < 0.2  # 112 hashes: standard error <= 0.05


def test_signatures_shape_and_normalisation():
    params = MinHashParams()
    sigs = signatures(
        [
            "Hello, World! The quick brown fox",
            "hello world the QUICK brown fox",
            "hello world \u2014 the quick brown fox",  # a non-ASCII separator takes the `re` path
            "Caf\u00e9 na\u00efve d\u00e9j\u00e0 vu encore",
            "CAF\u00c9 NA\u00cfVE D\u00c9J\u00c0 VU ENCORE",
        ],
        params,
    )
    assert sigs.shape == (5, params.num_perm) and sigs.dtype == np.uint32
    assert (sigs[0] == sigs[1]).all() and (sigs[0] == sigs[2]).all()
    assert (sigs[3] == sigs[4]).all()
    assert not (sigs[0] == sigs[3]).any()
    assert signatures([], params).shape == (0, params.num_perm)


def test_signatures_are_identical_in_a_fresh_process():
    docs = near_duplicate_pairs(3, [0.05])
    digest = hashlib.sha256(signatures(docs, MinHashParams(seed=7)).tobytes()).hexdigest()
    script = (
        "import hashlib, sys\n"
        "from gptlab.data.curate.minhash import MinHashParams, signatures\n"
        "docs = sys.stdin.read().split('\\0')\n"
        "print(hashlib.sha256(signatures(docs, MinHashParams(seed=7)).tobytes()).hexdigest())\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", script], input="\0".join(docs), capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"},  # str hashes differ from this process's
    )
    assert child.stdout.strip() == digest


def test_signatures_do_not_depend_on_batching(monkeypatch):
    rng = np.random.default_rng(4)
    docs = ["", "short one"] + [" ".join(random_doc(rng, int(n))) for n in rng.integers(1, 400, size=20)]
    params = MinHashParams()
    whole = signatures(docs, params)
    one_by_one = np.concatenate([signatures([doc], params) for doc in docs])
    monkeypatch.setattr(minhash, "DOCS_PER_CHUNK", 3)
    monkeypatch.setattr(minhash, "SHINGLES_PER_BLOCK", 97)  # documents straddle blocks
    assert (whole == one_by_one).all()
    assert (whole == signatures(docs, params)).all()


def test_seed_changes_the_hash_functions():
    docs = ["to be or not to be that is the question"]
    assert not (signatures(docs, MinHashParams(seed=0)) == signatures(docs, MinHashParams(seed=1))).all()


def test_near_duplicates_cluster_and_distinct_documents_do_not():
    docs = near_duplicate_pairs(30, [0.0, 0.01, 0.02])
    params = MinHashParams()
    clusters = lsh_clusters(signatures(docs, params), params)
    assert clusters.dtype == np.int64
    assert (clusters[0::2] == np.arange(0, len(docs), 2)).all()  # the source is its cluster's smallest index
    assert (clusters[1::2] == clusters[0::2]).all()
    assert len(np.unique(clusters)) == 30


def test_clusters_are_transitive_and_keep_the_first():
    rng = np.random.default_rng(1)
    words = random_doc(rng, 400)
    # a ~ b and b ~ c share half their words; a and c share nothing, yet all end up in one cluster.
    a, b, c = words[:200], words[100:300], words[200:400]
    unrelated = random_doc(rng)
    docs = [" ".join(x) for x in (unrelated, a, b, c, a)]
    params = MinHashParams(bands=20, rows=1)  # J ~ 0.32 shares one of 20 minima with probability 0.9996
    clusters = lsh_clusters(signatures(docs, params), params)
    assert clusters.tolist() == [0, 1, 1, 1, 1]
    assert duplicates_to_remove(clusters).tolist() == [False, False, True, True, True]


def test_duplicates_to_remove_keeps_the_smallest_index():
    assert duplicates_to_remove(np.array([0, 0, 2, 0, 2, 5])).tolist() == [False, True, False, True, True, False]
    assert duplicates_to_remove(np.array([], dtype=np.int64)).tolist() == []


def test_match_reference_finds_copies():
    rng = np.random.default_rng(2)
    reference = [" ".join(random_doc(rng)) for _ in range(20)]
    reference.append(reference[3])  # a duplicate inside the reference: the smaller index is reported
    queries = [
        " ".join(substituted(reference[5].split(), 0.01, rng)),
        " ".join(random_doc(rng)),
        reference[3],
        "",
        " ".join(substituted(reference[17].split(), 0.02, rng)),
    ]
    params = MinHashParams()
    found = match_reference(signatures(queries, params), signatures(reference, params), params)
    assert found.dtype == np.int64
    assert found.tolist() == [5, -1, 3, -1, 17]
    empty_reference = np.empty((0, params.num_perm), dtype=np.uint32)
    assert match_reference(signatures(queries, params), empty_reference, params).tolist() == [-1] * 5


def test_empty_and_short_documents():
    params = MinHashParams()
    docs = ["", "  ...  !!", "to be", "To be!", "to be or", "", "some other words entirely here"]
    sigs = signatures(docs, params)
    assert (sigs[0] == EMPTY).all() and (sigs[1] == EMPTY).all() and (sigs[5] == EMPTY).all()
    assert (sigs[2] == sigs[3]).all()  # fewer words than a shingle: one shingle of all of them
    assert not (sigs[2] == sigs[4]).all()
    clusters = lsh_clusters(sigs, params)
    assert clusters.tolist() == [0, 1, 2, 2, 4, 5, 6]  # empty documents match nothing, not even each other
    assert match_reference(sigs, sigs, params).tolist() == [-1, -1, 2, 2, 4, -1, 6]


@pytest.mark.parametrize(
    "kwargs",
    [{"bands": 0}, {"rows": -1}, {"shingle_size": 0}, {"seed": -1}, {"bands": 2.5}, {"rows": True}],
)
def test_invalid_params(kwargs):
    with pytest.raises(GptlabError):
        MinHashParams(**kwargs)


def test_signatures_must_match_params():
    sigs = signatures(["a b c d e f"], MinHashParams(bands=4, rows=2))
    with pytest.raises(GptlabError):
        lsh_clusters(sigs, MinHashParams())
    with pytest.raises(GptlabError):
        match_reference(sigs, sigs, MinHashParams())


def test_gpt3_style_ten_hashes():
    params = MinHashParams(bands=10, rows=1)
    docs = near_duplicate_pairs(5, [0.1])
    assert params.num_perm == 10
    clusters = lsh_clusters(signatures(docs, params), params)
    assert (clusters[1::2] == clusters[0::2]).all()  # J ~ 0.4 still almost surely shares one of 10 minima


def test_candidate_rate_follows_the_s_curve():
    params = MinHashParams(bands=4, rows=3)
    docs = near_duplicate_pairs(300, [0.02, 0.05, 0.1, 0.15], seed=3)
    clusters = lsh_clusters(signatures(docs, params), params)
    found = clusters[0::2] == clusters[1::2]
    J = np.array([jaccard(a, b) for a, b in zip(docs[0::2], docs[1::2])])
    expected = 1 - (1 - J**params.rows) ** params.bands
    assert 0.2 < expected.mean() < 0.8
    assert abs(found.mean() - expected.mean()) < 0.06  # binomial standard error ~0.025
    for low, high in [(0.0, 0.5), (0.5, 1.0)]:
        sel = (J >= low) & (J < high)
        assert abs(found[sel].mean() - expected[sel].mean()) < 0.12


def test_partitioned_buckets_give_the_in_memory_result():
    """Rows split by key into partitions and shuffled, linked per partition and joined by one
    union-find, give exactly lsh_clusters and match_reference: how `gptlab data dedup` scales out."""
    rng = np.random.default_rng(5)
    params = MinHashParams(bands=8, rows=2)
    docs = near_duplicate_pairs(60, [0.0, 0.05, 0.2, 0.4], seed=5) + ["", "!!"]
    chain = random_doc(rng, 300)
    for _ in range(8):  # each link shares most shingles with the last; the ends share few
        docs.append(" ".join(chain))
        chain = substituted(chain, 0.1, rng)
    docs = [docs[i] for i in rng.permutation(len(docs))]
    reference = [" ".join(substituted(docs[i].split(), 0.02, rng)) for i in range(0, len(docs), 4)]
    reference += reference[::2] + ["", " ".join(random_doc(rng))]  # several references match: the smallest wins
    sigs, ref_sigs = signatures(docs, params), signatures(reference, params)
    clusters, matches = lsh_clusters(sigs, params), match_reference(sigs, ref_sigs, params)
    assert (clusters != np.arange(len(docs))).sum() > 40 and (matches >= 0).sum() > 20
    rows, ref_rows = band_rows(sigs, params), band_rows(ref_sigs, params)
    for partitions in (1, 3, 16):
        edges, found = [], []
        for part in range(partitions):
            mine = rows[rows["key"] % np.uint64(partitions) == part]
            mine = mine[rng.permutation(len(mine))]
            edges.append(components(*candidate_edges(mine)))
            found.append(reference_matches(mine, ref_rows[ref_rows["key"] % np.uint64(partitions) == part]))
        nodes, roots = components(*(np.concatenate(column) for column in zip(*edges)))
        joined = np.arange(len(docs))
        joined[nodes] = roots
        assert (joined == clusters).all()
        matched, refs = smallest_match(*(np.concatenate(column) for column in zip(*found)))
        assert (matched == np.flatnonzero(matches >= 0)).all() and (refs == matches[matched]).all()


def test_band_rows_number_documents_from_first_and_skip_empty_ones():
    params = MinHashParams(bands=3, rows=2)
    rows = band_rows(signatures(["one two three", "", "four five"], params), params, first=10)
    assert rows["doc"].tolist() == [10, 12] * 3 and rows["band"].tolist() == [0, 0, 1, 1, 2, 2]
    assert band_rows(np.empty((0, params.num_perm), np.uint32), params).shape == (0,)
