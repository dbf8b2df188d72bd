"""A fingerprint of the data a run trains on, saved in its checkpoints, so that a resume on data whose
content changed is refused instead of training on silently.

Text inputs (text, JSONL, Parquet, folders of them) are hashed whole: a run reads them whole into
memory anyway, and hashing goes ~100x faster than tokenising. Token shards are never read whole (a
run reads the windows it samples), so a shard counts by its size and a hash of blocks spread over
it, and the index by its whole text: rebuilt shards differ there, though an edit of a few tokens
between the blocks would go unnoticed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from gptlab.data.shards import INDEX_FILE, is_shards_dir, read_index
from gptlab.errors import GptlabError
from gptlab.sources import expand

_BLOCKS, _BLOCK_BYTES = 16, 1 << 16
"""A shard is hashed by this many blocks of this size, evenly spread (whole when it is no larger)."""


def fingerprint(paths: Sequence[str]) -> dict[str, str]:
    """{file: digest} for every file the data `paths` stand for, as the readers expand them."""
    shard_dirs = [path for path in paths if is_shards_dir(path)]
    prints = {str(file): _digest(file) for file in expand([path for path in paths if path not in shard_dirs])}
    for directory in shard_dirs:
        prints[str(Path(directory) / INDEX_FILE)] = _digest(Path(directory) / INDEX_FILE)
        for shard in read_index(directory)["shards"]:
            file = Path(directory) / shard["file"]
            prints[str(file)] = _digest(file, sampled=True)
    return prints


def check_same_data(saved: dict[str, str] | None, current: dict[str, str], out: str) -> None:
    """Refuse, in one line naming the files, to continue the run in `out` on data other than it was started on.
    A run saved before fingerprints were recorded (`saved` None) passes."""
    if saved is None:
        return
    changed = [
        f"{file} ({'new' if file not in saved else 'gone' if file not in current else 'changed'})"
        for file in sorted(saved.keys() | current.keys())
        if saved.get(file) != current.get(file)
    ]
    if changed:
        shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
        raise GptlabError(
            f"the training data differs from the data the run in {out} was started on: {shown}; resume on that "
            "data, or start a new run in another output directory"
        )


def _digest(file: Path, sampled: bool = False) -> str:
    """The file's size and SHA-256 (of the spread blocks when `sampled`); "unreadable" when it cannot be read,
    which its reader then reports."""
    try:
        with open(file, "rb") as f:
            size = f.seek(0, 2)
            f.seek(0)
            if not sampled or size <= _BLOCKS * _BLOCK_BYTES:
                digest = hashlib.file_digest(f, "sha256")
            else:
                digest = hashlib.sha256()
                for i in range(_BLOCKS):
                    f.seek((size - _BLOCK_BYTES) * i // (_BLOCKS - 1))
                    digest.update(f.read(_BLOCK_BYTES))
    except OSError:
        return "unreadable"
    return f"{size}:{digest.hexdigest()[:32]}"
