"""Load-time precision: bf16 and int8 weights give logits close to fp32, the tied head is handled, int8 cannot be saved."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

import gptlab
from gptlab.errors import GptlabError
from gptlab.model import GPT, preset
from gptlab.model.quantize import Int8Linear, apply_precision
from gptlab.tokenizer import byte_tokenizer

VOCAB = 257  # the byte tokenizer: 256 bytes and <|endoftext|>


@pytest.fixture(scope="module")
def model() -> GPT:
    """Weights drawn wider than GPT-2's 0.02 so the logits spread (std ~0.8) and their argmax means something."""
    torch.manual_seed(0)
    return GPT(preset("tiny", vocab_size=VOCAB, init_std=0.1)).eval()


@pytest.fixture(scope="module")
def ids() -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, 48), generator=torch.Generator().manual_seed(1))


def logits(model: GPT, ids: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(ids).float()


# Errors relative to the std of the fp32 logits: measured ~0.008 (bf16) and ~0.02 (int8) rms, ~0.04 and ~0.1 max.
@pytest.mark.parametrize("precision, rms, worst", [("bf16", 0.03, 0.15), ("int8", 0.06, 0.3)])
def test_logits_close_to_fp32(model, ids, precision, rms, worst):
    reference = logits(model, ids)
    out = logits(apply_precision(copy.deepcopy(model), precision), ids)
    error = (out - reference).abs() / reference.std()
    assert error.pow(2).mean().sqrt() < rms
    assert error.max() < worst
    assert (out.argmax(-1) == reference.argmax(-1)).float().mean() >= 0.9


def test_int8_quantizes_every_linear_and_unties_the_head(model):
    quantized = apply_precision(copy.deepcopy(model), "int8")
    assert not any(type(m) is nn.Linear for m in quantized.h.modules())
    assert sum(isinstance(m, Int8Linear) for m in quantized.h.modules()) == 4 * model.config.n_layer
    assert isinstance(quantized.lm_head, Int8Linear)
    assert quantized.lm_head.weight.dtype == torch.int8
    assert quantized.lm_head.weight.shape == (VOCAB, model.config.d_model)
    assert quantized.wte.weight.dtype == torch.float32
    assert torch.equal(quantized.wte.weight, model.wte.weight)


def test_bf16_keeps_the_tie(model):
    converted = apply_precision(copy.deepcopy(model), "bf16")
    assert converted.wte.weight.dtype == torch.bfloat16
    assert converted.lm_head.weight is converted.wte.weight


@pytest.mark.parametrize("bias", [True, False])
def test_int8_linear_on_3d_input(bias):
    torch.manual_seed(0)
    linear = nn.Linear(64, 40, bias=bias)
    quantized = Int8Linear(linear)
    x = torch.randn(3, 5, 64)
    with torch.inference_mode():
        out = quantized(x)
        assert out.shape == (3, 5, 40)
        assert torch.equal(out[1], quantized(x[1]))  # each token is quantized on its own, batch or not
        reference = linear(x)
    assert ((out - reference).abs().max() / reference.std()) < 0.05


def test_zero_input_and_zero_rows_stay_zero():
    linear = nn.Linear(8, 4, bias=False)
    with torch.no_grad():
        linear.weight[1] = 0
    with torch.inference_mode():
        assert not Int8Linear(linear)(torch.zeros(2, 8)).any()
        assert not Int8Linear(linear)(torch.randn(2, 8))[:, 1].any()


def test_load_with_precision(model, ids, tmp_path):
    gptlab.save(tmp_path / "m", model, byte_tokenizer())
    reference = logits(gptlab.load(tmp_path / "m").model, ids)
    for precision, dtype in (("bf16", torch.bfloat16), ("int8", torch.float32)):
        lm = gptlab.load(tmp_path / "m", precision=precision)
        assert lm.model.wte.weight.dtype == dtype
        out = logits(lm.model, ids)
        assert ((out - reference).abs().pow(2).mean().sqrt() / reference.std()) < 0.06
    assert isinstance(lm.model.lm_head, Int8Linear)
    assert lm.generate("To be", max_new_tokens=4, temperature=0)


def test_bad_precision_is_a_one_line_error(model, tmp_path):
    gptlab.save(tmp_path / "m", model, None)
    with pytest.raises(GptlabError, match=r"precision must be one of fp32, bf16, int8, got 'int4'") as info:
        gptlab.load(tmp_path / "m", precision="int4")
    assert "\n" not in str(info.value)


def test_saving_an_int8_model_is_refused(model, tmp_path):
    quantized = apply_precision(copy.deepcopy(model), "int8")
    with pytest.raises(GptlabError, match="quantized to int8") as info:
        gptlab.save(tmp_path / "m", quantized, None)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "m").exists()
