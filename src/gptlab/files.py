"""Reading the user's files: every failure is a one-line GptlabError naming the file and the problem."""

from __future__ import annotations

import json
import os
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
