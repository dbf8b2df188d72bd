"""A training corpus: token streams for training and validation, documents joined by <|endoftext|>.

Several documents are split by document, so no document is seen in both training and validation;
a single document (tinyshakespeare) is split by characters, its last part held out, as nanoGPT does.
The split is made on text, before tokenising, so a tokenizer can be fitted to the training part only.
Token shards are never read whole: their streams are `TokenView`s, which read the windows asked for.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from tqdm import tqdm

from gptlab.data.shards import Tokens, TokenView, is_shards_dir, read_index, read_shards, token_dtype
from gptlab.errors import GptlabError
from gptlab.sources import Document, iter_documents
from gptlab.tokenizer import CharTokenizer, Tokenizer

# Texts handed to encode_batch at once: enough for its threads, small enough to show progress.
_BATCH_CHARS = 1 << 20
_COUNT_CHUNK = 1 << 22
"""Tokens counted at once: a few tens of MB however large the corpus."""


@dataclass(frozen=True)
class Corpus:
    """Token streams (uint16, or uint32 for vocabularies of 65536 and more) and what they hold.

    The counts are made on first use, by a pass over the tokens, which training never needs: a
    corpus of token shards is then ready at once, whatever its size.
    """

    train: Tokens
    val: Tokens
    token_bytes: np.ndarray
    """UTF-8 bytes each token id stands for (0 for special tokens)."""
    eot_id: int | None
    documents_read: int | None = None
    """Documents read from text (a single one cut in two counts once); None for token shards."""

    @cached_property
    def n_documents(self) -> int:
        """Documents read; for token shards, the <|endoftext|> tokens they hold."""
        if self.documents_read is not None:
            return self.documents_read
        return 0 if self.eot_id is None else int(sum(counts[self.eot_id] for counts in self._counts))

    @property
    def train_bytes(self) -> int:
        """UTF-8 bytes the training tokens stand for, special tokens excluded."""
        return int(self._counts[0] @ self.token_bytes)

    @property
    def val_bytes(self) -> int:
        """UTF-8 bytes the validation tokens stand for: the denominator of bits per byte."""
        return int(self._counts[1] @ self.token_bytes)

    @cached_property
    def _counts(self) -> tuple[np.ndarray, np.ndarray]:
        return _token_counts(self.train, len(self.token_bytes)), _token_counts(self.val, len(self.token_bytes))


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
    lazily as one stream whose last val_fraction is validation; their n_documents counts
    <|endoftext|>.
    """
    _check_fraction(val_fraction)
    shard_dirs = [path for path in paths if is_shards_dir(path)]
    if shard_dirs and len(shard_dirs) < len(paths):
        raise GptlabError("token shard directories cannot be mixed with text inputs")
    documents_read: int | None = None
    if shard_dirs:
        train, val = _split_tokens(_read_shard_dirs(shard_dirs, tokenizer), val_fraction)
    else:
        split = split or split_documents(paths, val_fraction, seed)
        documents_read = split.n_documents
        train = _encode(split.train, tokenizer, "tokenizing train", progress)
        val = _encode(split.val, tokenizer, "tokenizing validation", progress)
    if not len(train) + len(val):
        raise GptlabError(f"no text to train on in {', '.join(map(str, paths))}")
    return Corpus(train, val, tokenizer.token_bytes(), tokenizer.eot_id, documents_read)


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


def _read_shard_dirs(directories: list[str | os.PathLike], tokenizer: Tokenizer | CharTokenizer) -> TokenView:
    """The directories' tokens as one lazy stream, checked against the tokenizer."""
    views = []
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
        views.append(read_shards(directory))
    parts = [part for view in views for part in view.parts]
    return TokenView(parts, np.result_type(*(view.dtype for view in views)), tokenizer.vocab_size)


def _split_tokens(tokens: TokenView, val_fraction: float) -> tuple[TokenView, TokenView]:
    """The last val_fraction of the tokens (rounded, leaving at least one) is validation; nothing is copied."""
    n = len(tokens)
    cut = n - min(round(n * val_fraction), max(n - 1, 0))
    return tokens[:cut], tokens[cut:]


def _token_counts(tokens: Tokens, vocab_size: int) -> np.ndarray:
    """How often each id occurs, counted a chunk at a time (a `TokenView` refuses ids outside the
    vocabulary as it reads them)."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for start in range(0, len(tokens), _COUNT_CHUNK):
        counts += np.bincount(np.asarray(tokens[start : start + _COUNT_CHUNK]), minlength=vocab_size)
    return counts
