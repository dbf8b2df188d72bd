"""The one training loop (`run_loop`), with the GPT-3 recipe, and pretraining set up for it.

A run is a `prepare` function that builds the model, tokenizer and `Objective` (train.objective),
handed to `run`: pretraining here, fine-tuning in gptlab.finetune. Everything that decides what happens at step N (weights, optimizer moments, learning rate, data
cursor, RNG) is in the checkpoint, so a resumed run repeats the uninterrupted one exactly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from gptlab import atomic, checkpoint, threads
from gptlab.checkpoint.io import check_vocab
from gptlab.checkpoint.sharded import SHARDS_DIR, read_weights
from gptlab.data import Document, Split, build_corpus, iter_documents, split_documents
from gptlab.data.shards import is_shards_dir, tokenizer_dir
from gptlab.device import bf16_is_fast, keep_freed_memory
from gptlab.errors import GptlabError, Interrupted
from gptlab.language_model import generate
from gptlab.model import GPT, PRESETS, GPTConfig, preset
from gptlab.scale.shapes import non_embedding_params
from gptlab.tokenizer import CharTokenizer, byte_tokenizer, load_tokenizer, train_tokenizer_on_texts
from gptlab.train import distributed, run_dir
from gptlab.train.checkpointing import (
    Resumed, checkpoints, discard_partial, load_latest, save_checkpoint, save_sharded_checkpoint, step_dir, write_sharded,
)
from gptlab.train.config import TrainConfig
from gptlab.train.fingerprint import check_same_data, fingerprint
from gptlab.train.metrics import MetricsLog, plot_loss
from gptlab.train.objective import Forward, NextTokenPrediction, Objective
from gptlab.train.optim import batch_size_at, build_optimizer, lr_at, lr_at_time


_BUDGET_MARKS = 5
"""Under --max-minutes, a run also evaluates and saves each time another fifth of its budget is spent."""
_REPLOT_SECONDS = 30.0
"""Least time between redraws of loss.png during a run: one costs ~0.1 s, the first ~1 s (matplotlib)."""


@dataclass
class TrainResult:
    out: Path
    final: Path
    step: int
    val: dict[str, float]
    """The last validation metrics (val_loss, val_bpb for language modelling)."""
    samples: list[str]

    @property
    def val_loss(self) -> float | None:
        return self.val.get("val_loss")

    @property
    def val_bpb(self) -> float | None:
        return self.val.get("val_bpb")


def resolve_tokenizer(config: TrainConfig, out: Path, progress: bool, split: Split | None = None):
    """The tokenizer `config.tokenizer` names; `bpe:N` is fitted to the training split alone.

    Fitting it to validation text too would let it learn that text's words as single tokens and
    flatter validation loss (by ~0.2 bits per byte on tinyshakespeare at 2k tokens). Token shards
    bring their own tokenizer, which is the default for them.
    """
    spec = config.tokenizer
    shard_dirs = [path for path in config.data if is_shards_dir(path)]
    if shard_dirs:
        return _shards_tokenizer(shard_dirs, spec)
    if spec is None or spec == "byte":
        return byte_tokenizer()
    if spec == "char":  # every character of the data, so validation text never meets an unknown one
        documents = split.train + split.val if split else iter_documents(config.data)
        return CharTokenizer.from_texts(doc.text for doc in documents)
    if spec.startswith("bpe:"):
        try:
            size = int(spec[4:])
        except ValueError:
            raise GptlabError(f"tokenizer {spec!r}: expected bpe:N with N the vocabulary size") from None
        split = split or split_documents(config.data, config.val_fraction, config.seed)
        documents = _spread_sample(split.train, config.tokenizer_sample_mb)
        tokenizer = train_tokenizer_on_texts((doc.text for doc in documents), size, progress=progress)
        tokenizer.save(out / "tokenizer")
        return tokenizer
    return _tokenizer_dir(spec)


def _tokenizer_dir(spec: str):
    if not Path(spec).is_dir():
        raise GptlabError(f"tokenizer must be byte, char, bpe:N or a tokenizer directory; {spec!r} is none of these")
    return load_tokenizer(spec)


def _shards_tokenizer(directories: list[str], spec: str | None):
    """The tokenizer the shards' index names; one given in `spec` must be that same tokenizer.

    Shards that name none (written by `write_shards` without one) take `spec`, else bytes; the
    corpus reader still checks their ids against it.
    """
    named = [(directory, tokenizer_dir(directory)) for directory in directories]
    made_with = [(directory, load_tokenizer(path)) for directory, path in named if path is not None]
    for directory, other in made_with[1:]:
        if not _same_tokenizer(made_with[0][1], other):
            raise GptlabError(f"token shards in {made_with[0][0]} and {directory} were made with different tokenizers")
    given = None
    if spec is not None:
        if spec == "char" or spec.startswith("bpe:"):
            raise GptlabError(f"tokenizer {spec!r} cannot be fitted to token shards; they bring their own tokenizer")
        given = byte_tokenizer() if spec == "byte" else _tokenizer_dir(spec)
    if not made_with:
        return given or byte_tokenizer()
    directory, theirs = made_with[0]
    if given is not None and not _same_tokenizer(given, theirs):
        raise GptlabError(
            f"--tokenizer {spec} is not the tokenizer the token shards in {directory} were made with;"
            " leave --tokenizer out to use theirs"
        )
    return theirs


def _same_tokenizer(a, b) -> bool:
    """Same ids for the same byte strings, special tokens included."""
    return (
        a.vocab_size == b.vocab_size
        and a.eot_id == b.eot_id
        and all(a.decode_bytes([i]) == b.decode_bytes([i]) for i in range(a.vocab_size))
    )


def _spread_sample(documents: list[Document], megabytes: float | None) -> list[Document]:
    """Every k-th document, k chosen so they come to about `megabytes` (all of them when None)."""
    if megabytes is None:
        return documents
    total = sum(len(doc.text) for doc in documents)  # characters: close enough to bytes for a budget
    stride = max(1, math.ceil(total / (megabytes * 1e6)))
    return documents[::stride]


def model_config(config: TrainConfig, vocab_size: int) -> GPTConfig:
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


def _trains_in_bf16(config: TrainConfig, runtime: distributed.Runtime) -> bool:
    """bf16 autocast when asked for, or under `auto` where the device runs it natively faster. Every process
    takes the same answer: under `auto` each probes its own CPU, and a timing could differ between them."""
    if config.precision != "auto":
        return config.precision == "bf16"
    return runtime.any(bf16_is_fast(runtime.device))


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


def train(config: TrainConfig) -> TrainResult:
    """Pretrain, or fine-tune as a language model, on `config.data`."""
    return run(config, prepare_pretraining)


def run(config: TrainConfig, prepare: Prepare) -> TrainResult:
    """Run what `prepare` sets up in `config.out`, which no other run may use meanwhile.

    The first SIGINT or SIGTERM ends the run after the current step with a checkpoint saved
    (raising `Interrupted`); a second one quits at once.
    """
    runtime = distributed.start(config.device)
    try:
        with run_dir.locked(Path(config.out)) if runtime.is_main else contextlib.nullcontext():
            with run_dir.stop_on_signal() as stop:
                config, resumed = _resumed(config, runtime)
                data = fingerprint(config.inputs())
                if resumed:  # before the data is read and tokenised
                    check_same_data(resumed.state.get("data"), data, config.out)
                threads.use_threads(config.threads)
                torch.manual_seed(config.seed)  # weights drawn in `prepare`, then dropout; a resume restores its RNG
                setup = dataclasses.replace(prepare(config, runtime, resumed), data=data)
                if resumed:
                    check_resumable(setup.config, resumed)
                    if runtime.is_main:
                        print(f"resuming {config.out} from step {resumed.state['step']} ({resumed.path.name})", file=sys.stderr)
                        if warning := _schedule_change(setup.config, resumed):
                            print(warning, file=sys.stderr)
                return run_loop(setup, runtime, stop, resumed)
    finally:
        runtime.shutdown()


def _resumed(config: TrainConfig, runtime: distributed.Runtime) -> tuple[TrainConfig, Resumed | None]:
    """The settings to run with and, when resuming, the newest checkpoint: settings not given keep the run's own."""
    out = Path(config.out)
    if runtime.is_main:  # it holds the run directory's lock, so no save of another run is under way
        discard_partial(out)
    if not config.resume:
        if checkpoints(out):
            raise GptlabError(f"{out} already holds checkpoints of a run; pass --resume to continue it or choose another --out")
        return config, None
    resumed = load_latest(out, "cpu")
    if resumed is None:
        config = dataclasses.replace(config, resume=False)  # a new run after all, checked as one
        if runtime.is_main:
            print(f"warning: nothing to resume in {out}; starting a new run", file=sys.stderr)
        return config, None
    saved = resumed.state.get("config")
    return (config.resumed_from(json.loads(saved)) if saved else config), resumed


# Settings a resumed run may change: they decide how a run is watched and run, not what it computes.
_RESUMABLE_CHANGES = frozenset({
    "out", "resume", "progress", "device", "threads", "tensorboard", "log_every", "eval_every", "eval_windows",
    "save_every", "keep_checkpoints", "sample_tokens", "sample_prompt", "compile", "activation_checkpointing",
    "micro_batch_size", "distributed", "checkpoint_format", "on_nan", "max_steps", "max_minutes",
})


def check_resumable(config: TrainConfig, resumed: Resumed) -> None:
    """Refuse to continue a run under settings other than those it was trained with.

    `config` is resolved (defaults filled). Only the keys in _RESUMABLE_CHANGES may differ; max_steps may change
    (the decay then stretches or shrinks to the new end, unless lr_decay_steps was set: `_schedule_change` warns),
    and max_minutes may grow (the decay then stretches over the larger budget).
    """
    saved_json = resumed.state.get("config")
    if saved_json is None:
        return
    saved = json.loads(saved_json)
    current = config.to_dict()
    if current.get("tokenizer", "") is None:  # not given: the checkpoint's own tokenizer is used
        current.pop("tokenizer")
    differ = [key for key in current if key in saved and key not in _RESUMABLE_CHANGES and current[key] != saved[key]]
    if differ:
        changes = ", ".join(f"{key} {saved[key]!r} -> {current[key]!r}" for key in differ)
        raise GptlabError(
            f"--resume with settings that differ from the run in {config.out} ({changes}); "
            "resume with the run's own settings, or start a new run with another --out"
        )
    step = resumed.state["step"]
    spent = resumed.state.get("elapsed", 0.0) / 60
    if config.max_minutes is not None and spent >= config.max_minutes:
        raise GptlabError(
            f"the run in {config.out} has spent {spent:.1f} of its {config.max_minutes:g} minutes; pass a larger "
            "--max-minutes to train it further"
        )
    if config.max_steps <= step:
        raise GptlabError(
            f"the run in {config.out} is already at step {step}; pass --max-steps above {step} to train it further"
        )


def _schedule_change(config: TrainConfig, resumed: Resumed) -> str | None:
    """A warning when a resume lays the decay out for another max_steps than the run's: the learning rate then
    jumps (a smaller max_steps compresses the decay, a larger one stretches it)."""
    saved = json.loads(resumed.state.get("config", "{}")).get("max_steps")
    if config.max_minutes is not None or config.lr_decay_steps is not None or saved in (None, config.max_steps):
        return None
    return (
        f"warning: max_steps {saved} -> {config.max_steps}: the learning-rate schedule was laid out for {saved} steps; "
        f"its decay now ends at step {config.max_steps}"
    )


def prepare_pretraining(config: TrainConfig, runtime: distributed.Runtime, resumed: Resumed | None) -> Setup:
    """Next-token prediction on the documents or token shards of `config.data`."""
    if not config.data:
        raise GptlabError("no training data: pass --data PATH (files, folders, JSONL or token shards)")
    show = config.progress and runtime.is_main
    if resumed:  # refuse changed settings before the data is read
        check_resumable(with_paper_defaults(config, config.seq_len or resumed.lm.model.config.n_ctx), resumed)
    texts = not any(is_shards_dir(path) for path in config.data)
    split = split_documents(config.data, config.val_fraction, config.seed) if texts else None
    tokenizer = resumed.lm.tokenizer if resumed else resolve_tokenizer(config, Path(config.out), show, split)
    corpus = build_corpus(config.data, tokenizer, config.val_fraction, config.seed, show, split)
    model = resumed.lm.model if resumed else GPT(model_config(config, tokenizer.vocab_size))
    check_vocab(model.config, tokenizer, "--vocab-size", strict=True)  # refused now, not at the first save
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


def run_loop(setup: Setup, runtime: distributed.Runtime, stop: run_dir.StopRequest, resumed: Resumed | None) -> TrainResult:
    """The one training loop: every objective gets the same schedule, checkpoints, resume and scale-out."""
    config, model, tokenizer, objective = setup.config, setup.model, setup.tokenizer, setup.objective
    out = Path(config.out)
    device = runtime.device
    show = config.progress and runtime.is_main
    model.to(device).train()
    if device.type == "cpu":
        keep_freed_memory()
    model.activation_checkpointing = config.activation_checkpointing
    peak = config.lr
    micro = distributed.micro_batch(config.batch_size, config.micro_batch_size, runtime.world_size)
    wrapped = distributed.wrap(model, runtime, config.distributed)
    optimizer = build_optimizer(model, config, peak)
    sharded = config.checkpoint_format == "sharded" or (
        config.checkpoint_format == "auto" and config.distributed == "fsdp" and runtime.distributed
    )
    step, best = 0, None
    if resumed:
        state = resumed.state
        if resumed.sharded:  # weights too: each process reads its part, resharded for this process count
            distributed.load_shards(model, optimizer, resumed.path / SHARDS_DIR)
        else:
            distributed.load_optimizer_state(model, optimizer, state["optimizer"])
        objective.load_state_dict(state["sampler"])
        step, best = state["step"], state.get("best")
        runtime.restore_rng(state["rng"])
    forward = _one_line_compile_errors(torch.compile(wrapped) if config.compile else wrapped)
    bf16 = _trains_in_bf16(config, runtime)
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    metrics = MetricsLog(out / "metrics.jsonl", step, out / "tensorboard" if config.tensorboard else None) if runtime.is_main else None
    if runtime.is_main:  # the settings, and the shape of the model they train (for a fine-tune, the base's)
        recorded = {**config.to_dict(), "model_config": model.config.to_dict()}
        atomic.write_text(out / "train_config.json", json.dumps(recorded, indent=2) + "\n")
        tqdm.write(f"{setup.summary}; {runtime.world_size} process(es) on {device}, {'bf16 autocast' if bf16 else 'fp32'}")

    budget = config.max_minutes * 60 if config.max_minutes is not None else None
    spent = resumed.state.get("elapsed", 0.0) if resumed else 0.0
    started = time.perf_counter()

    def elapsed() -> float:
        return spent + time.perf_counter() - started

    progress = spent / budget if budget else 0.0  # share of the time budget spent, the same in every process
    marks = int(progress * _BUDGET_MARKS)  # under a budget, also evaluate and save at each fifth of it
    if budget:  # the bar counts seconds of the budget, so its ETA is the end of the run
        bar = tqdm(total=round(budget), initial=round(spent), disable=not show, dynamic_ncols=True,
                   bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} s [{elapsed}<{remaining}{postfix}]")
    else:
        bar = tqdm(total=config.max_steps, initial=step, disable=not show, unit="step", dynamic_ncols=True)
    val: dict[str, float] = {}
    samples: list[str] = []
    items_seen = sum(batch_size_at(s, config, micro * runtime.world_size) for s in range(step))
    window_items, window_start = 0, time.perf_counter()
    plotted_at = window_start
    per_item, rate_name = setup.tokens_per_item or 1, "tokens_per_s" if setup.tokens_per_item else "items_per_s"
    rate_unit = rate_name.removesuffix("_per_s") + "/s"
    slowdown = threads.SlowdownWatch(lambda message: tqdm.write(message, file=sys.stderr), rate_unit)

    def save(step: int) -> Path | None:
        state = {"step": step, "best": best, "sampler": objective.state_dict(), "rng": runtime.rng_states(),
                 "config": json.dumps(config.to_dict()), "elapsed": elapsed(), "data": setup.data}
        if sharded:
            return save_sharded_checkpoint(out, step, model, optimizer, tokenizer, state, config.keep_checkpoints, runtime)
        weights = distributed.full_weights(model)
        state["optimizer"] = distributed.full_optimizer_state(model, optimizer)
        path = save_checkpoint(out, step, model, tokenizer, state, config.keep_checkpoints, weights) if runtime.is_main else None
        runtime.barrier()
        return path

    last = False
    while not last:
        lr = lr_at_time(step, progress, config, peak) if budget else lr_at(step, config, peak)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = batch_size_at(step, config, micro * runtime.world_size)
        items = objective.sample(batch)
        share = batch // runtime.world_size
        mine = items[runtime.rank * share : (runtime.rank + 1) * share]
        n_micro = share // micro
        loss_sum = 0.0
        for i in range(n_micro):
            sync = i == n_micro - 1 or not runtime.distributed or config.distributed == "fsdp"
            with contextlib.nullcontext() if sync else wrapped.no_sync():
                loss = objective.loss(forward, mine[i * micro : (i + 1) * micro], autocast, device) / n_micro
                loss.backward()
            loss_sum += loss.item()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip, foreach=True)
        loss_value = runtime.mean(loss_sum)
        if not (math.isfinite(loss_value) and math.isfinite(float(grad_norm))):
            optimizer.zero_grad(set_to_none=True)
            if config.on_nan == "stop":
                saved = checkpoints(out)
                where = f"; the last good checkpoint is {saved[0]}" if saved else ""
                raise GptlabError(
                    f"loss became {loss_value} at step {step + 1} (lr {lr:.3g}); stopped without saving{where}. "
                    "Lower --lr or set on_nan: skip"
                )
            if runtime.is_main:
                tqdm.write(f"warning: non-finite loss at step {step + 1}; skipping the update", file=sys.stderr)
        else:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        threads.tick(device)
        step += 1
        items_seen += batch
        window_items += batch
        if budget:
            progress = runtime.mean(elapsed()) / budget
            bar.update(min(round(progress * budget), bar.total) - bar.n)
        else:
            bar.update(1)
        last = step >= config.max_steps or progress >= 1
        at_mark = int(progress * _BUDGET_MARKS) > marks
        marks = int(progress * _BUDGET_MARKS)

        if runtime.is_main and (step % config.log_every == 0 or last):
            rate = window_items * per_item / (time.perf_counter() - window_start)
            row = {"step": step, "loss": loss_value, "lr": lr, rate_name: rate, "batch_size": batch, "epoch": objective.epoch}
            if setup.tokens_per_item:
                row["tokens"] = items_seen * per_item
            metrics.log(row)
            slowdown.observe(rate)
            bar.set_postfix(**({"step": step} if budget else {}), loss=f"{loss_value:.4f}", lr=f"{lr:.2e}", **{rate_unit: f"{rate:,.0f}"})
            window_items, window_start = 0, time.perf_counter()

        if step % config.eval_every == 0 or last or at_mark:
            model.eval()  # in every process: an FSDP forward gathers the weights from all of them
            val = objective.validate(model, autocast, device, micro)
            if val and setup.sample:
                samples = [setup.sample(model)]
            model.train()
            if val and objective.best:
                best = _keep_best(out, objective.best, best, val, step, model, tokenizer, runtime, sharded)
            if val and runtime.is_main:
                metrics.log({"step": step, **val})
                if samples:
                    with (out / "samples.txt").open("a") as f:
                        f.write(f"--- step {step}\n{samples[0]}\n")
                shown = ", ".join(f"{k} {v:.4f}" for k, v in val.items())
                tqdm.write(f"step {step}: {shown}" + (f" | sample: {samples[0][:200]!r}" if samples else ""))
                if time.perf_counter() - plotted_at >= _REPLOT_SECONDS:
                    plot_loss(metrics.rows, out / "loss.png", setup.label)
                    plotted_at = time.perf_counter()
            window_items, window_start = 0, time.perf_counter()  # evaluation time is not training throughput

        stopping = runtime.any(bool(stop)) and not last
        if step % config.save_every == 0 or last or at_mark or stopping:
            saved = save(step)
            window_items, window_start = 0, time.perf_counter()
            if stopping:
                bar.close()
                if runtime.is_main:
                    if metrics.rows:
                        plot_loss(metrics.rows, out / "loss.png", setup.label)
                    metrics.close()
                name = signal.Signals(stop.signum or signal.SIGTERM).name
                raise Interrupted(f"stopped by {name} at step {step}; saved {saved or out}", stop.signum or signal.SIGTERM)
    bar.close()

    final = out / "final"  # from the sharded checkpoint of this last step when there is one
    _save_full(final, model, tokenizer, {"training": {"step": step, **val}}, runtime, step_dir(out, step) if sharded else None)
    if runtime.is_main:
        if metrics.rows:
            plot_loss(metrics.rows, out / "loss.png", setup.label)
        metrics.close()
    runtime.barrier()
    return TrainResult(out, final, step, val, samples)


def _keep_best(out: Path, rule: tuple[str, str], best: float | None, val: dict[str, float], step: int,
               model: torch.nn.Module, tokenizer, runtime: distributed.Runtime, sharded: bool) -> float | None:
    """Save `<out>/best` when `val` beats `best` by `rule` (metric, "min"/"max"); the best value so far.

    With sharded checkpoints the weights pass through a sharded copy, so that no process gathers them.
    """
    name, goal = rule
    if best is not None and not (val[name] > best if goal == "max" else val[name] < best):
        return best
    staged = write_sharded(out / ".best.sharded", model, tokenizer, distributed.sharded_state(model), runtime) if sharded else None
    _save_full(out / "best", model, tokenizer, {"training": {"step": step, **val}}, runtime, staged)
    if staged and runtime.is_main:
        shutil.rmtree(staged)
    return val[name]


def _save_full(path: Path, model: torch.nn.Module, tokenizer, metadata: dict[str, Any], runtime: distributed.Runtime,
               shards: Path | None) -> None:
    """An ordinary single-file checkpoint of `model`: when `shards` names a sharded checkpoint of it, rank 0 reads
    the weights from its files (no collective, no optimizer state), else all processes gather them in rank 0."""
    if shards is None:
        weights = distributed.full_weights(model)
    else:
        weights = read_weights(shards) if runtime.is_main else {}
    if runtime.is_main:
        checkpoint.save(path, model, tokenizer, metadata=metadata, weights=weights)


def _data_label(paths: list[str]) -> str:
    """What a plot title calls the data: the path, or how many paths and the folder they share."""
    if len(paths) <= 2:
        return ", ".join(paths)
    return f"{len(paths)} inputs under {os.path.commonpath([os.path.abspath(p) for p in paths])}"


def _one_line_compile_errors(forward: Forward) -> Forward:
    """`forward`, with a torch.compile failure (e.g. no C++ compiler for inductor) as one line."""

    def call(*args: Any, **kwargs: Any) -> torch.Tensor:
        try:
            return forward(*args, **kwargs)
        except torch._dynamo.exc.TorchDynamoException as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise GptlabError(f"torch.compile failed ({reason[:200]}); run without --compile") from None

    return call


def _sample(model: GPT, tokenizer, config: TrainConfig) -> str:
    prompt_tokens = len(tokenizer.encode(config.sample_prompt)) or 1
    room = model.config.n_ctx - prompt_tokens
    if room < 1:
        return ""
    return generate(model, tokenizer, config.sample_prompt, max_new_tokens=min(config.sample_tokens, room),
                    temperature=0.8, top_k=200, seed=config.seed)
