"""What a run trains, set up before the loop starts: a `Setup` made by a `prepare` function. Pretraining's is
here (the data, tokenizer, a model from a preset with the paper's recipe, next-token prediction);
fine-tuning's is in gptlab.finetune."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gptlab.checkpoint.io import check_vocab
from gptlab.data import build_corpus, split_documents
from gptlab.data.shards import is_shards_dir
from gptlab.errors import GptlabError
from gptlab.language_model import generate
from gptlab.model import GPT, PRESETS, GPTConfig, preset
from gptlab.model.config import non_embedding_params
from gptlab.train import distributed
from gptlab.train.checkpointing import Resumed
from gptlab.train.config import TrainConfig
from gptlab.train.objective import NextTokenPrediction, Objective
from gptlab.train.resume import check_resumable
from gptlab.train.tokenizers import resolve_tokenizer


@dataclass
class Setup:
    """What a run trains, made by a `prepare` function: the loop needs nothing else."""

    config: TrainConfig
    """The run's settings with every default resolved: what checkpoints record and resume checks."""
    model: torch.nn.Module
    tokenizer: Any
    objective: Objective
    summary: str
    """One line describing the run, shown when it starts."""
    label: str
    """What the loss plot's title calls the data."""
    tokens_per_item: int | None = None
    """Tokens in one training item (a window), for tokens/s; None logs items/s."""
    sample: Callable[[torch.nn.Module], str] | None = None
    """Text sampled at each evaluation to show progress."""
    data: dict[str, str] = field(default_factory=dict)
    """The training data's fingerprint (train.fingerprint), which `run` fills in and checkpoints keep."""


Prepare = Callable[[TrainConfig, distributed.Runtime, "Resumed | None"], Setup]


def model_config(config: TrainConfig, vocab_size: int) -> GPTConfig:
    """The preset `config.model` with its overrides, a context of seq_len and room for `vocab_size` tokens."""
    overrides = dict(config.model_overrides)
    base = preset(config.model)
    seq_len = config.seq_len or overrides.get("n_ctx") or base.n_ctx
    overrides.setdefault("n_ctx", seq_len)
    overrides["vocab_size"] = max(vocab_size, overrides.get("vocab_size", 0))
    result = base.replace(**overrides)
    if seq_len > result.n_ctx:
        raise GptlabError(f"seq_len {seq_len} is longer than the model's context n_ctx {result.n_ctx}")
    return result


def with_paper_defaults(config: TrainConfig, seq_len: int) -> TrainConfig:
    """Fill learning rate and batch size left unset from the preset's paper values (GPT-3 Table 2.1)."""
    paper = PRESETS[config.model]
    batch = config.batch_size or (max(1, paper.batch_tokens // seq_len) if paper.batch_tokens else 12)
    return dataclasses.replace(config, lr=config.lr or paper.lr or 1e-3, batch_size=batch)


def prepare_pretraining(config: TrainConfig, runtime: distributed.Runtime, resumed: Resumed | None) -> Setup:
    """Next-token prediction on the documents or token shards of `config.data`."""
    if not config.data:
        raise GptlabError("no training data: give files, folders, JSONL or token shards to train on")
    show = config.progress and runtime.is_main
    if resumed:  # refuse changed settings before the data is read
        check_resumable(with_paper_defaults(config, config.seq_len or resumed.lm.model.config.n_ctx), resumed)
    texts = not any(is_shards_dir(path) for path in config.data)
    split = split_documents(config.data, config.val_fraction, config.seed) if texts else None
    tokenizer = resumed.lm.tokenizer if resumed else resolve_tokenizer(config, Path(config.out), show, split)
    corpus = build_corpus(config.data, tokenizer, config.val_fraction, config.seed, show, split)
    model = resumed.lm.model if resumed else GPT(model_config(config, tokenizer.vocab_size))
    check_vocab(model.config, tokenizer, "vocab_size", strict=True)  # refused now, not at the first save
    mcfg = model.config
    seq_len = config.seq_len or mcfg.n_ctx
    if seq_len > mcfg.n_ctx:
        raise GptlabError(f"seq_len {seq_len} is longer than the checkpoint's context n_ctx {mcfg.n_ctx}")
    config = with_paper_defaults(config, seq_len)
    objective = NextTokenPrediction(corpus.train, corpus.val, seq_len, config.seed, config.eval_windows, tokenizer.token_bytes())
    summary = (
        f"model {config.model}: {model.num_params() / 1e6:.2f}M parameters with a {mcfg.vocab_size:,}-token embedding "
        f"({non_embedding_params(mcfg) / 1e6:.2f}M without embeddings), {mcfg.n_layer} layers, d_model {mcfg.d_model}, "
        f"context {seq_len}; {len(corpus.train):,} train / {len(corpus.val):,} val tokens; vocab {tokenizer.vocab_size}"
    )
    sample = (lambda model: _sample(model, tokenizer, config)) if config.sample_tokens else None
    return Setup(config, model, tokenizer, objective, summary, f"{config.model} on {_data_label(config.data)}"[:90],
                 seq_len, sample)


def _data_label(paths: list[str]) -> str:
    """What a plot title calls the data: the path, or how many paths and the folder they share."""
    if len(paths) <= 2:
        return ", ".join(paths)
    return f"{len(paths)} inputs under {os.path.commonpath([os.path.abspath(p) for p in paths])}"


def _sample(model: GPT, tokenizer, config: TrainConfig) -> str:
    prompt_tokens = len(tokenizer.encode(config.sample_prompt)) or 1
    room = model.config.n_ctx - prompt_tokens
    if room < 1:
        return ""
    return generate(model, tokenizer, config.sample_prompt, max_new_tokens=min(config.sample_tokens, room),
                    temperature=0.8, top_k=200, seed=config.seed)
