"""Training documents from the user's files: plain text files, directories, globs and JSONL.

Bad input deep inside a large corpus (a binary file in a directory, a malformed JSONL line) is
skipped with one counted warning rather than ending a long run; a file the user named directly
must be readable, since they meant it.
"""

from __future__ import annotations

import glob
import gzip
import json
import os
import sys
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from gptlab.errors import GptlabError
from gptlab.files import read_text, visible_files

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class Document:
    id: str
    text: str


def iter_documents(paths: Sequence[str | os.PathLike]) -> Iterator[Document]:
    """Documents from `paths` in a fixed order: paths as given, files under each sorted.

    A plain file is one document with its path as id; a .jsonl or .jsonl.gz file holds one
    document per line, an object with a string "text" and an optional "id" (default path:line).
    Directories are walked recursively, skipping hidden files and directories; a glob pattern
    expands like a directory's files. Walked files that are not UTF-8 are skipped and counted.
    """
    seen: set[Path] = set()
    for given in paths:
        files, named = _expand(given)
        skipped = []
        for file in files:
            key = file.resolve()
            if key in seen:
                continue
            seen.add(key)
            if file.name.endswith(JSONL_SUFFIXES):
                yield from _jsonl_documents(file)
                continue
            text = read_text(file) if named else _utf8_or_none(file)
            if text is None:
                skipped.append(file)
            else:
                yield Document(str(file), text)
        if skipped:
            _warn(
                f"skipped {len(skipped)} files under {given} that are not UTF-8 text,"
                f" e.g. {skipped[0]}"
            )


def _expand(given: str | os.PathLike) -> tuple[list[Path], bool]:
    """The files `given` stands for, and whether the user named that one file directly."""
    path = Path(given)
    if path.is_file():
        return [path], True
    if path.is_dir():
        return visible_files(path), False
    if _GLOB_CHARS.intersection(str(given)):
        matches = [Path(m) for m in sorted(glob.glob(str(given), recursive=True))]
        files = [f for m in matches for f in (visible_files(m) if m.is_dir() else [m]) if f.is_file()]
        if not files:
            raise GptlabError(f"no files match {given}")
        return files, False
    raise GptlabError(f"no such file or directory: {given}")


def _utf8_or_none(path: Path) -> str | None:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise GptlabError(f"cannot read {path}: {e.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _jsonl_documents(path: Path) -> Iterator[Document]:
    """One document per well-formed line; malformed lines are counted and reported once."""
    malformed = 0
    first_problem = ""
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                document, problem = _parse_line(line, f"{path}:{number}")
                if document is not None:
                    yield document
                    continue
                malformed += 1
                first_problem = first_problem or f"line {number}: {problem}"
    except (OSError, EOFError, zlib.error) as e:
        raise GptlabError(f"cannot read {path}: {e}") from None
    if malformed:
        _warn(f"{path}: skipped {malformed} malformed lines (first at {first_problem})")


def _parse_line(line: bytes, default_id: str) -> tuple[Document | None, str]:
    """The line's document, or None and why it is not one."""
    try:
        record = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None, "not valid JSON"
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        return None, 'not an object with a string "text"'
    doc_id = record.get("id")
    return Document(default_id if doc_id is None else str(doc_id), record["text"]), ""


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)
