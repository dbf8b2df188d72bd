"""Training recipes shipped with gptlab: YAML files of settings, found by name (`gptlab train shakespeare-char`).

A recipe's relative `data` paths mean the current directory's, as in any config file.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from gptlab.errors import GptlabError


def names() -> list[str]:
    """The packaged recipes."""
    return sorted(p.name.removesuffix(".yaml") for p in resources.files(__name__).iterdir() if p.name.endswith(".yaml"))


def find(recipe: str | Path) -> Path:
    """The YAML file `recipe` names: a path to one, else a packaged recipe's name."""
    path = Path(recipe)
    if path.is_file() or path.suffix in (".yaml", ".yml") or len(path.parts) > 1:
        return path  # a file (reading it reports a missing one)
    packaged = resources.files(__name__) / f"{recipe}.yaml"
    if not packaged.is_file():
        raise GptlabError(f"no config file or packaged recipe {str(recipe)!r} (recipes: {', '.join(names())})")
    return Path(str(packaged))
