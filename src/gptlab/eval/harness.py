"""A `gptlab` model for EleutherAI's lm-evaluation-harness, backed by gptlab's own scorer.

    lm_eval --model gptlab --model_args path=runs/mine/final --tasks hellaswag

The harness finds models only in its own registry (no entry-point plugins); `_gptlab_lm_eval`, run at
start-up by a `.pth` file that installing gptlab puts in site-packages, registers this class there
lazily. In Python, `import gptlab.eval.harness` registers it too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import lm_eval.models  # noqa: F401  (registers the harness's own models: the registry loads them only while empty)
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

import gptlab
from gptlab.eval import scoring

if TYPE_CHECKING:
    from lm_eval.api.instance import Instance


@register_model("gptlab")
class GptlabLM(LM):
    """`model_args`: path (a gptlab checkpoint), device, batch_size."""

    def __init__(self, path: str, device: str | None = None, batch_size: int | str | None = None, **_: Any):
        super().__init__()
        if device and device.startswith("cuda") and not torch.cuda.is_available():
            device = "cpu"  # the harness's command asks for cuda by default; its hf model falls back the same way
        self.lm = gptlab.load(path, device=device or "auto")
        # the harness passes its own batch size, possibly "auto"; gptlab's scorer needs a number
        self.batch_size = int(batch_size) if str(batch_size or "").isdigit() else 16

    def loglikelihood(self, requests: list[Instance], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        return scoring.loglikelihood(self.lm, [r.args[:2] for r in requests], self.batch_size, not disable_tqdm)

    def loglikelihood_rolling(self, requests: list[Instance], disable_tqdm: bool = False) -> list[float]:
        return scoring.loglikelihood_rolling(self.lm, [r.args[0] for r in requests], self.batch_size, not disable_tqdm)

    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        from gptlab.eval.generate import generate_until

        return generate_until(self.lm, [r.args[:2] for r in requests], self.batch_size, not disable_tqdm)
