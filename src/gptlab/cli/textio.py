"""Reading user files with one-line errors instead of tracebacks."""

from __future__ import annotations

from pathlib import Path

from gptlab.errors import GptlabError


def read_text(path: Path) -> str:
    if not path.exists():
        raise GptlabError(f"no such file: {path}")
    if not path.is_file():
        raise GptlabError(f"not a file: {path}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise GptlabError(f"{path} is not valid UTF-8 (byte {e.start}: {e.reason})") from None
