"""GPT-3's benchmark decontamination (Appendix C): cut 13-gram collisions out of training documents.

Text is compared after normalisation: lowercase, punctuation removed. A word is a run of letters
and digits, with apostrophes inside it dropped ("Don't" and "dont" are one word); any other
punctuation separates words, so "end.Start" and "end. Start" match too. Each word keeps the
character span it came from, so collisions can be cut out of the original, unnormalised text.

N-grams are 64-bit hashes, not tuples of strings, so the n-grams of every benchmark fit in memory
and a set of them pickles cheaply to workers. Each word is hashed with BLAKE2 (stable across
processes, unlike `hash`) and an n-gram's hash is the polynomial sum of its words' hashes
modulo 2^64, computed for a whole document at once with numpy. Two different n-grams share a hash
with probability about 2^-64.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable
from collections.abc import Set as AbstractSet

import numpy as np

from gptlab.errors import GptlabError

GPT3_N = 13

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_APOSTROPHES = str.maketrans("", "", "'’")
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # odd, so multiplying by it loses no bits mod 2^64


def benchmark_ngrams(texts: Iterable[str], n: int = GPT3_N) -> frozenset[int]:
    """Hashes of every word n-gram in the benchmark texts (questions, passages, answers).

    A text shorter than n words adds nothing: a shorter n-gram would match everyday phrases all
    over the web, and with one fixed n each document position needs only one set lookup.
    """
    _check_n(n)
    ngrams: set[int] = set()
    for text in texts:
        ngrams.update(_ngram_hashes(text, n)[0].tolist())
    return frozenset(ngrams)


def find_collisions(
    text: str, ngrams: AbstractSet[int], n: int = GPT3_N, ignore: AbstractSet[int] = frozenset()
) -> list[tuple[int, int]]:
    """(start, end) character spans in `text` of each n-gram it shares with the benchmarks.

    Spans are in document order and overlap when consecutive n-grams collide. N-grams in
    `ignore` (such as those too common across the corpus to mean contamination) are skipped.
    """
    _check_n(n)
    hashes, words = _ngram_hashes(text, n)
    return [
        (words[i].start(), words[i + n - 1].end())
        for i, h in enumerate(hashes.tolist())
        if h in ngrams and h not in ignore
    ]


def colliding_ngrams(text: str, ngrams: AbstractSet[int], n: int = GPT3_N) -> set[int]:
    """The benchmark n-grams `text` contains, for counting in how many documents each occurs.

    GPT-3 ignored 13-grams found in more than 10 training documents (common phrases, not
    leaked test data); that needs corpus-wide counts, which the caller gathers from this
    across shards and then passes to `decontaminate` as `ignore`.
    """
    _check_n(n)
    return set(_ngram_hashes(text, n)[0].tolist()) & ngrams


def decontaminate(
    text: str,
    ngrams: AbstractSet[int],
    n: int = GPT3_N,
    margin: int = 200,
    min_piece: int = 200,
    max_pieces: int = 10,
    ignore: AbstractSet[int] = frozenset(),
) -> tuple[list[str] | None, dict[str, int | str]]:
    """Cut each colliding n-gram and `margin` characters either side out of `text`.

    What is left falls into pieces; pieces shorter than `min_piece` characters are dropped, and
    a document split into more than `max_pieces` pieces (counted before dropping) is dropped
    whole, as heavily contaminated. Returns the kept pieces, or None when nothing is kept, and a
    report: reason ("clean", "split", "too_many_pieces" or "nothing_left"), collisions, pieces,
    pieces_kept, pieces_dropped and chars_removed (characters of `text` not in a kept piece).
    A document without collisions comes back unchanged as one piece.
    """
    if margin < 0 or min_piece < 0 or max_pieces < 1:
        raise GptlabError(
            f"decontaminate needs margin >= 0, min_piece >= 0 and max_pieces >= 1, "
            f"got margin={margin}, min_piece={min_piece}, max_pieces={max_pieces}"
        )
    spans = find_collisions(text, ngrams, n, ignore)
    if not spans:
        return [text], _report("clean", 0, [text], [text], text)

    removed: list[list[int]] = []
    for start, end in spans:  # starts ascend, so each cut either extends the last one or follows it
        low, high = max(0, start - margin), min(len(text), end + margin)
        if removed and low <= removed[-1][1]:
            removed[-1][1] = max(removed[-1][1], high)
        else:
            removed.append([low, high])
    bounds = [0, *(x for cut in removed for x in cut), len(text)]
    pieces = [text[a:b] for a, b in zip(bounds[::2], bounds[1::2]) if b > a]

    if len(pieces) > max_pieces:
        return None, _report("too_many_pieces", len(spans), pieces, [], text)
    kept = [piece for piece in pieces if len(piece) >= min_piece]
    if not kept:
        return None, _report("nothing_left", len(spans), pieces, [], text)
    return kept, _report("split", len(spans), pieces, kept, text)


def _report(reason: str, collisions: int, pieces: list[str], kept: list[str], text: str) -> dict[str, int | str]:
    return {
        "reason": reason,
        "collisions": collisions,
        "pieces": len(pieces),
        "pieces_kept": len(kept),
        "pieces_dropped": len(pieces) - len(kept),
        "chars_removed": len(text) - sum(map(len, kept)),
    }


def _check_n(n: int) -> None:
    if n < 1:
        raise GptlabError(f"n-gram length must be at least 1, got {n}")


def _ngram_hashes(text: str, n: int) -> tuple[np.ndarray, list[re.Match[str]]]:
    """Hash of each word n-gram of `text` in order, and the words as matches (for their offsets)."""
    words = list(_WORD.finditer(text))
    count = len(words) - n + 1
    if count < 1:
        return np.zeros(0, dtype=np.uint64), words
    word_hashes = np.fromiter(
        (_word_hash(w.group().lower().translate(_APOSTROPHES)) for w in words), dtype=np.uint64, count=len(words)
    )
    hashes = np.zeros(count, dtype=np.uint64)
    for i in range(n):
        hashes = hashes * _MULTIPLIER + word_hashes[i : i + count]  # wraps modulo 2^64
    return hashes, words


@functools.lru_cache(maxsize=1 << 20)  # word frequencies are Zipfian: most lookups hit
def _word_hash(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")
