"""Tokenizers for small experiments: raw bytes (BPE without merges) and characters.

With one token per byte or per character, a tiny model trains in minutes on tinyshakespeare and
its loss is easy to compare across runs, as in nanoGPT's shakespeare_char.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from gptlab import atomic
from gptlab.errors import GptlabError
from gptlab.files import read_json_object
from gptlab.tokenizer.bpe import EOT, SpecialTokens, Tokenizer, id_list
from gptlab.tokenizer.byte_unicode import BYTE_ORDER, BYTE_TO_UNICODE

CHARS_FILE = "chars.json"


def byte_tokenizer() -> Tokenizer:
    """GPT-2's 256 byte tokens (ids in GPT-2's byte order) and <|endoftext|> = 256, no merges."""
    vocab = {BYTE_TO_UNICODE[b]: i for i, b in enumerate(BYTE_ORDER)}
    return Tokenizer({**vocab, EOT: len(vocab)}, [])


class CharTokenizer(SpecialTokens):
    """One id per character: the characters in sorted order, then the special tokens.

    Like the BPE Tokenizer, encode() treats special-token strings in text as plain characters, so
    text can never produce a special id.
    """

    def __init__(self, chars: Iterable[str], special_tokens: Iterable[str] = (EOT,)) -> None:
        self._chars = list(chars)
        bad = next((c for c in self._chars if not isinstance(c, str) or len(c) != 1), None)
        if bad is not None:
            raise GptlabError(f"char-level vocabulary entries must be characters, got {bad!r}")
        self._ids = {c: i for i, c in enumerate(self._chars)}
        if len(self._ids) != len(self._chars):
            raise GptlabError("char-level vocabulary lists a character twice")
        names = list(dict.fromkeys(special_tokens))
        if not all(isinstance(name, str) and name for name in names):
            raise GptlabError(f"special token names must be non-empty strings, got {names!r}")
        self._special = {name: len(self._chars) + n for n, name in enumerate(names)}
        self._strings = self._chars + names  # what each id decodes to

    @classmethod
    def from_texts(
        cls, texts: Iterable[str], special_tokens: Iterable[str] = (EOT,)
    ) -> CharTokenizer:
        """The vocabulary of every character that occurs in `texts`."""
        chars: set[str] = set()
        for text in texts:
            chars.update(text)
        if not chars:
            raise GptlabError("cannot build a char-level tokenizer from empty text")
        return cls(sorted(chars), special_tokens)

    @classmethod
    def from_dir(cls, path: str | os.PathLike) -> CharTokenizer:
        """Load the chars.json that save() wrote."""
        file = Path(path) / CHARS_FILE
        data = read_json_object(file)
        chars, specials = data.get("chars"), data.get("special_tokens")
        is_char = data.get("type") == "char"
        if not (is_char and isinstance(chars, list) and isinstance(specials, dict)):
            raise GptlabError(
                f'{file} is not a char-level tokenizer: expected "type": "char", a "chars" list'
                ' and a "special_tokens" object'
            )
        try:
            tokenizer = cls(chars, specials)
        except GptlabError as e:
            raise GptlabError(f"{file}: {e}") from None
        if tokenizer.special_tokens != specials:
            raise GptlabError(
                f"{file}: special token ids must follow the {len(chars)} characters in order,"
                f" got {specials}"
            )
        return tokenizer

    def save(self, path: str | os.PathLike) -> None:
        data = {"type": "char", "chars": self._chars, "special_tokens": self._special}
        atomic.write_text(Path(path) / CHARS_FILE, json.dumps(data, ensure_ascii=False))

    def encode(self, text: str) -> list[int]:
        """One id per character; GptlabError names the first character outside the vocabulary."""
        try:
            return [self._ids[c] for c in text]
        except KeyError as e:
            c = e.args[0]
            raise GptlabError(
                f"character {c!r} (U+{ord(c):04X}) is not in this char-level tokenizer's vocabulary"
            ) from None

    def encode_batch(self, texts: Iterable[str]) -> list[list[int]]:
        return [self.encode(text) for text in texts]

    def decode(self, ids: Iterable[int]) -> str:
        """Text for `ids` (special tokens as their names). Accepts lists, tensors and arrays."""
        ids = id_list(ids)
        bad = next((i for i in ids if not 0 <= i < len(self._strings)), None)
        if bad is not None:
            raise GptlabError(
                f"token id {bad} is not in the vocabulary (ids are 0..{len(self._strings) - 1})"
            )
        return "".join([self._strings[i] for i in ids])

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        return self.decode(ids).encode("utf-8")

    def token_bytes(self) -> np.ndarray:
        """UTF-8 length of each character's id, 0 for special tokens: sums give bits per byte."""
        lengths = [len(c.encode("utf-8")) for c in self._chars] + [0] * len(self._special)
        return np.array(lengths, dtype=np.int64)

    @property
    def vocab_size(self) -> int:
        return len(self._strings)

    def __repr__(self) -> str:
        return f"CharTokenizer(chars={len(self._chars)}, special_tokens={self._special})"


def load_tokenizer(path: str | os.PathLike) -> Tokenizer | CharTokenizer:
    """The tokenizer saved in directory `path`: chars.json, else BPE vocab + merges files."""
    if (Path(path) / CHARS_FILE).is_file():
        return CharTokenizer.from_dir(path)
    return Tokenizer.from_dir(path)
