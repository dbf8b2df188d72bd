"""The sweep's model family: the shape of a model of a given size, its FLOPs, and its hyperparameters.

Shape rule: d_model about 64·n_layer (GPT-3 Small's 768/12 and XL's 1536/24) in multiples of 8, 4 heads
(the `mini` preset's), 2 layers at least. For a size N, n_layer = round(cbrt(N / (12·64²))) (at least
2), then the d_model that brings the exact non-embedding count closest to N. Kaplan et al. (2020, Fig.
5) find the loss at a fixed N within a few percent over aspect ratios of 20 to 200, but a change of
depth between a sweep and the run it predicts still moves that run off the sweep's curve: at 2.6e13
FLOPs on the standard library, 2×136 reaches 1.392 nats where 3×112 (the rule's shape at d_model ≈
32·n_layer) reaches 1.417, 1.8% worse, which is most of a 2% error budget. At 64 per layer, depth stays
at 2 up to 750k parameters, 3 up to 2.1M. One-layer models are left out: they cannot form induction
heads (Olsson et al. 2022), so they never learn to copy from their context and their loss stalls off the
curve the others follow. Widths in steps of 8 (not of a head size) make neighbouring shapes 1.2-1.4x
apart in N, so that a tenfold range of compute holds four or five of them.

Sizes are non-embedding parameters (Kaplan et al. 2020): everything but the token and position
embeddings, so N = n_layer·(12·d² + 13·d) + 2·d for these pre-LN models (the final LayerNorm counts).
Training FLOPs are Kaplan's C = (6·N + 6·n_layer·n_ctx·d_model)·D for D tokens: 2N per token forward
through the weights plus 2·n_layer·n_ctx·d_model for attention scores and values, and twice that
backward; the embeddings and the (tied) output head are left out, as in Kaplan's count.

Peak learning rate and batch follow the run's compute, by DeepSeek LLM's fits (Bi et al. 2024, §3.1,
made with the same count of non-embedding FLOPs, attention included): a batch of 0.2920·C^0.3271 tokens
and half their learning rate, lr = 0.5·0.3118·C^(−0.125). At these sizes runs are short and both
matter: a 12.8k-parameter model on 180k tokens of the standard library reaches 2.44 nats with them,
2.93 with Kaplan's LR(N) (2e-3) and a fixed batch of 16×128 tokens, 2.65 with this lr and batches of
20×128. At DeepSeek's full rate the same run ends anywhere between 2.43 and 2.55 as the rate moves by
1%; at half it moves by 0.2%, so a sweep's points lie on a curve rather than scatter about it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gptlab.errors import GptlabError
from gptlab.model import GPTConfig, preset
from gptlab.model.config import non_embedding_params  # noqa: F401 (also offered here, beside the FLOPs)

ASPECT = 64
"""d_model per layer."""
WIDTH_STEP = 8
N_HEAD = 4
MIN_LAYERS = 2
BASE_PRESET = "mini"
"""Every other model field (pre-LN, exact GELU, no dropout) comes from this preset."""


@dataclass(frozen=True)
class Shape:
    n_layer: int
    d_model: int

    @property
    def n_head(self) -> int:
        return N_HEAD

    @property
    def params(self) -> int:
        return non_embedding_params(self.model_config(n_ctx=1, vocab_size=1))  # neither counts

    def flops_per_token(self, n_ctx: int) -> int:
        return flops_per_token(self.model_config(n_ctx, vocab_size=1))

    def model_config(self, n_ctx: int, vocab_size: int) -> GPTConfig:
        return preset(BASE_PRESET, n_layer=self.n_layer, d_model=self.d_model, n_head=self.n_head, n_ctx=n_ctx,
                      vocab_size=vocab_size)

    def __str__(self) -> str:
        layers, heads = "s" * (self.n_layer > 1), "s" * (self.n_head > 1)
        return f"{self.n_layer} layer{layers}, d_model {self.d_model}, {self.n_head} head{heads}"


SMALLEST = Shape(MIN_LAYERS, 2 * WIDTH_STEP)

SHAPE_RULE = (f"n_layer = max({MIN_LAYERS}, round(cbrt(N / (12·{ASPECT}²)))), then the d_model in multiples of {WIDTH_STEP} "
              f"closest to N; {N_HEAD} heads; the rest of preset {BASE_PRESET}")
FLOPS_RULE = ("C = (6·N + 6·n_layer·n_ctx·d_model)·D: N non-embedding parameters, n_ctx = seq_len, D tokens "
              "(Kaplan et al. 2020)")
HYPERPARAMETER_RULE = "peak lr 0.5·0.3118·C^-0.125, batch 0.2920·C^0.3271 tokens (DeepSeek LLM, Bi et al. 2024)"


def flops_per_token(config: GPTConfig) -> int:
    """Training FLOPs per token at full context: 6·N + 6·n_layer·n_ctx·d_model."""
    return 6 * non_embedding_params(config) + 6 * config.n_layer * config.n_ctx * config.d_model


def shape_for_params(n: float) -> Shape:
    """The rule's shape whose non-embedding count is closest to `n` (in ratio)."""
    if not math.isfinite(n):
        raise GptlabError(f"a model size must be a finite number of parameters, got {n}")
    if n < SMALLEST.params:
        raise GptlabError(
            f"a size of {n:,.0f} non-embedding parameters is below the smallest shape ({SMALLEST}: "
            f"{SMALLEST.params:,}); ask for {SMALLEST.params:,} or more"
        )
    n_layer = max(MIN_LAYERS, round((n / (12 * ASPECT**2)) ** (1 / 3)))
    # n_layer·(12d² + 13d) + 2d = n, solved for d
    a, b = 12 * n_layer, 13 * n_layer + 2
    d = (-b + math.sqrt(b * b + 4 * a * n)) / (2 * a)
    widths = {max(SMALLEST.d_model, step(d / WIDTH_STEP) * WIDTH_STEP) for step in (math.floor, math.ceil)}
    return min((Shape(n_layer, w) for w in widths), key=lambda s: abs(math.log(s.params / n)))


def rule_shapes(largest: float) -> list[Shape]:
    """The rule's shapes up to `largest` parameters, smallest first: those it makes for their own size (near a
    change of depth it also makes a few for other sizes only, e.g. 3×144 for 774k while 3×144's 752k gives 2×176)."""
    shapes, n = set(), float(SMALLEST.params)
    while n <= largest:
        shapes.add(shape_for_params(n))
        n *= 1.01  # finer than any step between two shapes
    return sorted((s for s in shapes if shape_for_params(s.params) == s), key=lambda shape: shape.params)


def learning_rate(flops: float) -> float:
    """Half DeepSeek LLM's best peak learning rate for `flops` of training compute (see above)."""
    return 0.5 * 0.3118 * flops**-0.125


def batch_tokens(flops: float) -> float:
    """DeepSeek LLM's best batch, in tokens, for `flops` of training compute."""
    return 0.2920 * flops**0.3271
