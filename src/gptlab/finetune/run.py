"""`finetune`: a pretrained checkpoint adapted to a task through the one training loop (train.trainer).

GPT-1 tasks grow the model and tokenizer by the s/$/e tokens and put a linear head on e's final
state (finetune.heads); `lm` continues next-token training on the user's text. Either way the run
has what pretraining has: progress, metrics, loss plot, atomic checkpoints, exact resume.
"""

from __future__ import annotations

import dataclasses
import math
import sys

from gptlab.language_model import load
from gptlab.data import build_corpus, iter_documents, split_documents
from gptlab.errors import GptlabError
from gptlab.finetune.config import FinetuneConfig
from gptlab.finetune.heads import add_special_tokens, freeze_backbone
from gptlab.finetune.objective import TaskObjective
from gptlab.finetune.tasks import encode, label_set, read_rows, split_holdout
from gptlab.model.heads import TaskModel
from gptlab.model.task import TaskSpec
from gptlab.tokenizer import GPT1_SPECIAL_TOKENS
from gptlab.train import distributed
from gptlab.train.checkpointing import Resumed
from gptlab.train.objective import NextTokenPrediction
from gptlab.train.prepare import Setup
from gptlab.train.trainer import TrainResult, run


def finetune(config: FinetuneConfig) -> TrainResult:
    return run(config, prepare_finetuning)


def prepare_finetuning(config: FinetuneConfig, runtime: distributed.Runtime, resumed: Resumed | None) -> Setup:
    base = resumed.lm if resumed else load(config.checkpoint, device="cpu")
    if base.tokenizer is None:
        raise GptlabError(f"{config.checkpoint} has no tokenizer to encode the training data with")
    n_ctx = base.model.config.n_ctx
    if config.seq_len is not None and config.seq_len > n_ctx:  # refused before the data is read
        raise GptlabError(f"seq_len {config.seq_len} is longer than the checkpoint's context n_ctx {n_ctx}")
    if config.task == "lm":
        return _language_modelling(config, base, runtime)
    return _task(config, base, resumed is not None)


def _language_modelling(config: FinetuneConfig, base, runtime: distributed.Runtime) -> Setup:
    model, tokenizer = base.model, base.tokenizer
    if isinstance(model, TaskModel):
        raise GptlabError(f"{config.checkpoint} is fine-tuned for {model.spec.type}; task lm needs a language model")
    split = split_documents([config.train], 0.0 if config.valid else config.val_fraction, config.seed)
    if config.valid:
        split = dataclasses.replace(split, val=list(iter_documents([config.valid])))
    corpus = build_corpus([config.train], tokenizer, config.val_fraction, config.seed, config.progress and runtime.is_main, split)
    seq_len = config.seq_len or model.config.n_ctx
    config = _schedule(config, max(1, len(corpus.train) // seq_len))
    objective = NextTokenPrediction(corpus.train, corpus.val, seq_len, config.seed, config.eval_windows, tokenizer.token_bytes())
    summary = f"fine-tuning {config.checkpoint} as a language model on {len(corpus.train):,} tokens ({len(corpus.val):,} validation)"
    return Setup(config, model, tokenizer, objective, summary, f"LM fine-tuning on {config.train}"[:90], seq_len)


def _task(config: FinetuneConfig, base, resumed: bool) -> Setup:
    rows = read_rows(config.train)
    if config.valid:
        train_rows, val_rows = rows, read_rows(config.valid)
    else:
        train_rows, val_rows = split_holdout(rows, config.val_fraction, config.seed)
    if resumed:  # the checkpoint already holds the grown tokenizer and the head
        model, tokenizer = base.model, base.tokenizer
        if not isinstance(model, TaskModel) or model.spec.type != config.task:
            raise GptlabError(f"the checkpoint to resume in {config.out} is not a {config.task} model")
    else:
        if isinstance(base.model, TaskModel):
            raise GptlabError(f"{config.checkpoint} is already fine-tuned for {base.model.spec.type}; start from a language model")
        grown, tokenizer = add_special_tokens(base.model, base.tokenizer, GPT1_SPECIAL_TOKENS, config.seed)
        spec = TaskSpec.create(config.task, label_set(config.task, train_rows), tokenizer, config.clf_pdrop, config.lm_coef)
        model = TaskModel.from_backbone(grown, spec, config.seed)
    if config.trainable == "head":
        freeze_backbone(model)
    n_ctx = config.seq_len or model.config.n_ctx  # rows are cut to the training window
    train, val = encode(model.spec, tokenizer, train_rows, n_ctx), encode(model.spec, tokenizer, val_rows, n_ctx)
    if train.truncated or val.truncated:
        print(f"warning: {train.truncated + val.truncated} rows were cut to fit the context of {n_ctx} tokens", file=sys.stderr)
    config = _schedule(config, len(train.examples))
    objective = TaskObjective(train, val, model.spec, config.seed)
    labels = f"{len(model.spec.labels)} labels" if model.spec.labels else "choices"
    summary = (
        f"fine-tuning {config.checkpoint} for {config.task} ({labels}): {len(train.examples):,} training and "
        f"{len(val.examples):,} validation rows, {config.trainable} trainable, λ {model.spec.lm_coef}"
    )
    return Setup(config, model, tokenizer, objective, summary, f"{config.task} fine-tuning on {config.train}"[:90])


def _schedule(config: FinetuneConfig, items: int) -> FinetuneConfig:
    """Steps, warmup and evaluation interval from the epochs over `items` training items."""
    per_epoch = max(1, math.ceil(items / config.batch_size))
    max_steps = config.max_steps or max(1, round(config.epochs * per_epoch))
    return dataclasses.replace(
        config,
        max_steps=max_steps,
        warmup_steps=config.warmup_steps if config.warmup_steps is not None else math.ceil(config.warmup_fraction * max_steps),
        eval_every=config.eval_every or per_epoch,
        save_every=config.save_every or per_epoch,
    )
