"""GGUF export for llama.cpp: what gguf's own reader finds in the file (llama.cpp's GPT-2 metadata, tensor names
and shapes, the weights and the tokenizer) and the models it refuses before writing anything."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from helpers import assert_one_line_error, randomize, run_cli

from gptlab.checkpoint import io
from gptlab.checkpoint.convert import GGUF_TYPES
from gptlab.checkpoint.gguf import TYPES
from gptlab.model import GPT, GPTConfig
from gptlab.model.heads import TaskModel
from gptlab.model.task import TaskSpec
from gptlab.tokenizer import GPT1_SPECIAL_TOKENS, Tokenizer, byte_tokenizer, train_tokenizer

VOCAB = 512  # the tokenizer's 400 tokens padded, so the file needs placeholder tokens
CONFIG = GPTConfig(vocab_size=VOCAB, n_ctx=64, n_layer=2, n_head=2, d_model=64, d_ff=96)
Q8_0 = gguf.GGMLQuantizationType.Q8_0


@pytest.fixture(scope="module")
def tokenizer(corpus_file: Path) -> Tokenizer:
    return train_tokenizer([corpus_file], vocab_size=400, progress=False)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tokenizer: Tokenizer) -> Path:
    path = tmp_path_factory.mktemp("gguf") / "ckpt"
    with torch.no_grad():
        io.save(path, randomize(GPT(CONFIG)), tokenizer)
    return path


def export(capsys, checkpoint: Path, out: Path, *args: str) -> gguf.GGUFReader:
    result = run_cli(capsys, "convert", checkpoint, out, "--to", "gguf", *args)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # a gelu_new model exports without a warning
    return gguf.GGUFReader(out)


def field(reader: gguf.GGUFReader, key: str):
    return reader.fields[key].contents()


def expected_tensors(config: GPTConfig) -> dict[str, str]:
    """GGUF name -> gptlab name, llama.cpp's GPT-2 layout written out by hand."""
    names = {"token_embd.weight": "wte.weight", "output.weight": "wte.weight", "position_embd.weight": "wpe.weight",
             "output_norm.weight": "ln_f.weight", "output_norm.bias": "ln_f.bias"}
    parts = {"attn_norm": "ln_1", "attn_qkv": "attn.c_attn", "attn_output": "attn.c_proj", "ffn_norm": "ln_2",
             "ffn_up": "mlp.c_fc", "ffn_down": "mlp.c_proj"}
    for i in range(config.n_layer):
        for ours, theirs in parts.items():
            for kind in ("weight", "bias"):
                names[f"blk.{i}.{ours}.{kind}"] = f"h.{i}.{theirs}.{kind}"
    return names


def weights(checkpoint: Path) -> dict[str, np.ndarray]:
    return {k: v.float().numpy() for k, v in io.load_checkpoint(checkpoint).model.state_dict().items()}


def test_types_match_the_cli_choices():
    assert tuple(TYPES) == GGUF_TYPES


def test_f32_holds_llama_cpp_gpt2_metadata_and_exact_weights(capsys, tmp_path, checkpoint):
    reader = export(capsys, checkpoint, tmp_path / "m.gguf")
    assert field(reader, "general.architecture") == "gpt2"
    assert field(reader, "general.file_type") == gguf.LlamaFileType.ALL_F32
    assert {key: field(reader, f"gpt2.{key}") for key in (
        "context_length", "embedding_length", "feed_forward_length", "block_count", "attention.head_count"
    )} == {"context_length": 64, "embedding_length": 64, "feed_forward_length": 96, "block_count": 2,
           "attention.head_count": 2}
    assert field(reader, "gpt2.attention.layer_norm_epsilon") == pytest.approx(CONFIG.layer_norm_eps)
    names = expected_tensors(CONFIG)
    assert sorted(t.name for t in reader.tensors) == sorted(names)
    state = weights(checkpoint)
    for tensor in reader.tensors:
        ours = state[names[tensor.name]]
        assert tensor.tensor_type == gguf.GGMLQuantizationType.F32
        assert list(tensor.shape) == list(reversed(ours.shape))  # GGUF lists ne0 (the input width) first
        np.testing.assert_array_equal(tensor.data, ours)


def test_f16_rounds_matrices_only(capsys, tmp_path, checkpoint):
    reader = export(capsys, checkpoint, tmp_path / "m.gguf", "--type", "f16")
    assert field(reader, "general.file_type") == gguf.LlamaFileType.MOSTLY_F16
    names, state = expected_tensors(CONFIG), weights(checkpoint)
    for tensor in reader.tensors:
        ours = state[names[tensor.name]]
        if ours.ndim == 1 or tensor.name == "position_embd.weight":  # as llama.cpp's converter keeps them
            assert tensor.tensor_type == gguf.GGMLQuantizationType.F32
            np.testing.assert_array_equal(tensor.data, ours)
        else:
            assert tensor.tensor_type == gguf.GGMLQuantizationType.F16
            np.testing.assert_allclose(tensor.data, ours, rtol=2**-11, atol=2**-24)


def test_q8_0_dequantizes_within_its_step(capsys, tmp_path, checkpoint):
    reader = export(capsys, checkpoint, tmp_path / "m.gguf", "--type", "q8_0")
    assert field(reader, "general.file_type") == gguf.LlamaFileType.MOSTLY_Q8_0
    names, state = expected_tensors(CONFIG), weights(checkpoint)
    block = gguf.GGML_QUANT_SIZES[Q8_0][0]
    quantized = 0
    for tensor in reader.tensors:
        ours = state[names[tensor.name]]
        if tensor.tensor_type != Q8_0:
            assert ours.ndim == 1 or tensor.name == "position_embd.weight"
            continue
        quantized += 1
        values = gguf.quants.dequantize(tensor.data, Q8_0).reshape(ours.shape)
        # each block of 32 stores q = round(x / d), d = max|x| / 127, as q·d with d rounded to f16: off by half a
        # step, plus up to 127 times d's rounding
        step = np.abs(ours.reshape(-1, block)).max(axis=1, keepdims=True) / 127
        error = np.abs(values - ours).reshape(-1, block)
        assert (error <= step * (0.5 + 127 * 2**-11) + 1e-7).all(), tensor.name
        assert error.max() > 0  # quantized, not stored exactly
    assert quantized == 2 + 4 * CONFIG.n_layer


def test_tokenizer_is_gptlab_bpe(capsys, tmp_path, checkpoint, tokenizer):
    reader = export(capsys, checkpoint, tmp_path / "m.gguf")
    assert field(reader, "tokenizer.ggml.model") == "gpt2"
    assert field(reader, "tokenizer.ggml.pre") == "gpt-2"
    by_id = {i: t for t, i in tokenizer.vocab.items()}
    tokens = field(reader, "tokenizer.ggml.tokens")
    assert len(tokens) == VOCAB
    assert tokens[: tokenizer.vocab_size] == [by_id[i] for i in range(tokenizer.vocab_size)]
    assert field(reader, "tokenizer.ggml.merges") == [f"{a} {b}" for a, b in tokenizer.merges]
    types = field(reader, "tokenizer.ggml.token_type")
    eot = tokenizer.eot_id
    assert types[eot] == gguf.TokenType.CONTROL
    assert set(types[: tokenizer.vocab_size]) - {types[eot]} == {gguf.TokenType.NORMAL}
    assert set(types[tokenizer.vocab_size :]) == {gguf.TokenType.UNUSED}
    assert field(reader, "tokenizer.ggml.bos_token_id") == field(reader, "tokenizer.ggml.eos_token_id") == eot
    assert field(reader, "tokenizer.ggml.add_bos_token") is False


def test_exact_gelu_exports_with_a_warning(capsys, tmp_path, tokenizer):
    io.save(tmp_path / "ckpt", GPT(CONFIG.replace(activation="gelu")), tokenizer)
    result = run_cli(capsys, "convert", tmp_path / "ckpt", tmp_path / "m.gguf", "--to", "gguf")
    assert result.returncode == 0, result.stderr
    assert "exact GELU" in result.stderr and "tanh" in result.stderr
    assert (tmp_path / "m.gguf").is_file()


def test_existing_file_is_replaced_only_with_overwrite(capsys, tmp_path, checkpoint):
    out = tmp_path / "m.gguf"
    out.write_text("keep me")
    assert_one_line_error(run_cli(capsys, "convert", checkpoint, out, "--to", "gguf"), "already exists", "overwrite")
    assert out.read_text() == "keep me"
    result = run_cli(capsys, "convert", checkpoint, out, "--to", "gguf", "--type", "f16", "--overwrite")
    assert result.returncode == 0, result.stderr
    assert field(gguf.GGUFReader(out), "general.file_type") == gguf.LlamaFileType.MOSTLY_F16
    assert [p.name for p in tmp_path.iterdir()] == ["m.gguf"]  # no temporary file left beside it


@pytest.mark.parametrize("case, fragment", [
    ("local", "local (banded) attention"),
    ("post_ln", "post-LN"),
    ("task", "fine-tuned classification model"),
    ("bytes", "byte tokenizer"),
])
def test_models_llama_cpp_cannot_run_are_refused_before_writing(capsys, tmp_path, tokenizer, case, fragment):
    config, tok = CONFIG, tokenizer
    if case == "local":
        config = CONFIG.replace(attention=["global", "local"], window_size=16)
    elif case == "post_ln":
        config = CONFIG.replace(norm="post")
    elif case == "bytes":
        tok = byte_tokenizer()
    if case == "task":
        tok = tokenizer.with_special_tokens(GPT1_SPECIAL_TOKENS)
        model = TaskModel(config, TaskSpec.create("classification", ["no", "yes"], tok))
    else:
        model = GPT(config.replace(vocab_size=max(tok.vocab_size, 384)) if case == "bytes" else config)
    io.save(tmp_path / "ckpt", model, tok)
    out = tmp_path / "m.gguf"
    assert_one_line_error(run_cli(capsys, "convert", tmp_path / "ckpt", out, "--to", "gguf"), fragment)
    assert not out.exists()


def test_type_belongs_to_gguf(capsys, tmp_path, checkpoint):
    result = run_cli(capsys, "convert", checkpoint, tmp_path / "hf", "--to", "hf", "--type", "f16")
    assert_one_line_error(result, "--to gguf only")
    assert not (tmp_path / "hf").exists()


def test_q8_0_keeps_rows_it_cannot_split_in_f16(capsys, tmp_path, tokenizer):
    """Q8_0 splits rows into blocks of 32; a 48-wide model's [*, 48] matrices fall back to f16, as in llama.cpp."""
    config = CONFIG.replace(d_model=48, d_ff=None)
    io.save(tmp_path / "ckpt", GPT(config), tokenizer)
    reader = export(capsys, tmp_path / "ckpt", tmp_path / "m.gguf", "--type", "q8_0")
    types = {t.name: t.tensor_type for t in reader.tensors}
    assert types["blk.0.ffn_up.weight"] == types["token_embd.weight"] == gguf.GGMLQuantizationType.F16
    assert types["blk.0.ffn_down.weight"] == Q8_0  # rows of 4·48 = 192 inputs


def test_missing_qkv_bias_is_written_as_zeros(capsys, tmp_path, tokenizer):
    """llama.cpp's GPT-2 reads a q/k/v bias; a model without one gets zeros, which compute the same."""
    io.save(tmp_path / "ckpt", GPT(CONFIG.replace(qkv_bias=False)), tokenizer)
    reader = export(capsys, tmp_path / "ckpt", tmp_path / "m.gguf")
    bias = next(t for t in reader.tensors if t.name == "blk.1.attn_qkv.bias")
    assert list(bias.shape) == [3 * CONFIG.d_model] and not bias.data.any()


def test_gpt2_tokenizer_travels_whole(capsys, tmp_path, gpt2_files):
    """GPT-2's own BPE: 50,000 merges, <|endoftext|> at 50256 as BOS and EOS, vocabulary padded to 50304."""
    gpt2 = Tokenizer.from_dir(gpt2_files)
    io.save(tmp_path / "ckpt", GPT(CONFIG.replace(vocab_size=50304, n_layer=1)), gpt2)
    reader = export(capsys, tmp_path / "ckpt", tmp_path / "m.gguf")
    tokens = field(reader, "tokenizer.ggml.tokens")
    assert len(tokens) == 50304 and tokens[50256] == "<|endoftext|>" and tokens[50257] == "[PAD50257]"
    assert tokens[:50257] == sorted(gpt2.vocab, key=gpt2.vocab.__getitem__)
    assert field(reader, "tokenizer.ggml.merges") == [f"{a} {b}" for a, b in gpt2.merges]
    assert field(reader, "tokenizer.ggml.eos_token_id") == 50256
