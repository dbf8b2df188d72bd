"""A `gptlab` model for EleutherAI's lm-evaluation-harness, backed by gptlab's own scorer.

    lm_eval --model gptlab --model_args path=runs/mine/final --tasks hellaswag

The harness finds models only in its own registry (no entry-point plugins); `_gptlab_lm_eval`, run at
start-up by a `.pth` file that installing gptlab puts in site-packages, registers this class there
lazily. In Python, `import gptlab.eval.harness` registers it too. `gptlab eval` hands the harness's
evaluator this same class, wrapped around a model already loaded (`GptlabLM.wrap`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import lm_eval.models  # noqa: F401  (registers the harness's own models: the registry loads them only while empty)
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

import gptlab
from gptlab.eval import generate, scoring

if TYPE_CHECKING:
    from lm_eval.api.instance import Instance

    from gptlab.checkpoint.io import LanguageModel

Pair = tuple[list[int], list[int]]


@register_model("gptlab")
class GptlabLM(LM):
    """`model_args`: path (a gptlab checkpoint), device, batch_size."""

    def __init__(self, path: str, device: str | None = None, batch_size: int | str | None = None, **_: Any):
        super().__init__()
        if device and device.startswith("cuda") and not torch.cuda.is_available():
            device = "cpu"  # the harness's command asks for cuda by default; its hf model falls back the same way
        # the harness passes its own batch size, possibly "auto"; gptlab's scorer needs a number
        self._setup(gptlab.load(path, device=device or "auto"),
                    int(batch_size) if str(batch_size or "").isdigit() else 16, progress=True)

    @classmethod
    def wrap(cls, lm: LanguageModel, batch_size: int = 16, progress: bool = False) -> GptlabLM:
        """The harness's model for a model already loaded."""
        self = cls.__new__(cls)
        LM.__init__(self)
        self._setup(lm, batch_size, progress)
        return self

    def _setup(self, lm: LanguageModel, batch_size: int, progress: bool) -> None:
        self.lm, self.batch_size, self.progress = lm, batch_size, progress
        self._pairs: dict[tuple[str, str], Pair] = {}

    def encode(self, context: str, continuation: str) -> Pair:
        """A request's token ids, split as the harness splits them; kept (until `forget`), since checking
        that a prompt fits the context, scoring it and counting its tokens all need them."""
        key = (context, continuation)
        if key not in self._pairs:
            self._pairs[key] = scoring.encode_pair(self.lm, context, continuation)
        return self._pairs[key]

    def forget(self) -> None:
        self._pairs.clear()

    def score(self, requests: list[tuple[str, str]], progress: bool = False) -> list[scoring.TokenScore]:
        pairs = [self._pairs.get((c, x)) or scoring.encode_pair(self.lm, c, x) for c, x in requests]
        return scoring.score_tokens(self.lm, pairs, self.batch_size, progress)

    def loglikelihood(self, requests: list[Instance], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        scores = self.score([r.args[:2] for r in requests], self.progress and not disable_tqdm)
        return [(s.logprob, s.greedy) for s in scores]

    def loglikelihood_rolling(self, requests: list[Instance], disable_tqdm: bool = False) -> list[float]:
        texts = [r.args[0] for r in requests]
        return scoring.loglikelihood_rolling(self.lm, texts, self.batch_size, self.progress and not disable_tqdm)

    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        asked = [r.args[:2] for r in requests]
        return generate.generate_until(self.lm, asked, self.batch_size, self.progress and not disable_tqdm)
