"""Training checkpoints: ordinary gptlab checkpoints plus the state that makes a resume exact.

Each lives in `<out>/checkpoints/step_NNNNNNN/` and is written in one atomic rename, so a kill at any
moment leaves only complete checkpoints. Resume takes the newest one that loads, warning about any
newer one that does not.
"""

from __future__ import annotations

import io
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gptlab.checkpoint.io import LanguageModel, load, save
from gptlab.errors import GptlabError
from gptlab.model import GPT

STATE_FILE = "train_state.pt"
_PREFIX = "step_"


@dataclass
class Resumed:
    lm: LanguageModel
    state: dict[str, Any]
    path: Path


def checkpoints(out: Path) -> list[Path]:
    """Complete checkpoint directories, newest first (temporary `.step_*` directories are skipped)."""
    root = out / "checkpoints"
    found = [p for p in root.glob(f"{_PREFIX}*") if p.is_dir() and p.name[len(_PREFIX):].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(_PREFIX):]), reverse=True)


def save_checkpoint(out: Path, step: int, model: GPT, tokenizer, state: dict[str, Any], keep: int,
                    weights: dict[str, torch.Tensor] | None = None) -> Path:
    """`weights`: the full weights when `model` is sharded (see checkpoint.io.save)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    path = save(out / "checkpoints" / f"{_PREFIX}{step:07d}", model, tokenizer, metadata={"training": {"step": step}},
                extra_files={STATE_FILE: buffer.getvalue()}, weights=weights)
    for old in checkpoints(out)[keep:]:
        shutil.rmtree(old, ignore_errors=True)
    return path


def load_latest(out: Path, device: str | torch.device) -> Resumed | None:
    """The newest checkpoint that loads completely; None when there is none at all."""
    found = checkpoints(out)
    for path in found:
        try:
            lm = load(path, device=device)
            state_file = path / STATE_FILE
            if not state_file.is_file():
                raise GptlabError(f"{state_file} is missing")
            try:
                state = torch.load(state_file, map_location="cpu", weights_only=True)
            except Exception as e:  # any unpickling failure means the file is damaged
                raise GptlabError(f"{state_file} is corrupt ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
            return Resumed(lm, state, path)
        except GptlabError as e:
            print(f"warning: skipping checkpoint {path.name}: {e}", file=sys.stderr)
    if found:
        raise GptlabError(f"no readable checkpoint in {out / 'checkpoints'}; every one of {len(found)} is damaged")
    return None
