"""Reading the user's files, and checking where outputs go: every failure is a one-line GptlabError naming the
file and the problem."""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from gptlab.errors import GptlabError

StandsFor = Callable[[Path], list[Path] | None]
"""The files a folder stands for, or None for its visible files."""


def check_not_under_a_file(directory: Path, output: Path) -> None:
    """Refuse, before the work that writes `output`, a `directory` for it that is, or lies under, a file: the
    nearest of `directory` and its parents that exists must be a directory."""
    existing = next(p for p in (directory, *directory.parents) if p.exists())
    if not existing.is_dir():
        raise GptlabError(f"{existing} is a file, not a directory, so the output {output} cannot be written there")


def check_destination(dst: Path, overwrite: bool) -> None:
    """Refuse to write into a directory that holds something, unless asked to replace it."""
    if dst.exists() and not overwrite and (not dst.is_dir() or any(dst.iterdir())):
        raise GptlabError(f"{dst} already exists and is not empty; set overwrite to replace it")


def read_text(path: str | os.PathLike) -> str:
    path = Path(path)
    if not path.exists():
        raise GptlabError(f"no such file: {path}")
    if not path.is_file():
        raise GptlabError(f"not a file: {path}")
    try:
        return path.read_bytes().decode("utf-8")
    except OSError as e:
        raise GptlabError(f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise GptlabError(f"{path} is not valid UTF-8 (byte {e.start}: {e.reason})") from None


def read_json(path: str | os.PathLike) -> Any:
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise GptlabError(f"{path} is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None


def read_json_object(path: Path) -> dict[str, Any]:
    data = read_json(path)
    if not isinstance(data, dict):
        raise GptlabError(f"{path} must hold a JSON object")
    return data


def read_config_dir(directory: Path, config_file: str, kind: str) -> dict[str, Any]:
    """The config object of a checkpoint directory of the given kind ("gptlab", "Hugging Face")."""
    if not directory.exists():
        raise GptlabError(f"no {kind} checkpoint at {directory}")
    if not directory.is_dir():
        raise GptlabError(f"{directory} is not a {kind} checkpoint directory")
    if not (directory / config_file).is_file():
        raise GptlabError(f"{directory} is not a {kind} checkpoint: {config_file} is missing")
    return read_json_object(directory / config_file)


def visible_files(directory: Path, stands_for: StandsFor | None = None) -> list[Path]:
    """The regular files under `directory`, sorted, minus hidden ones and those in hidden folders (.git);
    a folder for which `stands_for` gives a list of files contributes those instead of its own."""
    chosen = stands_for(directory) if stands_for else None
    if chosen is not None:
        return chosen
    files: list[Path] = []
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir() and not entry.is_symlink():  # as rglob: no symlinked folders, so no cycles
            files += visible_files(entry, stands_for)
        elif entry.is_file():
            files.append(entry)
    return files


def expand_paths(
    specs: Iterable[str | os.PathLike], what: str, stands_for: StandsFor | None = None
) -> list[Path]:
    """Files named, the visible files under folders, and glob matches (folders among them walked),
    in the order given, each file once; `stands_for` as for `visible_files`.

    `what` names the files in error messages ("training", "input").
    """
    files: list[Path] = []
    seen: set[Path] = set()
    for spec in map(str, specs):
        path = Path(spec)
        if any(ch in spec for ch in "*?["):
            matches = [Path(m) for m in sorted(glob.glob(spec, recursive=True))]
            found = [f for m in matches for f in (visible_files(m, stands_for) if m.is_dir() else [m]) if f.is_file()]
            if not found:
                raise GptlabError(f"no {what} files match {spec}")
        elif path.is_dir():
            found = visible_files(path, stands_for)
            if not found:
                raise GptlabError(f"no {what} files in directory {path}")
        elif path.is_file():
            found = [path]
        else:
            raise GptlabError(f"{what} file not found: {path}")
        for file in found:
            if file.resolve() not in seen:
                seen.add(file.resolve())
                files.append(file)
    return files
