"""Reading the user's files: every failure is a one-line GptlabError naming the file and the problem."""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gptlab.errors import GptlabError


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


def visible_files(directory: Path) -> list[Path]:
    """The regular files under `directory`, sorted, minus hidden ones and those in hidden folders (.git)."""
    return sorted(
        p for p in directory.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(directory).parts)
    )


def expand_paths(specs: Iterable[str | os.PathLike], what: str) -> list[Path]:
    """Files named, the visible files under folders, and glob matches, in the order given.

    `what` names the files in error messages ("training", "input").
    """
    files: list[Path] = []
    for spec in map(str, specs):
        path = Path(spec)
        if any(ch in spec for ch in "*?["):
            found = [Path(m) for m in sorted(glob.glob(spec, recursive=True)) if Path(m).is_file()]
            if not found:
                raise GptlabError(f"no {what} files match {spec}")
        elif path.is_dir():
            found = visible_files(path)
            if not found:
                raise GptlabError(f"no {what} files in directory {path}")
        elif path.is_file():
            found = [path]
        else:
            raise GptlabError(f"{what} file not found: {path}")
        files += found
    return files
