"""One call for every checkpoint conversion: Hugging Face GPT-2/GPT-Neo to gptlab and back, and a sharded
training checkpoint to an ordinary one (or straight to Hugging Face)."""

from __future__ import annotations

import os
from pathlib import Path

from gptlab.errors import GptlabError

FORMATS = ("gptlab", "hf")


def convert(src: str | os.PathLike, dst: str | os.PathLike, to: str, overwrite: bool = False) -> Path:
    """Write `src` to `dst` in format `to` (gptlab or hf); returns where it was written."""
    from gptlab.checkpoint.hf import export_hf, import_hf
    from gptlab.checkpoint.io import consolidate
    from gptlab.checkpoint.sharded import is_sharded

    if to not in FORMATS:
        raise GptlabError(f"the target format must be {' or '.join(FORMATS)}, got {to!r}")
    if to == "gptlab":
        write = consolidate if is_sharded(src) else import_hf
    else:
        write = export_hf
    return write(Path(src), Path(dst), overwrite=overwrite)
