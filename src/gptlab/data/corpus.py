"""A training corpus: token streams for training and validation, documents joined by <|endoftext|>.

Several documents are split by document, so no document is seen in both training and validation;
a single document (tinyshakespeare) is split by characters, its last part held out, as nanoGPT does.
The split is made on text, before tokenising, so a tokenizer can be fitted to the training part only.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from gptlab.data.shards import is_shards_dir, read_index, read_shards, token_dtype
from gptlab.data.sources import Document, iter_documents
from gptlab.errors import GptlabError
from gptlab.tokenizer import CharTokenizer, Tokenizer

# Texts handed to encode_batch at once: enough for its threads, small enough to show progress.
_BATCH_CHARS = 1 << 20


@dataclass(frozen=True)
class Corpus:
    """Token streams (uint16, or uint32 for vocabularies of 65536 and more) and their sizes.

    `train_bytes` and `val_bytes` count the UTF-8 bytes the tokens stand for, special tokens
    excluded: the denominator of bits per byte.
    """

    train: np.ndarray
    val: np.ndarray
    n_documents: int
    train_bytes: int | None = None
    val_bytes: int | None = None


@dataclass(frozen=True)
class Split:
    """Documents for training and for validation; no text is in both."""

    train: list[Document]
    val: list[Document]
    n_documents: int
    """Documents read; a single one cut in two counts once."""


def split_documents(paths: Sequence[str | os.PathLike], val_fraction: float, seed: int) -> Split:
    """Read the documents under `paths` and hold out val_fraction of them for validation.

    With several documents a seeded shuffle picks ceil(n * val_fraction) of them (at least one,
    never all); each split keeps the documents' original order. A single document is cut by
    characters, its last val_fraction (rounded, leaving at least one character) held out.
    """
    _check_fraction(val_fraction)
    documents = list(iter_documents(paths))
    if not documents:
        raise GptlabError(f"no documents in {', '.join(map(str, paths))}")
    n = len(documents)
    if n == 1:
        (document,) = documents
        text = document.text
        cut = len(text) - min(round(len(text) * val_fraction), max(len(text) - 1, 0))
        held_out = [Document(document.id, text[cut:])] if cut < len(text) else []
        return Split([Document(document.id, text[:cut])], held_out, 1)
    # round() first, so that 30 * 0.1 = 3.0000000000000004 counts as 3 documents, not 4.
    n_val = min(max(math.ceil(round(n * val_fraction, 9)), 1), n - 1) if val_fraction else 0
    in_val = np.zeros(n, dtype=bool)
    in_val[np.random.default_rng(seed).permutation(n)[:n_val]] = True
    return Split(
        [doc for doc, held_out in zip(documents, in_val) if not held_out],
        [doc for doc, held_out in zip(documents, in_val) if held_out],
        n,
    )


def build_corpus(
    paths: Sequence[str | os.PathLike],
    tokenizer: Tokenizer | CharTokenizer,
    val_fraction: float,
    seed: int,
    progress: bool = True,
    split: Split | None = None,
) -> Corpus:
    """Tokenise the documents under `paths` as `split_documents` splits them, or read token shards.

    Pass `split` when the caller has already read and split `paths`. Shard directories are read
    as one stream whose last val_fraction is validation; their n_documents counts <|endoftext|>.
    """
    _check_fraction(val_fraction)
    shard_dirs = [path for path in paths if is_shards_dir(path)]
    if shard_dirs and len(shard_dirs) < len(paths):
        raise GptlabError("token shard directories cannot be mixed with text inputs")
    where = ", ".join(map(str, paths))
    n_documents: int | None = None
    if shard_dirs:
        train, val = _split_tokens(_read_shard_dirs(shard_dirs, tokenizer), val_fraction)
    else:
        split = split or split_documents(paths, val_fraction, seed)
        n_documents = split.n_documents
        train = _encode(split.train, tokenizer, "tokenizing train", progress)
        val = _encode(split.val, tokenizer, "tokenizing validation", progress)
    if not len(train) + len(val):
        raise GptlabError(f"no text to train on in {where}")
    train_counts = _token_counts(train, tokenizer.vocab_size)
    val_counts = _token_counts(val, tokenizer.vocab_size)
    if n_documents is None:
        eot = tokenizer.eot_id
        n_documents = 0 if eot is None else int(train_counts[eot] + val_counts[eot])
    token_bytes = tokenizer.token_bytes()
    return Corpus(
        train, val, n_documents, int(train_counts @ token_bytes), int(val_counts @ token_bytes)
    )


def _check_fraction(val_fraction: float) -> None:
    if not 0 <= val_fraction < 1:
        raise GptlabError(f"val_fraction must be at least 0 and below 1, got {val_fraction}")


def _encode(
    documents: Iterable[Document], tokenizer: Tokenizer | CharTokenizer, desc: str, progress: bool
) -> np.ndarray:
    """The documents' tokens as one stream, each followed by <|endoftext|> when the tokenizer has it."""
    dtype = token_dtype(tokenizer.vocab_size)
    end = [] if tokenizer.eot_id is None else [tokenizer.eot_id]
    encoded = []
    with tqdm(desc=desc, unit="B", unit_scale=True, disable=not progress) as bar:
        for batch in _batches(documents):
            texts = [document.text for document in batch]
            encoded += [np.array(ids + end, dtype) for ids in tokenizer.encode_batch(texts)]
            bar.set_postfix(documents=len(encoded), refresh=False)
            bar.update(sum(len(text.encode("utf-8")) for text in texts))
    return np.concatenate(encoded) if encoded else np.empty(0, dtype)


def _batches(documents: Iterable[Document]) -> Iterator[list[Document]]:
    batch: list[Document] = []
    chars = 0
    for document in documents:
        batch.append(document)
        chars += len(document.text)
        if chars >= _BATCH_CHARS:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def _read_shard_dirs(
    directories: list[str | os.PathLike], tokenizer: Tokenizer | CharTokenizer
) -> np.ndarray:
    """The directories' tokens as one stream, checked against the tokenizer."""
    streams = []
    for directory in directories:
        index = read_index(directory)
        if index["vocab_size"] > tokenizer.vocab_size:
            raise GptlabError(
                f"token shards in {directory} have vocab_size {index['vocab_size']}, more than"
                f" the tokenizer's {tokenizer.vocab_size}: they were made with another tokenizer"
            )
        if index["eot_id"] != tokenizer.eot_id:
            raise GptlabError(
                f"token shards in {directory} end documents with id {index['eot_id']}, but the"
                f" tokenizer's <|endoftext|> is {tokenizer.eot_id}: they were made with another"
                " tokenizer"
            )
        streams.append(read_shards(directory))
    return streams[0] if len(streams) == 1 else np.concatenate(streams)


def _split_tokens(tokens: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """The last val_fraction of the tokens (rounded, leaving at least one) is validation."""
    n = len(tokens)
    cut = n - min(round(n * val_fraction), max(n - 1, 0))
    return tokens[:cut], tokens[cut:]


def _token_counts(tokens: np.ndarray, vocab_size: int) -> np.ndarray:
    """How often each id occurs; an id outside the vocabulary means the data is corrupt."""
    counts = np.bincount(tokens, minlength=vocab_size)
    if len(counts) > vocab_size:
        raise GptlabError(
            f"the corpus holds token id {len(counts) - 1}, outside the tokenizer's vocabulary"
            f" (ids 0..{vocab_size - 1}): the token shards are corrupt"
        )
    return counts
