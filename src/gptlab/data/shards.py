"""Pre-tokenised corpora: raw little-endian token files plus an index.json describing them.

Raw arrays need no parser and can be memory-mapped, so training on a corpus larger than memory
starts at once. Each shard is written atomically and the index last, so a directory with an
index never lists a half-written shard.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

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

    The arrays are written as given: end each document with `eot_id` yourself. `tokenizer` is
    the tokenizer's directory relative to `directory`, recorded for readers.
    """
    root = Path(directory)
    if shard_tokens < 1:
        raise GptlabError(f"shard_tokens must be at least 1, got {shard_tokens}")
    dtype = token_dtype(vocab_size)
    (root / INDEX_FILE).unlink(missing_ok=True)  # until the new index exists, nothing is listed
    shards: list[dict[str, Any]] = []

    def write(tokens: np.ndarray) -> None:
        name = f"shard_{len(shards):05d}.bin"
        atomic.write_bytes(root / name, tokens.tobytes())
        shards.append({"file": name, "tokens": len(tokens)})

    pending: list[np.ndarray] = []
    n_pending = 0
    for array in token_arrays:
        tokens = _checked_tokens(array, vocab_size, dtype)
        pending.append(tokens)
        n_pending += len(tokens)
        if n_pending >= shard_tokens:
            stream = np.concatenate(pending)
            full = n_pending - n_pending % shard_tokens
            for start in range(0, full, shard_tokens):
                write(stream[start : start + shard_tokens])
            pending, n_pending = [stream[full:]], n_pending - full
    if n_pending:
        write(np.concatenate(pending))
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


def read_shards(directory: str | os.PathLike) -> np.ndarray:
    """All tokens: memory-mapped when there is one shard, else concatenated in memory."""
    root = Path(directory)
    index = read_index(root)
    dtype = _DTYPES[index["dtype"]]
    arrays = []
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
        if n:
            arrays.append(np.memmap(file, dtype=dtype, mode="r", shape=(n,)))
    if len(arrays) == 1:
        return arrays[0]
    return np.concatenate(arrays) if arrays else np.empty(0, dtype)


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
