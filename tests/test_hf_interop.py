"""Hugging Face interop: logits and token ids agree across gptlab <-> transformers, both ways."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers
from helpers import assert_one_line_error, randomize, run_cli

import gptlab
from gptlab.checkpoint import io
from gptlab.checkpoint.hf import export_hf, import_hf
from gptlab.errors import GptlabError
from gptlab.model import GPT, GPTConfig
from gptlab.tokenizer import Tokenizer, train_tokenizer

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll: Speak, speak!  42 times"
SEQ = 48  # longer than the window of 16, so local attention differs from global
TOL = 1e-4


@pytest.fixture(scope="module")
def tokenizer(corpus_file: Path) -> Tokenizer:
    return train_tokenizer([corpus_file], vocab_size=400, progress=False)


@pytest.fixture(scope="module")
def ids(tokenizer: Tokenizer) -> torch.Tensor:
    return torch.randint(0, tokenizer.vocab_size, (2, SEQ), generator=torch.Generator().manual_seed(0))


@torch.no_grad()
def hf_logits(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    return model(ids).logits.float()


@torch.no_grad()
def gptlab_logits(path: Path, ids: torch.Tensor) -> torch.Tensor:
    return gptlab.load(path).model(ids).float()


def hf_checkpoint(path: Path, config, tokenizer: Tokenizer | None, layout: str = "safetensors") -> torch.nn.Module:
    """Save like save_pretrained; "bin" mimics older checkpoints: a pickle without the
    `transformer.` prefix, with the tied head and the attention-mask buffers."""
    model = randomize(transformers.AutoModelForCausalLM.from_config(config))
    model.save_pretrained(path, max_shard_size="100KB" if layout == "sharded" else "10GB")
    if layout == "bin":
        state = {**model.state_dict(), **dict(model.named_buffers())}
        torch.save({k.removeprefix("transformer."): v for k, v in state.items()}, path / "pytorch_model.bin")
        (path / "model.safetensors").unlink()
    if tokenizer is not None:
        tokenizer.save(path)
    return model


def gpt2_config(vocab_size: int, **overrides) -> transformers.GPT2Config:
    return transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=128, vocab_size=vocab_size, **overrides)


def neo_config(vocab_size: int) -> transformers.GPTNeoConfig:
    return transformers.GPTNeoConfig(
        num_layers=4, hidden_size=64, num_heads=4, attention_types=[[["global", "local"], 2]], window_size=16,
        max_position_embeddings=128, vocab_size=vocab_size, intermediate_size=96, activation_function="gelu_new",
    )


def assert_same_ids(tokenizer: Tokenizer, hf_dir: Path) -> None:
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(hf_dir)
    assert hf_tokenizer(TEXT)["input_ids"] == tokenizer.encode(TEXT)


def assert_close(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape
    assert (a - b).abs().max().item() <= TOL


# --- HF -> gptlab (-> HF) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "make_config, layout",
    [
        (lambda v: gpt2_config(v), "safetensors"),
        (lambda v: gpt2_config(v, activation_function="gelu", n_inner=96), "bin"),
        (lambda v: gpt2_config(v), "sharded"),
        (neo_config, "safetensors"),
        (neo_config, "bin"),
    ],
    ids=["gpt2", "gpt2-gelu-bin", "gpt2-sharded", "neo", "neo-bin"],
)
def test_import_matches_hf_and_round_trips(tmp_path, tokenizer, ids, make_config, layout):
    hf_model = hf_checkpoint(tmp_path / "hf", make_config(tokenizer.vocab_size), tokenizer, layout)
    expected = hf_logits(hf_model, ids)

    import_hf(tmp_path / "hf", tmp_path / "gptlab")
    assert_close(gptlab_logits(tmp_path / "gptlab", ids), expected)
    assert_same_ids(gptlab.load(tmp_path / "gptlab").require_tokenizer(), tmp_path / "hf")

    export_hf(tmp_path / "gptlab", tmp_path / "back")
    back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "back").eval()
    assert type(back) is type(hf_model)
    assert_close(hf_logits(back, ids), expected)


def test_neo_import_keeps_the_attention_pattern(tmp_path, tokenizer):
    hf_checkpoint(tmp_path / "hf", neo_config(tokenizer.vocab_size), tokenizer)
    config = gptlab.load(import_hf(tmp_path / "hf", tmp_path / "gptlab")).config
    assert config.attention == ("global", "local")
    assert (config.window_size, config.qkv_bias, config.d_ff) == (16, False, 96)


def test_openai_gpt_import_leaves_its_own_tokenizer_behind(tmp_path, tokenizer, ids, capsys):
    config = transformers.OpenAIGPTConfig(
        n_layer=2, n_embd=64, n_head=4, n_positions=128, vocab_size=tokenizer.vocab_size
    )
    hf_model = hf_checkpoint(tmp_path / "hf", config, tokenizer)
    import_hf(tmp_path / "hf", tmp_path / "gptlab")
    assert "OpenAIGPTTokenizer" in capsys.readouterr().err
    lm = gptlab.load(tmp_path / "gptlab")
    assert lm.tokenizer is None and lm.config.norm == "post"
    assert_close(gptlab_logits(tmp_path / "gptlab", ids), hf_logits(hf_model, ids))


def test_import_without_tokenizer_warns(tmp_path, tokenizer, capsys):
    hf_checkpoint(tmp_path / "hf", gpt2_config(tokenizer.vocab_size), None)
    import_hf(tmp_path / "hf", tmp_path / "gptlab")
    assert "without a tokenizer" in capsys.readouterr().err
    assert gptlab.load(tmp_path / "gptlab").tokenizer is None


# --- gptlab -> HF -----------------------------------------------------------------------------


def gptlab_model(vocab_size: int, zero_q_bias: bool = False, **fields) -> GPT:
    config = GPTConfig(**{"vocab_size": vocab_size, "n_ctx": 128, "n_layer": 2, "n_head": 4, "d_model": 64, **fields})
    model = randomize(GPT(config), seed=1)
    if zero_q_bias:
        with torch.no_grad():
            for block in model.h:
                block.attn.c_attn.bias[: config.d_model] = 0
    return model


LOCAL = dict(attention=("global", "local"), window_size=16)


@pytest.mark.parametrize(
    "fields, hf_class",
    [
        (dict(), "GPT2LMHeadModel"),
        (dict(qkv_bias=False, activation="gelu", d_ff=96), "GPT2LMHeadModel"),
        (dict(LOCAL, n_layer=4, qkv_bias=False), "GPTNeoForCausalLM"),
        (dict(LOCAL, n_layer=3, zero_q_bias=True, activation="gelu"), "GPTNeoForCausalLM"),
        (dict(norm="post"), "OpenAIGPTLMHeadModel"),
        (dict(norm="post", qkv_bias=False), "OpenAIGPTLMHeadModel"),
    ],
    ids=["gpt2", "gpt2-no-qkv-bias", "neo", "neo-folded-kv-bias", "openai-gpt", "openai-gpt-no-qkv-bias"],
)
def test_export_matches_gptlab(tmp_path, tokenizer, ids, fields, hf_class):
    model = gptlab_model(tokenizer.vocab_size, **fields)
    io.save(tmp_path / "gptlab", model, tokenizer)
    export_hf(tmp_path / "gptlab", tmp_path / "hf")

    hf_model, info = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf", output_loading_info=True)
    assert type(hf_model).__name__ == hf_class
    assert not info["missing_keys"] and not info["unexpected_keys"]
    expected = gptlab_logits(tmp_path / "gptlab", ids)
    assert_close(hf_logits(hf_model.eval(), ids), expected)
    assert_same_ids(tokenizer, tmp_path / "hf")

    import_hf(tmp_path / "hf", tmp_path / "back")
    assert_close(gptlab_logits(tmp_path / "back", ids), expected)
    assert gptlab.load(tmp_path / "back").require_tokenizer().encode(TEXT) == tokenizer.encode(TEXT)


def test_export_declares_gpt1_special_tokens(tmp_path, tokenizer):
    """Special tokens travel with the weights: HF sees GPT-1's start/delimiter/extract at gptlab's ids."""
    from gptlab.tokenizer import GPT1_SPECIAL_TOKENS

    tok = tokenizer.with_special_tokens(GPT1_SPECIAL_TOKENS)
    io.save(tmp_path / "gptlab", gptlab_model(tok.vocab_size), tok)
    export_hf(tmp_path / "gptlab", tmp_path / "hf")
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert [hf_tok.convert_tokens_to_ids(t) for t in GPT1_SPECIAL_TOKENS] == [tok.special_id(t) for t in GPT1_SPECIAL_TOKENS]
    assert set(GPT1_SPECIAL_TOKENS) <= set(hf_tok.all_special_tokens)
    ids = [tok.special_id("<|start|>"), *tok.encode(TEXT), tok.special_id("<|extract|>")]
    assert hf_tok.decode(ids) == tok.decode(ids)
    import_hf(tmp_path / "hf", tmp_path / "back")
    assert gptlab.load(tmp_path / "back").require_tokenizer().special_tokens == tok.special_tokens


def test_neo_export_compresses_uneven_attention_patterns(tmp_path, tokenizer):
    io.save(tmp_path / "gptlab", gptlab_model(tokenizer.vocab_size, **LOCAL, n_layer=3, qkv_bias=False), tokenizer)
    config = transformers.AutoConfig.from_pretrained(export_hf(tmp_path / "gptlab", tmp_path / "hf"))
    assert config.attention_types == [[["global", "local"], 1], [["global"], 1]]
    assert config.attention_layers == ["global", "local", "global"]


# --- errors -----------------------------------------------------------------------------------


def test_unknown_model_type(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(GptlabError, match="'llama' checkpoint; gptlab converts gpt2"):
        import_hf(tmp_path, tmp_path / "out")


def test_missing_weights(tmp_path, tokenizer):
    gpt2_config(tokenizer.vocab_size).save_pretrained(tmp_path)
    with pytest.raises(GptlabError, match="has no weights"):
        import_hf(tmp_path, tmp_path / "out")


@pytest.mark.parametrize("layout", ["safetensors", "bin"])
def test_truncated_weights(tmp_path, tokenizer, layout):
    hf_checkpoint(tmp_path / "hf", gpt2_config(tokenizer.vocab_size), tokenizer, layout)
    weights = tmp_path / "hf" / ("model.safetensors" if layout == "safetensors" else "pytorch_model.bin")
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(GptlabError, match="corrupt or truncated"):
        import_hf(tmp_path / "hf", tmp_path / "out")


def test_untied_lm_head(tmp_path, tokenizer):
    hf_checkpoint(tmp_path / "hf", gpt2_config(tokenizer.vocab_size, tie_word_embeddings=False), tokenizer)
    with pytest.raises(GptlabError, match="lm_head.weight differs from the token embedding"):
        import_hf(tmp_path / "hf", tmp_path / "out")


def test_unsupported_gpt2_option(tmp_path, tokenizer):
    hf_checkpoint(tmp_path / "hf", gpt2_config(tokenizer.vocab_size, scale_attn_by_inverse_layer_idx=True), tokenizer)
    with pytest.raises(GptlabError, match="scale_attn_by_inverse_layer_idx=true"):
        import_hf(tmp_path / "hf", tmp_path / "out")


def test_neo_export_refuses_query_bias(tmp_path, tokenizer):
    io.save(tmp_path / "gptlab", gptlab_model(tokenizer.vocab_size, **LOCAL), tokenizer)
    with pytest.raises(GptlabError, match="non-zero query bias.*qkv_bias false"):
        export_hf(tmp_path / "gptlab", tmp_path / "hf")


def test_openai_gpt_export_refuses_exact_gelu(tmp_path, tokenizer):
    io.save(tmp_path / "gptlab", gptlab_model(tokenizer.vocab_size, norm="post", activation="gelu"), tokenizer)
    with pytest.raises(GptlabError, match="no equivalent of activation 'gelu'"):
        export_hf(tmp_path / "gptlab", tmp_path / "hf")


def test_refuses_to_overwrite(tmp_path, tokenizer):
    io.save(tmp_path / "gptlab", gptlab_model(tokenizer.vocab_size), tokenizer)
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "keep.txt").write_text("mine")
    with pytest.raises(GptlabError, match="already exists and is not empty"):
        export_hf(tmp_path / "gptlab", tmp_path / "hf")
    export_hf(tmp_path / "gptlab", tmp_path / "hf", overwrite=True)
    assert not (tmp_path / "hf" / "keep.txt").exists()


@pytest.mark.parametrize("to", ["gptlab", "hf"])
def test_a_missing_source_is_said_not_to_exist(tmp_path, capsys, to):
    missing = tmp_path / "no-such-dir"
    assert_one_line_error(run_cli(capsys, "convert", missing, tmp_path / "out", "--to", to), f"{missing} does not exist")
    (tmp_path / "empty").mkdir()  # a directory that is no checkpoint keeps its own message
    kind = "Hugging Face" if to == "gptlab" else "gptlab"
    assert_one_line_error(run_cli(capsys, "convert", tmp_path / "empty", tmp_path / "out", "--to", to),
                          f"is not a {kind} checkpoint: config.json is missing")
