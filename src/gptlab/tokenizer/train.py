"""Train a GPT-2 style byte-level BPE on text files with Hugging Face `tokenizers`.

The trained vocabulary is renumbered into GPT-2's layout (byte tokens, then merges in order, then
special tokens) because tiktoken, which does the encoding, needs ids equal to merge ranks.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import models, pre_tokenizers, trainers

from gptlab.errors import GptlabError
from gptlab.files import check_destination
from gptlab.sources import iter_documents
from gptlab.tokenizer.bpe import EOT, Tokenizer
from gptlab.tokenizer.byte_unicode import BYTE_ORDER, BYTE_TO_UNICODE

_BLOCK_CHARS = 1 << 20


def train_tokenizer(
    files: str | os.PathLike | Iterable[str | os.PathLike],
    vocab_size: int,
    special_tokens: Sequence[str] = (EOT,),
    progress: bool = True,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> Tokenizer:
    """Learn vocab_size - 256 - len(special_tokens) merges from the documents under `files`.

    They are read as `gptlab train` reads them (gptlab.sources: text, JSONL, Parquet, a data
    stage's kept shards). Input without any text is refused; a smaller corpus may run out of pairs
    to merge first, leaving a smaller vocabulary, which a warning reports. With `out`, the tokenizer
    is also saved in that directory, which is checked before any training: one that holds something is
    replaced only with `overwrite`.
    """
    files = [files] if isinstance(files, (str, os.PathLike)) else list(files)
    if not files:
        raise GptlabError("no training files given")
    if out is not None:
        check_destination(Path(out), overwrite)
    texts = (piece for document in iter_documents(files) for piece in _pieces(document.text))
    tokenizer = train_tokenizer_on_texts(texts, vocab_size, special_tokens, progress)
    if out is not None:
        tokenizer.save(out)
    return tokenizer


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
    texts = (text for text in texts if text)
    first = next(texts, None)
    if first is None:
        raise GptlabError("nothing to learn a tokenizer from: the input holds no text")
    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    show_progress = progress and sys.stderr.isatty()  # a bar nobody sees still leaves its newlines
    trainer = trainers.BpeTrainer(
        vocab_size=256 + n_merges,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=show_progress,
    )
    with _stdout_to_stderr() if show_progress else contextlib.nullcontext():
        hf.train_from_iterator(itertools.chain([first], texts), trainer)
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
    if len(vocab) < vocab_size:
        print(f"warning: the input is too small for vocab_size {vocab_size}: it ran out of pairs to merge at "
              f"{len(vocab)} tokens", file=sys.stderr)
    return Tokenizer(vocab, kept)


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """HF's trainer draws its progress bars on stderr but ends each with a newline on stdout (file
    descriptor 1, below Python): send that to stderr too, so stdout carries only our output."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _pieces(text: str) -> Iterator[str]:
    """The text in ~1 MiB pieces cut after a newline.

    Feeding whole pieces rather than HF's line-by-line reader keeps runs of newlines together, so
    BPE can learn them as GPT-2 did ("\\n\\n" is one token).
    """
    start = 0
    while start < len(text):
        end = text.rfind("\n", start, start + _BLOCK_CHARS) + 1 if len(text) - start > _BLOCK_CHARS else len(text)
        end = end if end > start else start + _BLOCK_CHARS
        yield text[start:end]
        start = end
