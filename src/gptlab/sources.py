"""Documents from the user's files: the one reader behind `gptlab train`, tokenizer training and every
`gptlab data` stage.

What a path stands for: a file is itself; a folder, its visible files, recursively (hidden files
and folders such as .git skipped); a glob, its matches; a folder a data stage wrote, only the
shards of documents it kept, never its removed/ and malformed/ listings or stats.json. Each file
is read once. A file's name gives its format: .jsonl, .jsonl.gz or .json.gz hold one JSON object
per line with a string "text" and an optional "id" (a string or an integer; FILE:LINE by default),
other fields kept as metadata; .parquet holds rows likewise; any other file is one plain-text
document whose id is its path.

Bad input, one policy for training and for the stages: a bad record is skipped, counted and
reported, never fatal and never silent. Skipped: a JSONL line or Parquet row that is not a UTF-8
JSON object with a string "text"; the rest of a gzip file cut short or corrupt (the documents
before the break are kept); a Parquet file that cannot be read; a file that cannot be opened; a
file that looks binary (a NUL byte, or more than 1% of it not UTF-8). A text file with a few
invalid UTF-8 bytes is kept, each bad sequence replaced by U+FFFD, and reported. Fatal, as one
line: a named path that does not exist (or a glob that matches nothing, an empty folder), the
output of a stage that did not finish, and input of which nothing at all is readable. Training
warns in one line with the counts and the first example; the stages list every problem in their
output's malformed/.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gptlab.errors import GptlabError
from gptlab.files import expand_paths

JSONL = (".jsonl", ".jsonl.gz", ".json.gz")
PARQUET = (".parquet",)
SHARD_FORMATS = ("jsonl", "jsonl.gz", "parquet")
"""The formats a stage writes its shards in."""
STAGE_WORK = ".work"
STAGE_SETTINGS = "settings.json"
STAGE_STATS = "stats.json"
"""A stage's output folder holds .work/settings.json from its start and stats.json once it finished."""
BINARY_SHARE = 0.01
"""A file with more invalid UTF-8 than this share of its bytes is taken for binary, not for text."""


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)
    """The record's fields besides `id` and `text`, which the stages carry to their output; left out
    of equality and hashing, so a Document stays hashable."""


@dataclass(frozen=True)
class Problem:
    """Input that was skipped (a record, a file, the rest of a file) or, when `kept`, repaired."""

    file: str
    line: int | None
    reason: str
    kept: bool = False

    def __str__(self) -> str:
        return f"{self.file}{'' if self.line is None else f' line {self.line}'}: {self.reason}"


Report = Callable[[Problem], None]


class Tally:
    """A read's problems, counted, with the first of each kind as an example."""

    def __init__(self) -> None:
        self.skipped = self.kept = 0
        self.first_skipped: Problem | None = None
        self.first_kept: Problem | None = None

    def __call__(self, problem: Problem) -> None:
        if problem.kept:
            self.kept += 1
            self.first_kept = self.first_kept or problem
        else:
            self.skipped += 1
            self.first_skipped = self.first_skipped or problem

    def warning(self) -> str | None:
        """One line saying what was skipped and repaired, or None when nothing was."""
        parts = []
        if self.skipped:
            parts.append(f"skipped {self.skipped} bad record(s) or file(s), first: {self.first_skipped}")
        if self.kept:
            parts.append(f"kept {self.kept} file(s) with invalid UTF-8 replaced by U+FFFD, first: {self.first_kept}")
        return "; ".join(parts) or None


def iter_documents(paths: Sequence[str | os.PathLike]) -> Iterator[Document]:
    """The documents under `paths` in a fixed order: paths as given, the files under each sorted.

    Problems follow the module's policy and are summed up in one warning on stderr at the end.
    """
    tally = Tally()
    found = 0
    for path in expand(paths):
        for document in read_file(path, tally):
            found += 1
            yield document
    if tally.skipped and not found:
        raise GptlabError(
            f"nothing readable in the input: {tally.skipped} bad record(s) or file(s), first: {tally.first_skipped}"
        )
    if warning := tally.warning():
        print(f"warning: {warning}", file=sys.stderr)


def expand(specs: Sequence[str | os.PathLike]) -> list[Path]:
    """The files `specs` stand for, in order, each once: a stage's output folder is its kept shards."""
    return expand_paths(specs, "input", stage_shards)


def stage_shards(folder: Path) -> list[Path] | None:
    """The kept shards of a stage's output folder; None for a folder that no stage wrote."""
    if not (folder / STAGE_WORK / STAGE_SETTINGS).is_file():
        return None
    if not (folder / STAGE_STATS).is_file():
        raise GptlabError(f"{folder} is the output of a data stage that did not finish; rerun that stage first")
    suffixes = tuple(f".{fmt}" for fmt in SHARD_FORMATS)
    shards = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(suffixes))
    if not shards:
        raise GptlabError(f"{folder} is a data stage's output without documents (token shards are for gptlab train)")
    return shards


def read_file(path: str | os.PathLike, report: Report) -> Iterator[Document]:
    """The documents of one file; its problems go to `report`, as the module's policy says."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith(JSONL):
        yield from _jsonl(path, report)
    elif name.endswith(PARQUET):
        yield from _parquet(path, report)
    else:
        yield from _plain(path, report)


def _plain(path: Path, report: Report) -> Iterator[Document]:
    try:
        data = path.read_bytes()
    except OSError as e:
        report(Problem(str(path), None, f"cannot be read ({_one_line(e)})"))
        return
    if b"\0" in data:
        report(Problem(str(path), None, "looks binary (it holds NUL bytes), not like text"))
        return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        text = data.decode("utf-8", errors="replace")
        bad = text.count("\ufffd") - data.count("\ufffd".encode())
        if bad > BINARY_SHARE * len(data):
            reason = f"looks binary ({bad} invalid UTF-8 sequences in {len(data)} bytes), not like text"
            report(Problem(str(path), None, reason))
            return
        reason = f"{bad} invalid UTF-8 sequence(s) replaced by U+FFFD, the first at byte {e.start}"
        report(Problem(str(path), None, reason, kept=True))
    yield Document(str(path), text)


def _jsonl(path: Path, report: Report) -> Iterator[Document]:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    number = 0
    try:
        with opener(path, "rb") as f:
            for number, line in enumerate(f, start=1):
                if line.strip():
                    yield from _kept(path, number, _parse_line(line, f"{path}:{number}"), report)
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        report(_cut_short(path, "line", number, e))


def _kept(path: Path, number: int, document: Document | str, report: Report) -> Iterator[Document]:
    """The record's document; or, when `document` says why there is none, nothing but a report."""
    if isinstance(document, str):
        report(Problem(str(path), number, document))
    else:
        yield document


def _cut_short(path: Path, unit: str, done: int, error: Exception) -> Problem:
    """A file that failed after `done` lines or rows (or at once): what came before it is kept."""
    if not done:
        return Problem(str(path), None, f"cannot be read ({_one_line(error)})")
    return Problem(str(path), None, f"cut short or corrupt after {unit} {done} ({_one_line(error)}); the documents before it are kept")


def _parse_line(line: bytes, default_id: str) -> Document | str:
    """The line's document, or why it is not one."""
    try:
        record = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError as e:
        return f"not valid UTF-8 (byte {e.start})"
    except json.JSONDecodeError as e:
        return f"not valid JSON ({e.msg.removesuffix(' at')} at column {e.colno})"  # "Unterminated string starting at"
    return _document(record, default_id)


def _parquet(path: Path, report: Report) -> Iterator[Document]:
    import pyarrow.parquet as pq  # ~0.3 s: only when there is Parquet to read

    row = 0
    try:
        table = pq.ParquetFile(path)
        if "text" not in table.schema_arrow.names:
            report(Problem(str(path), None, 'no "text" column'))
            return
        for batch in table.iter_batches():
            for record in batch.to_pylist():
                row += 1
                yield from _kept(path, row, _document(record, f"{path}:{row}"), report)
    except Exception as e:  # pyarrow raises several types for a file that is not (wholly) Parquet
        report(_cut_short(path, "row", row, e))


def _document(record: Any, default_id: str) -> Document | str:
    """The record as a Document, or why it cannot be one."""
    if not isinstance(record, dict):
        return "not a JSON object"
    text = record.get("text")
    if not isinstance(text, str):
        return 'no string "text" field'
    doc_id = record.get("id")
    if doc_id is None:
        doc_id = default_id
    elif isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)):
        return '"id" is neither a string nor an integer'
    return Document(str(doc_id), text, {k: v for k, v in record.items() if k not in ("text", "id")})


def _one_line(error: BaseException) -> str:
    """The error's message whole, on one line (pyarrow's can span several)."""
    message = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    return " ".join(message.split()) or type(error).__name__
