"""Convert between gptlab checkpoints and Hugging Face GPT-2, GPT-Neo and OpenAI-GPT directories.

Each architecture has one table saying which HF tensors make up each gptlab tensor; import and
export both walk that table, so the two directions cannot drift apart. Neither direction needs
transformers installed: HF directories are plain config.json + safetensors (or torch pickles).

GPT-1 fine-tuned GPT-2 models carry their head across: classification and entailment as
GPT2ForSequenceClassification (`score` is W_y; pad_token_id makes HF read the last token before the
padding, which is e), multiple choice as GPT2DoubleHeadsModel (`multiple_choice_head.summary` is W_y
with a zero bias, `mc_token_ids` are the positions of e). HF has no head for similarity's two orderings.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from gptlab import atomic
from gptlab.checkpoint.io import (
    CONFIG_FILE, FORMAT, WEIGHTS_FILE, build_model, check_vocab, load_checkpoint, load_tokenizer, read_weights, save,
)
from gptlab.errors import GptlabError
from gptlab.files import check_destination, read_config_dir
from gptlab.model import GPT, GPTConfig
from gptlab.model.heads import TaskModel
from gptlab.model.task import TaskSpec
from gptlab.tokenizer import GPT1_SPECIAL_TOKENS, Tokenizer

_PREFIX = "transformer."
_LM_HEAD = "lm_head.weight"
# Attention masks that older HF versions saved beside the weights; they carry no parameters.
_BUFFERS = re.compile(r"(^|\.)(attn\.(attention\.)?(bias|masked_bias)|position_ids)$")
# Weight layouts in order of preference; an index file lists the shards of a split checkpoint.
_WEIGHT_FILES = (
    "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json"
)
_BYTE_LEVEL_TOKENIZERS = ("GPT2Tokenizer", "GPT2TokenizerFast")
_EOT = "<|endoftext|>"


@dataclass(frozen=True)
class Param:
    """One gptlab tensor and the HF tensors it is stacked from (along dim 0); `{i}` is the layer."""

    gptlab: str
    hf: tuple[str, ...]
    conv1d: bool = False
    """HF's Conv1D stores weights [in, out], the transpose of nn.Linear."""


def _affine(gptlab: str, hf: str | None = None, conv1d: bool = False) -> tuple[Param, Param]:
    """Weight and bias of a Linear, Conv1D or LayerNorm."""
    hf = hf or gptlab
    return Param(f"{gptlab}.weight", (f"{hf}.weight",), conv1d), Param(f"{gptlab}.bias", (f"{hf}.bias",))


@dataclass(frozen=True)
class Architecture:
    model_type: str
    hf_class: str
    norm: str
    qkv_bias: bool
    """What an imported model gets: GPT-Neo's q/k/v projections have no bias."""
    fields: dict[str, str]
    """HF config field -> GPTConfig field, for values that carry over unchanged."""
    activation_field: str
    activations: dict[str, str]
    """HF activation name -> gptlab activation."""
    unsupported: dict[str, Any]
    """HF config options gptlab does not model, with the value that would change the maths."""
    tokenizer_class: str
    """What AutoTokenizer builds when tokenizer_config.json names no class."""
    params: tuple[Param, ...]

    def keys(self, n_layer: int) -> Iterator[tuple[str, tuple[str, ...], bool]]:
        for p in self.params:
            layers = range(n_layer) if "{i}" in p.gptlab else [0]
            for i in layers:
                yield p.gptlab.format(i=i), tuple(k.format(i=i) for k in p.hf), p.conv1d


_SIZES = ("vocab_size", "n_ctx", "n_layer", "n_head", "d_model")
_DROPOUTS = {"embd_pdrop": "embd_pdrop", "resid_pdrop": "resid_pdrop", "attn_pdrop": "attn_pdrop"}

GPT2 = Architecture(
    model_type="gpt2",
    hf_class="GPT2LMHeadModel",
    norm="pre",
    qkv_bias=True,
    fields={
        "vocab_size": "vocab_size", "n_positions": "n_ctx", "n_layer": "n_layer", "n_head": "n_head",
        "n_embd": "d_model", "n_inner": "d_ff", "layer_norm_epsilon": "layer_norm_eps", **_DROPOUTS,
    },
    activation_field="activation_function",
    activations={"gelu_new": "gelu_new", "gelu": "gelu"},
    unsupported={"scale_attn_weights": False, "scale_attn_by_inverse_layer_idx": True, "add_cross_attention": True},
    tokenizer_class="GPT2Tokenizer",
    params=(
        Param("wte.weight", ("wte.weight",)),
        Param("wpe.weight", ("wpe.weight",)),
        *_affine("h.{i}.ln_1"),
        *_affine("h.{i}.attn.c_attn", conv1d=True),
        *_affine("h.{i}.attn.c_proj", conv1d=True),
        *_affine("h.{i}.ln_2"),
        *_affine("h.{i}.mlp.c_fc", conv1d=True),
        *_affine("h.{i}.mlp.c_proj", conv1d=True),
        *_affine("ln_f"),
    ),
)

GPT_NEO = Architecture(
    model_type="gpt_neo",
    hf_class="GPTNeoForCausalLM",
    norm="pre",
    qkv_bias=False,
    fields={
        "vocab_size": "vocab_size", "max_position_embeddings": "n_ctx", "num_layers": "n_layer",
        "num_heads": "n_head", "hidden_size": "d_model", "intermediate_size": "d_ff",
        "window_size": "window_size", "layer_norm_epsilon": "layer_norm_eps",
        "embed_dropout": "embd_pdrop", "resid_dropout": "resid_pdrop", "attention_dropout": "attn_pdrop",
    },
    activation_field="activation_function",
    activations={"gelu_new": "gelu_new", "gelu": "gelu"},
    unsupported={},
    tokenizer_class="GPT2Tokenizer",
    params=(
        Param("wte.weight", ("wte.weight",)),
        Param("wpe.weight", ("wpe.weight",)),
        *_affine("h.{i}.ln_1"),
        Param("h.{i}.attn.c_attn.weight", tuple(f"h.{{i}}.attn.attention.{x}_proj.weight" for x in "qkv")),
        *_affine("h.{i}.attn.c_proj", "h.{i}.attn.attention.out_proj"),
        *_affine("h.{i}.ln_2"),
        *_affine("h.{i}.mlp.c_fc"),
        *_affine("h.{i}.mlp.c_proj"),
        *_affine("ln_f"),
    ),
)

OPENAI_GPT = Architecture(
    model_type="openai-gpt",
    hf_class="OpenAIGPTLMHeadModel",
    norm="post",
    qkv_bias=True,
    fields={
        "vocab_size": "vocab_size", "n_positions": "n_ctx", "n_layer": "n_layer", "n_head": "n_head",
        "n_embd": "d_model", "layer_norm_epsilon": "layer_norm_eps", **_DROPOUTS,
    },
    activation_field="afn",
    activations={"gelu": "gelu_new"},  # HF's openai-gpt "gelu" is the tanh approximation
    unsupported={},
    tokenizer_class="OpenAIGPTTokenizer",
    params=(
        Param("wte.weight", ("tokens_embed.weight",)),
        Param("wpe.weight", ("positions_embed.weight",)),
        *_affine("h.{i}.attn.c_attn", conv1d=True),
        *_affine("h.{i}.attn.c_proj", conv1d=True),
        *_affine("h.{i}.ln_1"),
        *_affine("h.{i}.mlp.c_fc", conv1d=True),
        *_affine("h.{i}.mlp.c_proj", conv1d=True),
        *_affine("h.{i}.ln_2"),
    ),
)

ARCHITECTURES = {arch.model_type: arch for arch in (GPT2, GPT_NEO, OPENAI_GPT)}


@dataclass(frozen=True)
class Head:
    """A Hugging Face model class holding GPT-1's task head: W_y under `weight`, and a `bias` kept at zero."""

    hf_class: str
    weight: str
    bias: str | None
    config: dict[str, Any]
    """HF config fields that make the class compute exactly W_y·h_e."""


_SEQUENCE_CLASSIFICATION = Head("GPT2ForSequenceClassification", "score.weight", None, {})
_DOUBLE_HEADS = Head(
    "GPT2DoubleHeadsModel", "multiple_choice_head.summary.weight", "multiple_choice_head.summary.bias",
    {"summary_type": "cls_index", "summary_use_proj": True, "summary_proj_to_labels": True, "summary_activation": None},
)
HEADS = {"classification": _SEQUENCE_CLASSIFICATION, "entailment": _SEQUENCE_CLASSIFICATION, "multiple_choice": _DOUBLE_HEADS}
"""gptlab task type -> its HF GPT-2 class."""
_TASK_KEY = "gptlab_task"
"""The TaskSpec, kept in the HF config so that importing an export restores labels' types and the task type."""


def import_hf(src: str | os.PathLike, dst: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Convert a Hugging Face gpt2 / gpt_neo / openai-gpt directory into a gptlab checkpoint."""
    src, dst = Path(src), Path(dst)
    _check_source(src)
    check_destination(dst, overwrite)
    hf_config = _read_hf_config(src)
    arch = _architecture(hf_config, src)
    config = _config_from_hf(arch, hf_config, src)
    tokenizer = _import_tokenizer(arch, src)
    hf_state = _read_hf_weights(src)
    task, head = _head_from_hf(arch, hf_config, hf_state, tokenizer, src)
    state = _state_from_hf(arch, hf_state, config, src)
    model = build_model(config, {**state, **head}, f"Hugging Face checkpoint {src}", task)
    check_vocab(config, tokenizer, f"Hugging Face checkpoint {src}")
    return save(dst, model, tokenizer)


def export_hf(src: str | os.PathLike, dst: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write a gptlab checkpoint as a directory `AutoModelForCausalLM.from_pretrained` loads."""
    dst = Path(dst)
    _check_source(Path(src))
    check_destination(dst, overwrite)
    lm = load_checkpoint(src)
    arch = _export_architecture(lm.config)
    hf_config = _config_to_hf(arch, lm.config, lm.tokenizer)
    tensors = _state_to_hf(arch, lm.model)
    task = lm.model.spec if isinstance(lm.model, TaskModel) else None
    if task is not None:
        _head_to_hf(arch, lm.model, hf_config, tensors)
    with atomic.directory(dst) as tmp:
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        (tmp / CONFIG_FILE).write_text(json.dumps(hf_config, indent=2) + "\n")
        if lm.tokenizer is None:
            _warn(f"{src} has no tokenizer; {dst} will hold the model only")
        else:
            _save_hf_tokenizer(lm.tokenizer, lm.config, tmp, None if task is None else task.pad)
    return dst


# --- reading and writing HF directories -------------------------------------------------------


def _check_source(src: Path) -> None:
    """A missing source is a typo, not a directory that is no checkpoint: say so."""
    if not src.exists():
        raise GptlabError(f"{src} does not exist")


def _read_hf_config(src: Path) -> dict[str, Any]:
    config = read_config_dir(src, CONFIG_FILE, "Hugging Face")
    if config.get("format") == FORMAT:
        raise GptlabError(f"{src} is already a gptlab checkpoint")
    return config


def _architecture(hf_config: dict[str, Any], src: Path) -> Architecture:
    model_type = hf_config.get("model_type")
    if not model_type:
        raise GptlabError(f"{src / CONFIG_FILE} has no model_type")
    if model_type not in ARCHITECTURES:
        raise GptlabError(f"{src} is a {model_type!r} checkpoint; gptlab converts {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[model_type]


def _read_hf_weights(src: Path) -> dict[str, torch.Tensor]:
    """Every tensor, in float32, with the `transformer.` prefix and mask buffers removed."""
    for name in _WEIGHT_FILES:
        path = src / name
        if path.is_file():
            files = _shards(path) if name.endswith(".index.json") else [path]
            state: dict[str, torch.Tensor] = {}
            for file in files:
                state.update(read_weights(file))
            return {k.removeprefix(_PREFIX): v.float() for k, v in state.items() if not _BUFFERS.search(k)}
    raise GptlabError(f"{src} has no weights: expected {' or '.join(_WEIGHT_FILES)}")


def _shards(index: Path) -> list[Path]:
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
        files = sorted(set(weight_map.values()))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError):
        raise GptlabError(f"{index} is not a weight index (a JSON object with a weight_map)") from None
    missing = [f for f in files if not (index.parent / f).is_file()]
    if missing:
        raise GptlabError(f"{index} lists shard {missing[0]}, which is missing")
    return [index.parent / f for f in files]


def _import_tokenizer(arch: Architecture, src: Path) -> Tokenizer | None:
    """The byte-level BPE tokenizer beside the weights; others (GPT-1's own) are left behind."""
    tokenizer_class = _json_object(src / "tokenizer_config.json").get("tokenizer_class") or arch.tokenizer_class
    if tokenizer_class not in _BYTE_LEVEL_TOKENIZERS:
        _warn(f"{src} uses {tokenizer_class}, not byte-level BPE; saving the model without a tokenizer")
        return None
    tokenizer = load_tokenizer(src)
    if tokenizer is None:
        _warn(f"{src} has no vocab.json + merges.txt; saving the model without a tokenizer")
    return tokenizer


def _json_object(path: Path) -> dict[str, Any]:
    """A small optional JSON file; unreadable or absent counts as empty."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _save_hf_tokenizer(tokenizer: Tokenizer, config: GPTConfig, dst: Path, pad: int | None) -> None:
    """vocab.json + merges.txt, and a tokenizer_config.json that makes AutoTokenizer read them as GPT-2 BPE
    (padding with the token `pad` when given: a task model's, so that HF batches end rows where gptlab does)."""
    tokenizer.save(dst)
    eot = _EOT if tokenizer.eot_id is not None else None
    tokenizer_config = {
        "tokenizer_class": "GPT2Tokenizer",
        "model_max_length": config.n_ctx,
        "add_prefix_space": False,
        "bos_token": eot,
        "eos_token": eot,
        "unk_token": eot,
        # declared so HF keeps them whole and lists them as special (GPT-1's start/delimiter/extract)
        "added_tokens_decoder": {
            str(i): {"content": t, "special": True, "lstrip": False, "rstrip": False, "normalized": False, "single_word": False}
            for t, i in sorted(tokenizer.special_tokens.items(), key=lambda item: item[1])
        },
        "additional_special_tokens": [t for t in tokenizer.special_tokens if t != _EOT],
    }
    if pad is not None:
        tokenizer_config["pad_token"] = next(t for t, i in tokenizer.special_tokens.items() if i == pad)
    (dst / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


# --- configs ----------------------------------------------------------------------------------


def _config_from_hf(arch: Architecture, hf: dict[str, Any], src: Path) -> GPTConfig:
    for option, bad in arch.unsupported.items():
        if option in hf and hf[option] == bad:
            raise GptlabError(f"{src}: gptlab does not model {arch.model_type} with {option}={json.dumps(bad)}")
    missing = [h for h, g in arch.fields.items() if g in _SIZES and h not in hf]
    if arch.activation_field not in hf:
        missing.append(arch.activation_field)
    if missing:
        raise GptlabError(f"{src / CONFIG_FILE} lacks {', '.join(missing)}")
    activation = hf[arch.activation_field]
    if activation not in arch.activations:
        raise GptlabError(
            f"{src}: activation {activation!r} is not supported; gptlab converts {', '.join(arch.activations)}"
        )
    values = {g: hf[h] for h, g in arch.fields.items() if h in hf}
    values.update(norm=arch.norm, qkv_bias=arch.qkv_bias, activation=arch.activations[activation])
    if arch is GPT_NEO:
        values["attention"] = _repeating_pattern(_neo_layers(hf, src))
    return GPTConfig(**values)


def _config_to_hf(arch: Architecture, config: GPTConfig, tokenizer: Tokenizer | None) -> dict[str, Any]:
    by_gptlab = {g: a for a, g in arch.activations.items()}
    if config.activation not in by_gptlab:
        offers = "; ".join(f"its {a!r} is gptlab's {g!r}" for a, g in arch.activations.items())
        raise GptlabError(
            f"Hugging Face {arch.model_type} has no equivalent of activation {config.activation!r} ({offers})"
        )
    values = config.to_dict()
    eot = tokenizer.eot_id if tokenizer is not None else None
    hf = {
        "model_type": arch.model_type,
        "architectures": [arch.hf_class],
        **{h: values[g] for h, g in arch.fields.items()},
        arch.activation_field: by_gptlab[config.activation],
        "tie_word_embeddings": True,
        "bos_token_id": eot,
        "eos_token_id": eot,
        "dtype": "float32",
    }
    if arch is GPT_NEO:
        hf["attention_types"] = _neo_attention_types(config)
    return hf


def _export_architecture(config: GPTConfig) -> Architecture:
    if config.norm == "pre":
        return GPT_NEO if config.has_local_attention else GPT2
    if config.has_local_attention:
        raise GptlabError(
            "post-LN models with local attention have no Hugging Face equivalent (openai-gpt is all-global)"
        )
    if config.ffn_dim != 4 * config.d_model:
        raise GptlabError(
            f"Hugging Face openai-gpt fixes the feed-forward width at 4·d_model = {4 * config.d_model};"
            f" this model has d_ff {config.ffn_dim}"
        )
    return OPENAI_GPT


def _neo_layers(hf: dict[str, Any], src: Path) -> list[str]:
    """Expand attention_types such as [[["global", "local"], 12]] into one kind per layer."""
    layers: list[str] = []
    try:
        for kinds, repeat in hf.get("attention_types", [[["global", "local"], 12]]):  # HF's default
            layers += list(kinds) * repeat
    except (TypeError, ValueError):
        raise GptlabError(f"{src}: attention_types must look like [[[\"global\", \"local\"], 12]]") from None
    if len(layers) != hf["num_layers"] or not set(layers) <= {"global", "local"}:
        raise GptlabError(
            f"{src}: attention_types {hf.get('attention_types')} does not give {hf['num_layers']} global/local layers"
        )
    return layers


def _neo_attention_types(config: GPTConfig) -> list[list[Any]]:
    """Whole repeats of the layer pattern, then the leftover prefix when it does not divide n_layer."""
    pattern = list(_repeating_pattern([config.layer_attention(i) for i in range(config.n_layer)]))
    repeats, rest = divmod(config.n_layer, len(pattern))
    return [[pattern, repeats]] + ([[pattern[:rest], 1]] if rest else [])


def _repeating_pattern(layers: list[str]) -> tuple[str, ...]:
    """The shortest prefix that reproduces every layer when repeated cyclically."""
    n = len(layers)
    size = next(m for m in range(1, n + 1) if all(layers[i] == layers[i % m] for i in range(n)))
    return tuple(layers[:size])


# --- task heads -------------------------------------------------------------------------------


def _head_to_hf(arch: Architecture, model: TaskModel, hf_config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    """Add the head's class, config fields and tensors to an export of the backbone."""
    spec = model.spec
    if arch is not GPT2 or spec.type not in HEADS:
        kind = "post-LN (GPT-1)" if arch is OPENAI_GPT else "local-attention" if arch is GPT_NEO else "GPT-2"
        raise GptlabError(
            f"a {spec.type} head on a {kind} model has no Hugging Face equivalent; gptlab exports"
            f" {', '.join(HEADS)} heads on GPT-2-style (pre-LN, global attention) models"
        )
    head = HEADS[spec.type]
    hf_config.update(head.config, architectures=[head.hf_class], pad_token_id=spec.pad, **{_TASK_KEY: spec.to_dict()})
    if spec.type == "multiple_choice":
        hf_config["summary_first_dropout"] = spec.clf_pdrop
    else:
        hf_config["id2label"] = {str(i): str(label) for i, label in enumerate(spec.labels)}
        hf_config["label2id"] = {str(label): i for i, label in enumerate(spec.labels)}
    weight = model.head.weight.detach().float()
    tensors[head.weight] = weight.contiguous()
    if head.bias is not None:
        tensors[head.bias] = torch.zeros(len(weight))


def _head_from_hf(
    arch: Architecture, hf: dict[str, Any], state: dict[str, torch.Tensor], tokenizer: Tokenizer | None, src: Path
) -> tuple[TaskSpec | None, dict[str, torch.Tensor]]:
    """The task spec and `head.weight` of a checkpoint of a head class (popped from `state`), or (None, {})."""
    classes = set(hf.get("architectures") or [])
    head = next((h for h in HEADS.values() if h.hf_class in classes), None)
    if head is None:
        return None, {}
    if arch is not GPT2:
        raise GptlabError(f"{src}: gptlab imports task heads of gpt2 models only")
    wrong = {k: hf.get(k) for k, v in head.config.items() if hf.get(k) != v}
    if wrong:
        raise GptlabError(f"{src}: gptlab's head is one linear map of the state at e; this one has {json.dumps(wrong)}")
    if head.weight not in state:
        raise GptlabError(f"{src}: weights lack {head.weight}")
    weight = state.pop(head.weight)
    bias = state.pop(head.bias) if head.bias is not None and head.bias in state else None
    if bias is not None and bias.any():
        raise GptlabError(f"{src}: {head.bias} is not zero; gptlab's head (GPT-1's W_y) has no bias")
    if _TASK_KEY in hf:
        task = TaskSpec.from_dict(hf[_TASK_KEY], f"{src / CONFIG_FILE} {_TASK_KEY}")
    else:
        if tokenizer is None or not set(GPT1_SPECIAL_TOKENS) <= set(tokenizer.special_tokens):
            raise GptlabError(
                f"{src}: importing a task head needs its tokenizer, holding {', '.join(GPT1_SPECIAL_TOKENS)}"
            )
        if head is _DOUBLE_HEADS:
            task = TaskSpec.create("multiple_choice", [], tokenizer, clf_pdrop=hf.get("summary_first_dropout", 0.1))
        else:
            labels = [hf.get("id2label", {}).get(str(i), f"LABEL_{i}") for i in range(len(weight))]
            task = TaskSpec.create("classification", labels, tokenizer)
    return task, {"head.weight": weight}


# --- tensors ----------------------------------------------------------------------------------


def _state_from_hf(
    arch: Architecture, hf: dict[str, torch.Tensor], config: GPTConfig, src: Path
) -> dict[str, torch.Tensor]:
    """gptlab tensors from HF ones (prefix and buffers already stripped), refusing leftovers."""
    lm_head = hf.pop(_LM_HEAD, None)
    table = list(arch.keys(config.n_layer))
    missing = [k for _, keys, _ in table for k in keys if k not in hf]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise GptlabError(f"{src}: weights lack {missing[0]}{more}")
    state = {g: torch.cat([hf.pop(k).t() if conv1d else hf.pop(k) for k in keys]) for g, keys, conv1d in table}
    if hf:
        raise GptlabError(f"{src}: unexpected weights {', '.join(sorted(hf)[:3])}{' ...' if len(hf) > 3 else ''}")
    if lm_head is not None and not torch.equal(lm_head, state["wte.weight"]):
        raise GptlabError(
            f"{src}: {_LM_HEAD} differs from the token embedding; gptlab ties its output head, so it cannot hold"
            " an untied one"
        )
    if arch is GPT_NEO:
        _scale_queries(state, config, math.sqrt(config.d_head))  # Neo does not divide scores by sqrt(d_head)
    return state


def _state_to_hf(arch: Architecture, model: GPT) -> dict[str, torch.Tensor]:
    """HF tensors under `transformer.`; the tied head is left out, from_pretrained re-ties it."""
    config = model.config
    state = {k: v.detach().float() for k, v in model.state_dict().items() if k != _LM_HEAD}
    if arch is GPT_NEO:
        if config.qkv_bias:
            _fold_qkv_bias(state, config)
        _scale_queries(state, config, 1 / math.sqrt(config.d_head))
    elif not config.qkv_bias:  # Conv1D always has a bias
        for i in range(config.n_layer):
            state[f"h.{i}.attn.c_attn.bias"] = torch.zeros(3 * config.d_model)
    out = {}
    for g, keys, conv1d in arch.keys(config.n_layer):
        for k, part in zip(keys, state[g].chunk(len(keys))):
            out[_PREFIX + k] = (part.t() if conv1d else part).contiguous()
    return out


def _scale_queries(state: dict[str, torch.Tensor], config: GPTConfig, factor: float) -> None:
    for i in range(config.n_layer):
        w = state[f"h.{i}.attn.c_attn.weight"]
        state[f"h.{i}.attn.c_attn.weight"] = torch.cat([w[: config.d_model] * factor, w[config.d_model :]])


def _fold_qkv_bias(state: dict[str, torch.Tensor], config: GPTConfig) -> None:
    """Remove q/k/v biases GPT-Neo lacks, exactly: the k bias adds the same score to every key of a
    query (softmax ignores it) and, as attention weights sum to 1, the v bias passes straight
    through to the output projection's bias."""
    for i in range(config.n_layer):
        b_q, _, b_v = state.pop(f"h.{i}.attn.c_attn.bias").split(config.d_model)
        if b_q.any():
            raise GptlabError(
                f"layer {i} has a non-zero query bias, which GPT-Neo cannot represent;"
                " train models with local attention with qkv_bias false to export them"
            )
        proj = f"h.{i}.attn.c_proj"
        state[f"{proj}.bias"] = state[f"{proj}.bias"] + state[f"{proj}.weight"] @ b_v
