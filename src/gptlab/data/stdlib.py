"""The embedded default corpus: this Python's standard library, on every machine that has Python.

`gptlab quickstart` trains on its source files and `gptlab data example` writes a demo corpus
from its docstrings, so neither needs a download.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

from gptlab.errors import GptlabError


def stdlib_sources() -> list[Path]:
    """The standard library's .py files that are UTF-8 (a few of its tests deliberately are not)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for path in sorted(root.rglob("*.py")):
        if "site-packages" in path.relative_to(root).parts:
            continue
        try:
            path.read_bytes().decode("utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        files.append(path)
    if not files:
        raise GptlabError(f"no Python source files found under {root}")
    return files
