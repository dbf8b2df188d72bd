"""GPT-2 byte-level BPE tokenizer: reads Hugging Face or OpenAI files, encodes with tiktoken.

tiktoken merges the adjacent pair whose concatenated bytes has the lowest rank, and emits ranks as
ids. That equals GPT-2's BPE when ids are the vocab ids and merged tokens' ids grow in merge order,
which is what loading checks. Special tokens live outside the BPE, so text never produces them.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import tiktoken

from gptlab import atomic
from gptlab.errors import GptlabError
from gptlab.files import read_json, read_text
from gptlab.tokenizer.byte_unicode import BYTE_TO_UNICODE, token_to_bytes

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
EOT = "<|endoftext|>"
GPT1_SPECIAL_TOKENS = ("<|start|>", "<|delimiter|>", "<|extract|>")

# (vocab file, merges file) pairs that from_dir understands, in order of preference.
_LAYOUTS = (("vocab.json", "merges.txt"), ("encoder.json", "vocab.bpe"))
# Below this average text length a batch is encoded in one thread (measured on tinyshakespeare).
_MIN_CHARS_PER_THREADED_TEXT = 512
# Private in tiktoken, yet the only way to encode invalid UTF-8 with it: not taken for granted.
_TIKTOKEN_ENCODES_BYTES = hasattr(tiktoken.Encoding, "_encode_bytes")
# Lone surrogates made by decoding invalid UTF-8 with errors="surrogateescape": one per bad byte.
_ESCAPED_BYTES = re.compile("[\udc80-\udcff]+")


class SpecialTokens:
    """Special-token lookups over `_special` (name -> id), shared by the tokenizer classes."""

    _special: dict[str, int]

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._special)

    @property
    def eot_id(self) -> int | None:
        """Id of <|endoftext|>, the document separator, if this vocabulary has one."""
        return self._special.get(EOT)

    def special_id(self, name: str) -> int:
        try:
            return self._special[name]
        except KeyError:
            known = ", ".join(self._special) or "none"
            raise GptlabError(
                f"tokenizer has no special token {name!r} (it has: {known})"
            ) from None


def id_list(ids: Iterable[int]) -> list[int]:
    """`ids` as a list (itself if it is one) from a tuple, tensor, array or any iterable."""
    if isinstance(ids, list):
        return ids
    return ids.tolist() if hasattr(ids, "tolist") else list(ids)


class Tokenizer(SpecialTokens):
    """Byte-level BPE with GPT-2's ids: 256 byte tokens, merge results, then special tokens."""

    def __init__(
        self,
        vocab: Mapping[str, int],
        merges: Iterable[tuple[str, str]],
        *,
        vocab_file: str = "vocab",
        merges_file: str = "merges",
    ) -> None:
        """Check `vocab` (byte-level token string -> id) against `merges` and build the encoder.

        `vocab_file` and `merges_file` only name the sources in error messages.
        """
        self._vocab = dict(vocab)
        self._merges = [(a, b) for a, b in merges]
        ranks, self._byte_ids = _mergeable_ranks(self._vocab, self._merges, vocab_file, merges_file)
        self._special = {t: i for t, i in self._vocab.items() if t not in ranks}
        self._vocab_size = max(self._vocab.values()) + 1
        self._enc = tiktoken.Encoding(
            "gptlab",
            pat_str=GPT2_PATTERN,
            mergeable_ranks={token_to_bytes(t): i for t, i in ranks.items()},
            special_tokens=self._special,
        )

    @classmethod
    def from_dir(cls, path: str | os.PathLike) -> Tokenizer:
        """Load vocab.json + merges.txt (Hugging Face) or encoder.json + vocab.bpe (OpenAI)."""
        root = Path(path)
        if not root.is_dir():
            raise GptlabError(f"tokenizer directory not found: {root}")
        for vocab_name, merges_name in _LAYOUTS:
            vocab_file, merges_file = root / vocab_name, root / merges_name
            if vocab_file.exists() or merges_file.exists():
                break
        else:
            raise GptlabError(
                f"no tokenizer files in {root}: expected vocab.json + merges.txt (Hugging Face)"
                " or encoder.json + vocab.bpe (OpenAI)"
            )
        for missing, present in ((vocab_file, merges_file), (merges_file, vocab_file)):
            if not missing.is_file():
                raise GptlabError(f"{missing} is missing (it belongs with {present.name})")
        return cls(
            _read_vocab(vocab_file),
            _read_merges(merges_file),
            vocab_file=str(vocab_file),
            merges_file=str(merges_file),
        )

    def save(self, path: str | os.PathLike) -> None:
        """Write vocab.json + merges.txt, the layout Hugging Face's GPT-2 tokenizers read."""
        root = Path(path)
        vocab = dict(sorted(self._vocab.items(), key=lambda item: item[1]))
        merges = "".join(f"{a} {b}\n" for a, b in self._merges)
        atomic.write_text(root / "vocab.json", json.dumps(vocab, ensure_ascii=False))
        atomic.write_text(root / "merges.txt", "#version: 0.2\n" + merges)

    def encode(self, text: str) -> list[int]:
        """Ids for `text`; special-token strings in it are encoded as plain text."""
        return self._enc.encode_ordinary(text)

    def encode_batch(self, texts: Iterable[str], num_threads: int | None = None) -> list[list[int]]:
        """encode() over many texts, in threads: tiktoken releases the GIL while it encodes.

        Each thread takes contiguous slices of the batch rather than one text at a time as
        tiktoken's own batch does, whose per-text task overhead is slower than a plain loop on
        short texts. Texts too short to outweigh re-taking the GIL are encoded in a loop.
        """
        texts = list(texts)
        encode = self._enc.encode_ordinary
        threads = min(num_threads or os.cpu_count() or 1, len(texts))
        if threads < 2 or sum(map(len, texts)) < _MIN_CHARS_PER_THREADED_TEXT * len(texts):
            return [encode(text) for text in texts]
        step = -(-len(texts) // (4 * threads))  # a few slices per thread even out their lengths
        slices = [texts[i : i + step] for i in range(0, len(texts), step)]
        with ThreadPoolExecutor(threads) as pool:
            return [
                ids for part in pool.map(lambda s: [encode(t) for t in s], slices) for ids in part
            ]

    def encode_bytes(self, data: bytes) -> list[int]:
        """Ids for arbitrary bytes, invalid UTF-8 included: decode_bytes() gives `data` back."""
        data = bytes(data)
        if _TIKTOKEN_ENCODES_BYTES:
            return self._enc._encode_bytes(data)
        return self._encode_bytes_fallback(data)

    def decode(self, ids: Iterable[int]) -> str:
        """Text for `ids`; bytes that are not valid UTF-8 (a split character) become U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The exact bytes `ids` stand for. Accepts lists, tuples, tensors and arrays."""
        ids = id_list(ids)
        try:
            return self._enc.decode_bytes(ids)
        except (KeyError, OverflowError):
            bad = next(i for i in ids if not self._is_id(i))
            raise GptlabError(
                f"token id {bad} is not in the vocabulary (ids are 0..{self._vocab_size - 1})"
            ) from None

    @property
    def vocab_size(self) -> int:
        """Largest id + 1: the number of embedding rows a model needs."""
        return self._vocab_size

    @property
    def vocab(self) -> dict[str, int]:
        """Byte-level token string -> id, special tokens included: what exporters write out."""
        return dict(self._vocab)

    @property
    def merges(self) -> list[tuple[str, str]]:
        """The merges in rank order."""
        return list(self._merges)

    def token_bytes(self) -> np.ndarray:
        """Bytes each id stands for (0 for special tokens and unused ids): sums give bits per byte."""
        lengths = np.zeros(self._vocab_size, dtype=np.int64)
        for token, i in self._vocab.items():
            if token not in self._special:
                lengths[i] = len(token)  # a byte-level token string has one character per byte
        return lengths

    def with_special_tokens(self, names: Iterable[str]) -> Tokenizer:
        """A copy with the missing `names` added as special tokens, given new ids at the end."""
        vocab = dict(self._vocab)
        next_id = self._vocab_size
        for name in dict.fromkeys(names):
            if name in self._special:
                continue
            if not isinstance(name, str) or not name:
                raise GptlabError(f"special token names must be non-empty strings, got {name!r}")
            if name in vocab:
                raise GptlabError(f"cannot make {name!r} a special token: it is an ordinary token")
            vocab[name] = next_id
            next_id += 1
        return Tokenizer(vocab, self._merges)

    def __repr__(self) -> str:
        return (
            f"Tokenizer(vocab_size={self._vocab_size}, merges={len(self._merges)}, "
            f"special_tokens={self._special})"
        )

    def _is_id(self, i: int) -> bool:
        try:
            self._enc.decode_single_token_bytes(i)
        except (KeyError, OverflowError):
            return False
        return True

    def _encode_bytes_fallback(self, data: bytes) -> list[int]:
        """Encode valid UTF-8 runs as text and each invalid byte as its own byte token."""
        text = data.decode("utf-8", errors="surrogateescape")
        ids: list[int] = []
        start = 0
        for run in _ESCAPED_BYTES.finditer(text):
            ids += self.encode(text[start : run.start()])
            ids += [self._byte_ids[ord(c) - 0xDC00] for c in run.group()]
            start = run.end()
        return ids + self.encode(text[start:])


def _mergeable_ranks(
    vocab: dict[str, int], merges: list[tuple[str, str]], vocab_file: str, merges_file: str
) -> tuple[dict[str, int], list[int]]:
    """Byte tokens and merge results with their ids, and the id of each byte value.

    Raises GptlabError unless tiktoken would reproduce the BPE: every byte present, merges built
    only from earlier tokens, and merge results' ids strictly increasing in merge order.
    """
    seen: dict[int, str] = {}
    for token, i in vocab.items():
        if not isinstance(token, str) or not token or type(i) is not int or i < 0:
            raise GptlabError(
                f"{vocab_file}: entry {token!r}: {i!r} should map a token string to an id >= 0"
            )
        if i in seen:
            raise GptlabError(f"{vocab_file}: id {i} is given to both {seen[i]!r} and {token!r}")
        seen[i] = token
    missing = [b for b, u in BYTE_TO_UNICODE.items() if u not in vocab]
    if missing:
        listed = ", ".join(f"0x{b:02x} ({BYTE_TO_UNICODE[b]!r})" for b in missing[:5])
        raise GptlabError(
            f"{vocab_file}: {len(missing)} of the 256 byte tokens are missing, e.g. {listed};"
            " this is not a byte-level BPE vocabulary"
        )
    ranks = {u: vocab[u] for u in BYTE_TO_UNICODE.values()}
    last_id = -1
    for n, (a, b) in enumerate(merges, start=1):
        for part in (a, b):
            if part not in ranks:
                raise GptlabError(
                    f"{merges_file}: merge {n} ({a} {b}) uses unknown token {part!r}: it is"
                    f" neither a byte token nor made by an earlier merge in {vocab_file}"
                )
        result = a + b
        if result not in vocab:
            raise GptlabError(
                f"{merges_file}: merge {n} ({a} {b}) makes {result!r}, not in {vocab_file}"
            )
        if vocab[result] <= last_id:
            raise GptlabError(
                f"{merges_file}: merge {n} ({a} {b}) makes {result!r} with id {vocab[result]},"
                f" but the merge before it made id {last_id}: ids in {vocab_file} must grow"
                " in merge order"
            )
        last_id = ranks[result] = vocab[result]
    byte_ids = [vocab[BYTE_TO_UNICODE[b]] for b in range(256)]
    return ranks, byte_ids


def _read_vocab(path: Path) -> dict[str, int]:
    vocab = read_json(path)
    if not isinstance(vocab, dict) or not vocab:
        raise GptlabError(f"{path} must be a JSON object mapping token strings to ids")
    return vocab


def _read_merges(path: Path) -> list[tuple[str, str]]:
    lines = read_text(path).split("\n")
    first = 1 if lines[0].startswith("#version") else 0
    while lines and not lines[-1].strip():
        lines.pop()
    merges = []
    for n, line in enumerate(lines[first:], start=first + 1):
        parts = line.rstrip("\r").split(" ")
        if len(parts) != 2 or not all(parts):
            raise GptlabError(
                f"{path} line {n}: expected two tokens separated by one space, got {line!r}"
            )
        merges.append((parts[0], parts[1]))
    return merges
