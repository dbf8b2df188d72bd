"""One call for every checkpoint conversion: Hugging Face GPT-2/GPT-Neo to gptlab and back, a sharded
training checkpoint to an ordinary one (or straight to Hugging Face), and gptlab to GGUF for llama.cpp."""

from __future__ import annotations

import os
from pathlib import Path

from gptlab.errors import GptlabError

FORMATS = ("gptlab", "hf", "gguf")
GGUF_TYPES = ("f32", "f16", "q8_0")
"""Weight types of a GGUF export (gptlab.checkpoint.gguf.TYPES, named here so the CLI need not import gguf)."""


def convert(
    src: str | os.PathLike, dst: str | os.PathLike, to: str, overwrite: bool = False, type: str | None = None
) -> Path:
    """Write `src` to `dst` in format `to` (gptlab, hf or gguf; `type` picks a GGUF file's weight type,
    f32 by default); returns where it was written."""
    from gptlab.checkpoint.hf import export_hf, import_hf
    from gptlab.checkpoint.io import consolidate
    from gptlab.checkpoint.sharded import is_sharded

    if to not in FORMATS:
        raise GptlabError(f"the target format must be {', '.join(FORMATS[:-1])} or {FORMATS[-1]}, got {to!r}")
    if to == "gguf":
        from gptlab.checkpoint.gguf import export_gguf

        return export_gguf(src, dst, type=type or "f32", overwrite=overwrite)
    if type is not None:
        raise GptlabError(f"a weight type applies to --to gguf only, not --to {to}")
    if to == "gptlab":
        write = consolidate if is_sharded(src) else import_hf
    else:
        write = export_hf
    return write(Path(src), Path(dst), overwrite=overwrite)
