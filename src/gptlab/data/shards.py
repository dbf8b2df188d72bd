"""Pre-tokenised corpora: raw little-endian token files plus an index.json describing them.

Raw arrays need no parser and can be memory-mapped, so training on a corpus larger than memory
starts at once: `read_shards` gives a `TokenView`, which reads only the tokens indexed. Shards are
written as the tokens stream in, each atomically and the index last, so a directory with an index
never lists a half-written shard.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from gptlab import atomic
from gptlab.errors import GptlabError
from gptlab.files import read_json, read_json_object

INDEX_FILE = "index.json"
FORMAT = "gptlab-shards"
VERSION = 1
DEFAULT_SHARD_TOKENS = 100_000_000
_DTYPES = {"uint16": np.dtype("<u2"), "uint32": np.dtype("<u4")}


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest little-endian unsigned type this file format uses that holds every id."""
    return _DTYPES["uint16" if vocab_size < 65536 else "uint32"]


def is_shards_dir(path: str | os.PathLike) -> bool:
    """Whether `path` is a directory whose index.json declares this format."""
    index = Path(path) / INDEX_FILE
    try:
        data = read_json(index) if index.is_file() else None
    except GptlabError:
        return False
    return isinstance(data, dict) and data.get("format") == FORMAT


def write_shards(
    directory: str | os.PathLike,
    token_arrays: Iterable[np.ndarray | Sequence[int]],
    vocab_size: int,
    eot_id: int | None,
    shard_tokens: int = DEFAULT_SHARD_TOKENS,
    tokenizer: str | None = None,
) -> int:
    """Write the arrays back to back as shards of `shard_tokens` tokens; return the token count.

    The arrays are written as they come, so an iterator of any length never sits in memory. They
    are written as given: end each document with `eot_id` yourself. `tokenizer` is the tokenizer's
    directory relative to `directory`, recorded for readers.
    """
    root = Path(directory)
    if shard_tokens < 1:
        raise GptlabError(f"shard_tokens must be at least 1, got {shard_tokens}")
    dtype = token_dtype(vocab_size)
    (root / INDEX_FILE).unlink(missing_ok=True)  # until the new index exists, nothing is listed
    shards: list[dict[str, Any]] = []
    filling: atomic.Writer | None = None  # the shard being written, `filled` tokens so far
    filled = 0

    def finish(shard: atomic.Writer) -> None:
        nonlocal filling, filled
        shard.commit()
        shards.append({"file": shard.path.name, "tokens": filled})
        filling, filled = None, 0

    try:
        for array in token_arrays:
            tokens = _checked_tokens(array, vocab_size, dtype)
            while len(tokens):
                if filling is None:
                    filling = atomic.Writer(root / f"shard_{len(shards):05d}.bin")
                piece, tokens = tokens[: shard_tokens - filled], tokens[shard_tokens - filled :]
                filling.write(np.ascontiguousarray(piece).data)
                filled += len(piece)
                if filled == shard_tokens:
                    finish(filling)
        if filling is not None:
            finish(filling)
    finally:
        if filling is not None:  # an error or a kill cut the shard short
            filling.discard()
    index = {
        "format": FORMAT,
        "version": VERSION,
        "dtype": dtype.name,
        "vocab_size": vocab_size,
        "eot_id": eot_id,
        **({"tokenizer": tokenizer} if tokenizer is not None else {}),
        "shards": shards,
    }
    atomic.write_text(root / INDEX_FILE, json.dumps(index, indent=2) + "\n")
    return sum(shard["tokens"] for shard in shards)


def read_index(directory: str | os.PathLike) -> dict[str, Any]:
    """The validated index.json of a shards directory."""
    file = Path(directory) / INDEX_FILE
    if not file.is_file():
        raise GptlabError(f"{directory} is not a token shards directory: {INDEX_FILE} is missing")
    index = read_json_object(file)
    if index.get("format") != FORMAT:
        raise GptlabError(f'{file} is not a token shards index (its "format" is not "{FORMAT}")')
    if not isinstance(index.get("version"), int) or index["version"] > VERSION:
        raise GptlabError(
            f"{file} has format version {index.get('version')!r}; this gptlab reads {VERSION}"
        )
    if index.get("dtype") not in _DTYPES:
        raise GptlabError(
            f'{file}: "dtype" must be "uint16" or "uint32", got {index.get("dtype")!r}'
        )
    if not _is_count(index.get("vocab_size")) or index["vocab_size"] < 1:
        raise GptlabError(f'{file}: "vocab_size" must be a positive integer')
    eot_id = index.get("eot_id")
    if eot_id is not None and not (_is_count(eot_id) and eot_id < index["vocab_size"]):
        raise GptlabError(f'{file}: "eot_id" must be null or an id below "vocab_size"')
    shards = index.get("shards")
    if not isinstance(shards, list) or not all(
        isinstance(s, dict)
        and isinstance(s.get("file"), str)
        and Path(s["file"]).name == s["file"]
        and _is_count(s.get("tokens"))
        for s in shards
    ):
        raise GptlabError(
            f'{file}: "shards" must list {{"file": a name in this directory, "tokens": a count}}'
        )
    return index


def tokenizer_dir(directory: str | os.PathLike) -> Path | None:
    """The directory of the tokenizer the shards were made with, when their index names one."""
    index = read_index(directory)
    name = index.get("tokenizer")
    if name is None:
        return None
    path = Path(directory) / str(name)
    if not path.is_dir():
        raise GptlabError(f"{Path(directory) / INDEX_FILE} names tokenizer {name!r}, but {path} is missing")
    return path


class Part(NamedTuple):
    """Tokens start..stop of a raw token file."""

    file: Path
    dtype: np.dtype
    start: int
    stop: int


class TokenView:
    """The tokens of several raw token files as one read-only stream, never joined in memory.

    Slicing gives another view, so a train/validation split copies nothing. Indexing with integers
    or integer arrays reads just those tokens, mapping each file only for that read: memory follows
    the tokens read, not the corpus, and a window of tokens may span two files. A token id of
    `vocab_size` or more means the files are corrupt and is refused when read.
    """

    def __init__(self, parts: Sequence[Part], dtype: np.dtype, vocab_size: int) -> None:
        self.parts = [part for part in parts if part.stop > part.start]
        self.dtype = dtype
        self.vocab_size = vocab_size
        self._bounds = np.cumsum([0, *(part.stop - part.start for part in self.parts)], dtype=np.int64)

    def __len__(self) -> int:
        return int(self._bounds[-1])

    def __getitem__(self, key: slice | int | np.ndarray) -> TokenView | np.ndarray:
        if isinstance(key, slice):
            return self._slice(key)
        index = np.asarray(key)
        if index.dtype.kind not in "iu":
            raise IndexError(f"token views are indexed by slices or integers, not {index.dtype}")
        return self._gather(index.reshape(-1)).reshape(index.shape)[()]

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        """Every token of the view in memory: a document, a chunk to count, a small corpus."""
        if len(self.parts) == 1:
            tokens = _read(self.parts[0])
        else:
            tokens = np.concatenate([np.empty(0, self.dtype), *map(_read, self.parts)])
        tokens = self._checked(tokens.astype(self.dtype, copy=False))
        return tokens if dtype is None else tokens.astype(dtype, copy=False)

    def _slice(self, key: slice) -> TokenView:
        start, stop, step = key.indices(len(self))
        if step != 1:
            raise IndexError("token views are sliced with step 1 only")
        parts = []
        if start < stop:
            first, last = np.searchsorted(self._bounds, [start, stop], side="right") - 1
            for p in range(first, min(last + 1, len(self.parts))):
                part, offset = self.parts[p], int(self._bounds[p])
                lo, hi = max(start - offset, 0), min(stop - offset, part.stop - part.start)
                if lo < hi:
                    parts.append(part._replace(start=part.start + lo, stop=part.start + hi))
        return TokenView(parts, self.dtype, self.vocab_size)

    def _gather(self, index: np.ndarray) -> np.ndarray:
        index = np.where(index < 0, index + len(self), index).astype(np.int64)
        if index.size and not 0 <= index.min() <= index.max() < len(self):
            raise IndexError(f"token index out of range for a view of {len(self)} tokens")
        out = np.empty(len(index), self.dtype)
        which = np.searchsorted(self._bounds, index, side="right") - 1
        for p in np.unique(which).tolist():
            part, here = self.parts[p], which == p
            tokens = np.memmap(part.file, part.dtype, "r", part.start * part.dtype.itemsize, (part.stop - part.start,))
            out[here] = tokens[index[here] - self._bounds[p]]
        return self._checked(out)

    def _checked(self, tokens: np.ndarray) -> np.ndarray:
        if tokens.size and tokens.max() >= self.vocab_size:
            files = ", ".join(sorted({str(part.file.parent) for part in self.parts}))
            raise GptlabError(
                f"the token shards in {files} hold token id {tokens.max()}, outside the vocabulary"
                f" (ids 0..{self.vocab_size - 1}): they are corrupt"
            )
        return tokens


def _read(part: Part) -> np.ndarray:
    """The part's tokens, read into memory (a file read costs a fraction of mapping it)."""
    tokens = np.empty(part.stop - part.start, part.dtype)
    buffer, done = memoryview(tokens).cast("B"), 0
    with open(part.file, "rb", buffering=0) as f:
        f.seek(part.start * part.dtype.itemsize)
        while done < len(buffer):  # one read returns at most ~2 GB
            n = f.readinto(buffer[done:])
            if not n:
                raise GptlabError(f"{part.file} is truncated: it ends before token {part.stop}")
            done += n
    return tokens


Tokens = np.ndarray | TokenView
"""A token stream: in memory (tokenised text), or a lazy view of token shards."""


def read_shards(directory: str | os.PathLike) -> TokenView:
    """All tokens of the shards as one stream, read lazily; the shards' sizes are checked now."""
    root = Path(directory)
    index = read_index(root)
    dtype = _DTYPES[index["dtype"]]
    parts = []
    for shard in index["shards"]:
        file, n = root / shard["file"], shard["tokens"]
        if not file.is_file():
            raise GptlabError(f"{root / INDEX_FILE} lists {shard['file']}, which is missing")
        size = file.stat().st_size
        if size != n * dtype.itemsize:
            raise GptlabError(
                f"{file} is corrupt or truncated: it has {size} bytes, but {INDEX_FILE} says"
                f" {n} {index['dtype']} tokens ({n * dtype.itemsize} bytes)"
            )
        parts.append(Part(file, dtype, 0, n))
    return TokenView(parts, dtype, index["vocab_size"])


def _checked_tokens(
    array: np.ndarray | Sequence[int], vocab_size: int, dtype: np.dtype
) -> np.ndarray:
    """`array` in the file's dtype, after checking every id fits the vocabulary."""
    tokens = np.asarray(array)
    if tokens.ndim != 1 or (tokens.size and tokens.dtype.kind not in "iu"):
        raise GptlabError(
            f"token arrays must be 1-D integer arrays, got {tokens.dtype} {tokens.shape}"
        )
    if tokens.size and (tokens.min() < 0 or tokens.max() >= vocab_size):
        bad = tokens[(tokens < 0) | (tokens >= vocab_size)][0]
        raise GptlabError(f"token id {bad} is outside the vocabulary (ids are 0..{vocab_size - 1})")
    return tokens.astype(dtype, copy=False)


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0
