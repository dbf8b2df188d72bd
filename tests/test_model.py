"""The GPT-1/2/3 model family: parameter counts against the papers, initialisation, norms and activations,
banded local attention against masked dense attention, and training in fp32 and bf16."""

import math

import pytest
import torch
import torch.nn.functional as F

from gptlab.errors import GptlabError
from gptlab.model import GPT, PRESETS, band_mask, local_attention, preset
from gptlab.model.local_attention import block_size
from gptlab.model.gpt import SHORT_CONTEXT, ShortCausalAttention


def meta_params(name: str) -> int:
    with torch.device("meta"):
        return GPT(PRESETS[name].config).num_params()


@pytest.mark.parametrize("name", list(PRESETS))
def test_meta_param_count_is_closed_form(name):
    config = PRESETS[name].config
    d, L, V, n = config.d_model, config.n_layer, config.vocab_size, config.n_ctx
    closed = L * (12 * d * d + 13 * d) + (V + n) * d + (2 * d if config.norm == "pre" else 0)
    assert meta_params(name) == closed == config.closed_form_params()


@pytest.mark.parametrize(
    "name, paper",
    [
        ("gpt3-small", 125e6), ("gpt3-medium", 350e6), ("gpt3-large", 760e6), ("gpt3-xl", 1.3e9),
        ("gpt3-2.7b", 2.7e9), ("gpt3-6.7b", 6.7e9), ("gpt3-13b", 13.0e9), ("gpt3-175b", 175.0e9),
        ("gpt1", 117e6),
    ],
)
def test_presets_within_two_percent_of_paper(name, paper):
    assert abs(meta_params(name) - paper) / paper < 0.02


def test_released_gpt2_counts():
    counts = {name: round(meta_params(name) / 1e6) for name in ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")}
    assert counts == {"gpt2": 124, "gpt2-medium": 355, "gpt2-large": 774, "gpt2-xl": 1558}
    assert round(meta_params("gpt3-175b") / 1e8) == 1746


def test_gpt3_presets_alternate_dense_and_local():
    config = PRESETS["gpt3-13b"].config
    kinds = [config.layer_attention(i) for i in range(4)]
    assert kinds == ["global", "local", "global", "local"]
    assert config.n_ctx == 2048 and config.d_head == 128


def test_bad_config_is_a_clear_error():
    with pytest.raises(GptlabError, match="not divisible"):
        preset("tiny", d_model=65)
    with pytest.raises(GptlabError, match="unknown field"):
        preset("tiny", n_embd=64)
    with pytest.raises(GptlabError, match="unknown model preset"):
        preset("gpt5")
    with pytest.raises(GptlabError, match="attention"):
        preset("tiny", attention=("dense",))
    with pytest.raises(GptlabError, match="d_ff must be a positive integer"):
        preset("tiny", d_ff="big")
    with pytest.raises(GptlabError, match="n_layer must be a positive integer"):
        preset("tiny", n_layer=2.0)
    with pytest.raises(GptlabError, match="attn_pdrop must be a number"):
        preset("tiny", attn_pdrop="0.1")


def test_residual_init_scaled_for_gpt2_not_gpt1():
    torch.manual_seed(0)
    gpt2 = GPT(preset("mini", n_layer=8, d_model=256))
    gpt1 = GPT(preset("mini", n_layer=8, d_model=256, norm="post", scale_residual_init=False))
    assert gpt2.h[0].mlp.c_proj.weight.std().item() == pytest.approx(0.02 / math.sqrt(16), rel=0.05)
    assert gpt1.h[0].mlp.c_proj.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert gpt2.h[0].mlp.c_fc.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert gpt2.lm_head.weight is gpt2.wte.weight


def test_post_ln_block_outputs_are_normalised():
    """GPT-1 applies LayerNorm after each residual add, so each block's output is unit-normalised."""
    torch.manual_seed(0)
    model = GPT(preset("tiny", norm="post", scale_residual_init=False)).eval()
    hidden = model(torch.randint(0, 100, (2, 16)), return_hidden=True)
    assert isinstance(model.ln_f, torch.nn.Identity)
    assert torch.allclose(hidden.mean(-1), torch.zeros(2, 16), atol=1e-5)
    assert torch.allclose(hidden.var(-1, unbiased=False), torch.ones(2, 16), atol=1e-3)
    pre = GPT(preset("tiny")).eval()
    assert isinstance(pre.ln_f, torch.nn.LayerNorm)


def test_gelu_variants_differ():
    torch.manual_seed(0)
    a = GPT(preset("tiny", activation="gelu_new")).eval()
    b = GPT(preset("tiny", activation="gelu"))
    b.load_state_dict(a.state_dict())
    b.eval()
    x = torch.randint(0, 100, (1, 8))
    diff = (a(x) - b(x)).abs().max().item()
    assert 0 < diff < 1e-2


def reference_band_attention(q, k, v, window):
    T = q.shape[2]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=band_mask(T, T, window))


@pytest.mark.parametrize("T, window", [(64, 16), (100, 16), (300, 100), (700, 256), (257, 256), (130, 300), (50, 7)])
def test_local_attention_equals_masked_dense(T, window):
    torch.manual_seed(T + window)
    q, k, v = (torch.randn(2, 3, T, 16, requires_grad=True) for _ in range(3))
    q2, k2, v2 = (t.detach().clone().requires_grad_() for t in (q, k, v))
    out = local_attention(q, k, v, window)
    ref = reference_band_attention(q2, k2, v2, window)
    assert torch.allclose(out, ref, atol=1e-5)
    grad = torch.randn_like(out)
    out.backward(grad)
    ref.backward(grad)
    for a, b in ((q, q2), (k, k2), (v, v2)):
        assert torch.allclose(a.grad, b.grad, atol=1e-4)


def test_local_attention_is_really_banded():
    """Changing a key outside every query's band leaves those outputs untouched."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 1, 64, 8) for _ in range(3))
    out = local_attention(q, k, v, 8)
    k2, v2 = k.clone(), v.clone()
    k2[:, :, 10] += 5
    v2[:, :, 10] += 5
    out2 = local_attention(q, k2, v2, 8)
    changed = (out - out2).abs().amax(dim=(0, 1, 3)) > 0
    assert changed.nonzero().flatten().tolist() == list(range(10, 18))


def test_local_attention_gradcheck_float64():
    torch.manual_seed(0)
    inputs = tuple(torch.randn(1, 2, 40, 4, dtype=torch.float64, requires_grad=True) for _ in range(3))
    assert torch.autograd.gradcheck(lambda q, k, v: local_attention(q, k, v, 12), inputs)


def test_local_attention_dropout_gradient():
    torch.manual_seed(0)
    inputs = tuple(torch.randn(1, 2, 40, 4, dtype=torch.float64, requires_grad=True) for _ in range(3))

    def fn(q, k, v):
        torch.manual_seed(123)  # the same dropout mask on every call, so finite differences are meaningful
        return local_attention(q, k, v, 12, dropout_p=0.3)

    assert torch.autograd.gradcheck(fn, inputs)
    assert not torch.allclose(fn(*inputs), local_attention(*inputs, 12))


def test_block_size_never_exceeds_128():
    assert block_size(256) == 128 and block_size(16) == 16 and block_size(300) == 100


def test_sparse_model_fast_path_equals_masked_path():
    torch.manual_seed(0)
    config = preset("tiny", attention=("global", "local"), window_size=16, n_layer=4)
    model = GPT(config).eval()
    idx = torch.randint(0, config.vocab_size, (2, 100))
    fast = model(idx)
    masked = model(idx, attention_mask=torch.ones(2, 100))
    assert torch.allclose(fast, masked, atol=1e-5)
    dense = GPT(config.replace(attention=("global",))).eval()
    dense.load_state_dict(model.state_dict())
    assert not torch.allclose(fast, dense(idx), atol=1e-3)  # the band really changes the model


def test_context_overflow_is_an_error():
    model = GPT(preset("tiny"))
    with pytest.raises(ValueError, match="context"):
        model(torch.zeros(1, 129, dtype=torch.long))


def test_training_step_reduces_loss_for_every_variant():
    for overrides in ({}, {"norm": "post", "scale_residual_init": False}, {"attention": ("global", "local"), "window_size": 8}):
        torch.manual_seed(0)
        model = GPT(preset("tiny", vocab_size=64, n_ctx=32, **overrides))
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        idx = torch.randint(0, 64, (4, 33))
        losses = []
        for _ in range(20):
            logits = model(idx[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, 64), idx[:, 1:].reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[-1] < losses[0] - 0.5, overrides


@pytest.mark.parametrize("attention,n_ctx", [(("global",), 32), (("global",), 160), (("global", "local"), 32)])
def test_bf16_autocast_training_matches_fp32(attention, n_ctx):
    """On CPU, bf16 autocast attends in bf16 matmuls over short contexts and in fp32 otherwise (speed); either
    way loss and gradients stay the fp32 ones."""
    torch.manual_seed(0)
    model = GPT(preset("tiny", vocab_size=64, n_ctx=n_ctx, attention=attention, window_size=8))
    idx = torch.randint(0, 64, (4, n_ctx + 1))

    def loss_and_grad(bf16: bool) -> tuple[float, torch.Tensor]:
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(idx[:, :-1]).float().flatten(0, 1), idx[:, 1:].flatten())
        loss.backward()
        return loss.item(), torch.cat([p.grad.flatten() for p in model.parameters()])

    loss32, grad32 = loss_and_grad(False)
    loss16, grad16 = loss_and_grad(True)
    assert abs(loss16 - loss32) < 0.01
    assert F.cosine_similarity(grad16, grad32, dim=0) > 0.99


def _fused_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """[B, H, T, D] heads as the [B, T, 3C] projection that c_attn outputs."""
    return torch.cat([t.transpose(1, 2).flatten(2) for t in (q, k, v)], dim=-1)


def test_short_causal_attention_matches_pytorch_attention():
    """The bf16 attention of short training contexts against PyTorch's fp32 kernel: outputs and gradients."""
    torch.manual_seed(0)
    B, H, T, D = 3, 2, SHORT_CONTEXT, 16
    q, k, v = (torch.randn(B, H, T, D, requires_grad=True) for _ in range(3))
    grad_out = torch.randn(B, H, T, D)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    expected_grads = torch.autograd.grad(expected, (q, k, v), grad_out)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = ShortCausalAttention.apply(_fused_qkv(q, k, v).bfloat16(), H, 0.0)
    got_grads = torch.autograd.grad(got, (q, k, v), grad_out.transpose(1, 2).flatten(2).bfloat16())
    assert got.dtype == torch.bfloat16 and got.shape == (B, T, H * D)
    got = got.view(B, T, H, D).transpose(1, 2)
    torch.testing.assert_close(got.float(), expected, atol=0.03, rtol=0.03)
    for mine, reference in zip(got_grads, expected_grads):
        assert F.cosine_similarity(mine.flatten(), reference.flatten(), dim=0) > 0.999
    # the first query sees only the first key: its output is that value, whatever follows
    torch.testing.assert_close(got[:, :, 0].float(), v[:, :, 0].bfloat16().float())


def test_short_causal_attention_drops_the_weights_autograd_would():
    """With dropout, the hand-written backward against autograd over the same ops and the same random mask."""
    B, H, T, D = 2, 3, 16, 8
    q, k, v = (torch.randn(B, H, T, D, dtype=torch.float64, requires_grad=True) for _ in range(3))
    grad_out = torch.randn(B, T, H * D, dtype=torch.float64)
    torch.manual_seed(1)
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    weights = F.dropout((q @ k.transpose(-1, -2) / D**0.5).masked_fill(~mask, float("-inf")).softmax(-1), 0.3)
    expected = (weights @ v).transpose(1, 2).flatten(2)
    expected_grads = torch.autograd.grad(expected, (q, k, v), grad_out)
    torch.manual_seed(1)
    got = ShortCausalAttention.apply(_fused_qkv(q, k, v), H, 0.3)
    got_grads = torch.autograd.grad(got, (q, k, v), grad_out)
    torch.testing.assert_close(got, expected)
    for mine, reference in zip(got_grads, expected_grads):
        torch.testing.assert_close(mine, reference)
    assert (weights == 0).any()


def test_bf16_weights_train_on_cpu():
    model = GPT(preset("tiny", vocab_size=64, n_ctx=32)).to(torch.bfloat16)
    logits = model(torch.randint(0, 64, (2, 32)))
    assert logits.dtype == torch.bfloat16
    logits.float().logsumexp(-1).mean().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.bfloat16 for p in model.parameters())
