"""Which tokenizer a run trains with: the one its settings name, fitted to its data, or the one its token
shards were made with. Training, the scale sweep and the benchmarks resolve it the same way."""

from __future__ import annotations

import math
from pathlib import Path

from gptlab.data import Document, Split, iter_documents, split_documents
from gptlab.data.shards import is_shards_dir, tokenizer_dir
from gptlab.errors import GptlabError
from gptlab.tokenizer import CharTokenizer, byte_tokenizer, load_tokenizer, train_tokenizer_on_texts
from gptlab.train.config import TrainConfig

def resolve_tokenizer(config: TrainConfig, out: Path, progress: bool, split: Split | None = None):
    """The tokenizer `config.tokenizer` names; `bpe:N` is fitted to the training split alone.

    Fitting it to validation text too would let it learn that text's words as single tokens and
    flatter validation loss (by ~0.2 bits per byte on tinyshakespeare at 2k tokens). Token shards
    bring their own tokenizer, which is the default for them.
    """
    spec = config.tokenizer
    shard_dirs = [path for path in config.data if is_shards_dir(path)]
    if shard_dirs:
        return _shards_tokenizer(shard_dirs, spec)
    if spec is None or spec == "byte":
        return byte_tokenizer()
    if spec == "char":  # every character of the data, so validation text never meets an unknown one
        documents = split.train + split.val if split else iter_documents(config.data)
        return CharTokenizer.from_texts(doc.text for doc in documents)
    if spec.startswith("bpe:"):
        try:
            size = int(spec[4:])
        except ValueError:
            raise GptlabError(f"tokenizer {spec!r}: expected bpe:N with N the vocabulary size") from None
        split = split or split_documents(config.data, config.val_fraction, config.seed)
        documents = _spread_sample(split.train, config.tokenizer_sample_mb)
        tokenizer = train_tokenizer_on_texts((doc.text for doc in documents), size, progress=progress)
        tokenizer.save(out / "tokenizer")
        return tokenizer
    return _tokenizer_dir(spec)


def _tokenizer_dir(spec: str):
    if not Path(spec).is_dir():
        raise GptlabError(f"tokenizer must be byte, char, bpe:N or a tokenizer directory; {spec!r} is none of these")
    return load_tokenizer(spec)


def _shards_tokenizer(directories: list[str], spec: str | None):
    """The tokenizer the shards' index names; one given in `spec` must be that same tokenizer.

    Shards that name none (written by `write_shards` without one) take `spec`, else bytes; the
    corpus reader still checks their ids against it.
    """
    named = [(directory, tokenizer_dir(directory)) for directory in directories]
    made_with = [(directory, load_tokenizer(path)) for directory, path in named if path is not None]
    for directory, other in made_with[1:]:
        if not _same_tokenizer(made_with[0][1], other):
            raise GptlabError(f"token shards in {made_with[0][0]} and {directory} were made with different tokenizers")
    given = None
    if spec is not None:
        if spec == "char" or spec.startswith("bpe:"):
            raise GptlabError(f"tokenizer {spec!r} cannot be fitted to token shards; they bring their own tokenizer")
        given = byte_tokenizer() if spec == "byte" else _tokenizer_dir(spec)
    if not made_with:
        return given or byte_tokenizer()
    directory, theirs = made_with[0]
    if given is not None and not _same_tokenizer(given, theirs):
        raise GptlabError(
            f"tokenizer {spec} is not the tokenizer the token shards in {directory} were made with;"
            " leave the tokenizer unset to use theirs"
        )
    return theirs


def _same_tokenizer(a, b) -> bool:
    """Same ids for the same byte strings, special tokens included."""
    return (
        a.vocab_size == b.vocab_size
        and a.eot_id == b.eot_id
        and all(a.decode_bytes([i]) == b.decode_bytes([i]) for i in range(a.vocab_size))
    )


def _spread_sample(documents: list[Document], megabytes: float | None) -> list[Document]:
    """Every k-th document, k chosen so they come to about `megabytes` (all of them when None)."""
    if megabytes is None:
        return documents
    total = sum(len(doc.text) for doc in documents)  # characters: close enough to bytes for a budget
    stride = max(1, math.ceil(total / (megabytes * 1e6)))
    return documents[::stride]
