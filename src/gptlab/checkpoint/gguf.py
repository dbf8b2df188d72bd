"""Export a gptlab checkpoint as a GGUF file in llama.cpp's GPT-2 layout, with its tokenizer.

Tensor names come from gguf-py's own map for GPT-2, fed with the GPT-2 names of hf.py's table (gptlab's
parameter names are GPT-2's), so the layout follows llama.cpp rather than a table kept here. gptlab's weights
are [out, in] like nn.Linear, which is what llama.cpp's GPT-2 graph reads (its converter transposes HF's
Conv1D weights into this layout). As that converter does, the tied head is written again as `output`, and
position embeddings, norms and biases stay f32 whatever the type.

llama.cpp computes GPT-2's GELU with the tanh approximation (gptlab's `gelu_new`); a model trained with the
exact GELU (gptlab's small presets) is exported with a warning: the two differ by at most 5e-4 per activation
(measured), so llama.cpp's logits for such a model are close to gptlab's, not equal.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import gguf
import numpy as np
import torch

from gptlab import atomic
from gptlab.checkpoint.hf import GPT2
from gptlab.checkpoint.io import load_checkpoint
from gptlab.errors import GptlabError
from gptlab.files import check_not_under_a_file
from gptlab.model import GPT, GPTConfig
from gptlab.model.heads import TaskModel
from gptlab.tokenizer import Tokenizer

TYPES = {
    "f32": (gguf.GGMLQuantizationType.F32, gguf.LlamaFileType.ALL_F32),
    "f16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
    "q8_0": (gguf.GGMLQuantizationType.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
}
"""--type -> the type of the 2-D weights and the file type llama.cpp reports."""
_ARCH = gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.GPT2]
_KEEP_F32 = ("position_embd.weight",)
"""Besides 1-D tensors, what llama.cpp's converter and quantizer never quantize."""
_PRE_TOKENIZER = "gpt-2"
"""llama.cpp's name for GPT-2's split pattern, the one gptlab's BPE uses (bpe.GPT2_PATTERN)."""


def export_gguf(
    src: str | os.PathLike, dst: str | os.PathLike, type: str = "f32", overwrite: bool = False
) -> Path:
    """Write checkpoint `src` as the GGUF file `dst` (weights in f32, f16 or q8_0); returns `dst`.

    Everything llama.cpp's GPT-2 graph cannot run is refused before anything is written."""
    src, dst = Path(src), Path(dst)
    if type not in TYPES:
        raise GptlabError(f"the GGUF type must be {', '.join(TYPES)}, got {type!r}")
    _check_file_destination(dst, overwrite)
    lm = load_checkpoint(src)
    _check_model(lm.model, src)
    tokenizer = _check_tokenizer(lm.tokenizer, src)
    config = lm.config
    if config.activation == "gelu":
        print(
            f"warning: {src} uses the exact GELU; llama.cpp computes the tanh approximation (at most 5e-4 apart)",
            file=sys.stderr,
        )
    qtype, file_type = TYPES[type]
    with atomic.file(dst) as tmp:
        writer = gguf.GGUFWriter(tmp, _ARCH)
        _add_hyperparameters(writer, config, file_type)
        _add_tokenizer(writer, tokenizer, config.vocab_size)
        for name, tensor in _tensors(lm.model.state_dict(), config):
            _add_tensor(writer, name, tensor, qtype)
        try:
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
        finally:
            writer.close()
    return dst


def _check_file_destination(dst: Path, overwrite: bool) -> None:
    """check_destination's rule for one file: an existing one only with overwrite, a directory never."""
    if dst.is_dir():
        raise GptlabError(f"{dst} is a directory; give the GGUF file's name")
    if dst.exists() and not overwrite:
        raise GptlabError(f"{dst} already exists; set overwrite to replace it")
    check_not_under_a_file(dst.parent, dst)


def _check_model(model: GPT, src: Path) -> None:
    config = model.config
    if isinstance(model, TaskModel):
        raise GptlabError(f"{src} is a fine-tuned {model.spec.type} model; GGUF holds language models only")
    if config.has_local_attention:
        raise GptlabError(f"{src} has local (banded) attention layers, which llama.cpp's GPT-2 cannot run")
    if config.norm != "pre":
        raise GptlabError(f"{src} is a post-LN (GPT-1) model; llama.cpp's GPT-2 runs pre-LN models only")


def _check_tokenizer(tokenizer: object, src: Path) -> Tokenizer:
    """llama.cpp tokenizes GPT-2 style, so the checkpoint must carry a byte-level BPE, with merges: llama.cpp
    requires the list, and a GGUF file cannot hold an empty one."""
    if not isinstance(tokenizer, Tokenizer) or not tokenizer.merges:
        kind = (
            "no tokenizer" if tokenizer is None
            else "a byte tokenizer (BPE without merges)" if isinstance(tokenizer, Tokenizer)
            else "a character tokenizer"
        )
        raise GptlabError(f"{src} has {kind}; a GGUF file for llama.cpp needs a byte-level BPE tokenizer with merges")
    return tokenizer


def _add_hyperparameters(writer: gguf.GGUFWriter, config: GPTConfig, file_type: int) -> None:
    writer.add_context_length(config.n_ctx)
    writer.add_embedding_length(config.d_model)
    writer.add_feed_forward_length(config.ffn_dim)
    writer.add_block_count(config.n_layer)
    writer.add_head_count(config.n_head)
    writer.add_layer_norm_eps(config.layer_norm_eps)
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _add_tokenizer(writer: gguf.GGUFWriter, tokenizer: Tokenizer, vocab_size: int) -> None:
    """Tokens by id (ids the model has beyond the tokenizer's, from vocabulary padding, as unused
    placeholders: llama.cpp takes its vocabulary size from this list), merges in rank order, and
    <|endoftext|> as BOS and EOS, never added by the tokenizer (gptlab does not add it either)."""
    by_id = {i: t for t, i in tokenizer.vocab.items()}
    special = set(tokenizer.special_tokens)
    tokens, types = [], []
    for i in range(vocab_size):
        token = by_id.get(i)
        tokens.append(f"[PAD{i}]" if token is None else token)
        types.append(
            gguf.TokenType.UNUSED if token is None
            else gguf.TokenType.CONTROL if token in special
            else gguf.TokenType.NORMAL
        )
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(_PRE_TOKENIZER)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges([f"{a} {b}" for a, b in tokenizer.merges])
    if tokenizer.eot_id is not None:
        writer.add_bos_token_id(tokenizer.eot_id)
        writer.add_eos_token_id(tokenizer.eot_id)
    writer.add_add_bos_token(False)
    writer.add_add_eos_token(False)


def _tensors(state: dict[str, torch.Tensor], config: GPTConfig) -> list[tuple[str, np.ndarray]]:
    """(GGUF name, float32 array) for each tensor llama.cpp's GPT-2 reads, in hf.py's GPT-2 order."""
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.GPT2, config.n_layer)
    out = []
    for key, (hf_key,), _ in GPT2.keys(config.n_layer):
        # only c_attn.bias can be absent (qkv_bias false); llama.cpp's GPT-2 needs one, and a zero one is exact
        tensor = state[key] if key in state else torch.zeros(3 * config.d_model)
        name = names.get_name(hf_key, try_suffixes=(".weight", ".bias"))
        out.append((name, tensor.detach().float().cpu().numpy()))
        if name == "token_embd.weight":
            out.append(("output.weight", out[-1][1]))  # the tied head, as llama.cpp's converter writes it
    return out


def _add_tensor(writer: gguf.GGUFWriter, name: str, array: np.ndarray, qtype: gguf.GGMLQuantizationType) -> None:
    if array.ndim == 1 or name in _KEEP_F32 or qtype == gguf.GGMLQuantizationType.F32:
        writer.add_tensor(name, array)
        return
    block = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][0]
    if qtype == gguf.GGMLQuantizationType.F16 or array.shape[-1] % block:  # rows Q8_0 cannot split: f16
        writer.add_tensor(name, array.astype(np.float16))
        return
    writer.add_tensor(name, gguf.quants.quantize(array, qtype), raw_dtype=qtype)
