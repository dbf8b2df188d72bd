"""Train a GPT-2 style byte-level BPE on text files with Hugging Face `tokenizers`.

The trained vocabulary is renumbered into GPT-2's layout (byte tokens, then merges in order, then
special tokens) because tiktoken, which does the encoding, needs ids equal to merge ranks.
"""

from __future__ import annotations

import codecs
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import models, pre_tokenizers, trainers

from gptlab.errors import GptlabError
from gptlab.files import expand_paths
from gptlab.tokenizer.bpe import EOT, Tokenizer
from gptlab.tokenizer.byte_unicode import BYTE_ORDER, BYTE_TO_UNICODE

_BLOCK_BYTES = 1 << 20


def train_tokenizer(
    files: str | os.PathLike | Iterable[str | os.PathLike],
    vocab_size: int,
    special_tokens: Sequence[str] = (EOT,),
    progress: bool = True,
) -> Tokenizer:
    """Learn vocab_size - 256 - len(special_tokens) merges from UTF-8 text files or directories.

    A smaller corpus may run out of pairs to merge first, leaving a smaller vocabulary.
    """
    paths = _collect_files(files)
    texts = (text for path in paths for text in _read_blocks(path))
    return train_tokenizer_on_texts(texts, vocab_size, special_tokens, progress)


def train_tokenizer_on_texts(
    texts: Iterable[str],
    vocab_size: int,
    special_tokens: Sequence[str] = (EOT,),
    progress: bool = True,
) -> Tokenizer:
    """`train_tokenizer` on texts in memory, e.g. only the training split of a corpus."""
    specials = list(dict.fromkeys(special_tokens))
    n_merges = vocab_size - 256 - len(specials)
    if n_merges < 1:
        raise GptlabError(
            f"vocab_size {vocab_size} is too small: it must exceed 256 byte tokens"
            f" + {len(specials)} special tokens"
        )
    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = trainers.BpeTrainer(
        vocab_size=256 + n_merges,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=progress,
    )
    hf.train_from_iterator(texts, trainer)
    # Newer `tokenizers` store merges as [a, b] pairs, older ones as "a b" strings.
    merges = [
        m if isinstance(m, list) else m.split(" ")
        for m in json.loads(hf.to_str())["model"]["merges"]
    ]

    vocab = {BYTE_TO_UNICODE[b]: i for i, b in enumerate(BYTE_ORDER)}
    kept = []
    for a, b in merges:
        # A second merge making an existing token would need a second id, which tiktoken (one id
        # per byte string) cannot have; it only ever saves a merge for a rare split, so drop it.
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
            kept.append((a, b))
    for name in specials:
        if not isinstance(name, str) or not name or name in vocab:
            raise GptlabError(
                f"special token {name!r} must be a non-empty string unlike any learned token"
            )
        vocab[name] = len(vocab)
    return Tokenizer(vocab, kept)


def _collect_files(files: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    if isinstance(files, (str, os.PathLike)):
        files = [files]
    paths = expand_paths(files, "training")
    if not paths:
        raise GptlabError("no training files given")
    return paths


def _read_blocks(path: Path) -> Iterator[str]:
    """The file's text in ~1 MiB pieces cut after a newline.

    Feeding whole pieces rather than HF's line-by-line file reader keeps runs of newlines
    together, so BPE can learn them as GPT-2 did ("\\n\\n" is one token).
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    pending = ""
    offset = 0
    with open(path, "rb") as f:
        while True:
            block = f.read(_BLOCK_BYTES)
            held = len(decoder.getstate()[0])  # bytes of a character split by the last block
            try:
                text = pending + decoder.decode(block, final=not block)
            except UnicodeDecodeError as e:
                raise GptlabError(
                    f"{path} is not valid UTF-8 (byte {offset - held + e.start})"
                ) from None
            if not block:
                break
            offset += len(block)
            cut = text.rfind("\n") + 1 or len(text)
            yield text[:cut]
            pending = text[cut:]
    if text:
        yield text
