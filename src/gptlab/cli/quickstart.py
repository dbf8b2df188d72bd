"""`gptlab quickstart`: the whole pipeline in a few minutes on the Python standard library's own source.

Every machine with Python has this corpus, so the first run needs no download: train a BPE tokenizer
on it, pretrain a small GPT on the CPU within a time budget, report validation bits per byte, show
samples, and leave a checkpoint that `gptlab generate` accepts.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from gptlab.cli.options import add_threads


TOKENIZER_SAMPLE_MB = 8.0  # enough text for a small BPE, trained in seconds
# The recipe, tuned for the best validation bits per byte in 5 minutes on 2 CPU cores (README: the main job).
# The run is compute-bound, so what counts is text learned per FLOP: a 1k vocabulary keeps the output layer
# cheap (4k: 0.15 bits/byte worse at equal time; 512: too few bytes per token), and 128-token windows take
# bf16's fast attention path.
VOCAB_SIZE, SEQ_LEN, BATCH_SIZE, LR = 1024, 128, 32, 5e-3


def register(verbs: argparse._SubParsersAction) -> None:
    parser = verbs.add_parser(
        "quickstart",
        help="train a tokenizer and a small GPT on Python's standard library in a few minutes (the main job)",
        description=(
            "Train a byte-level BPE tokenizer and a small GPT on the .py files of this Python's standard library "
            "(split into train/validation by file), on the CPU, within --minutes. Ends with validation bits per "
            "byte, samples, and the checkpoint and loss-plot paths."
        ),
    )
    parser.add_argument("--minutes", type=float, default=5.0, help="training time budget (default 5)")
    parser.add_argument("--out", type=Path, default=Path("runs/quickstart"), help="run directory (default runs/quickstart)")
    parser.add_argument("--model", default="mini", help="model preset (default mini)")
    parser.add_argument("--vocab-size", type=int, default=VOCAB_SIZE, help=f"BPE vocabulary (default {VOCAB_SIZE})")
    parser.add_argument("--seq-len", type=int, default=SEQ_LEN, help=f"training window in tokens (default {SEQ_LEN})")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help=f"sequences per step (default {BATCH_SIZE})")
    parser.add_argument("--lr", type=float, default=LR, help=f"peak learning rate (default {LR:g})")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--resume", action="store_true", help="continue an interrupted quickstart in --out")
    add_threads(parser)
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                        help="progress bars (default on); --no-progress hides the bars only, not the run's report")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from gptlab.cli.train import resumably
    from gptlab.train import build_config, train
    from gptlab.train.config import UNLIMITED_STEPS

    from gptlab.data.stdlib import stdlib_sources

    files = stdlib_sources()
    out = args.out
    print(f"gptlab quickstart: {len(files)} files of Python's standard library, {args.minutes:g} minutes on the CPU")
    settings = {
        "data": [str(f) for f in files], "tokenizer": f"bpe:{args.vocab_size}", "tokenizer_sample_mb": TOKENIZER_SAMPLE_MB,
        "model": args.model, "out": str(out), "seq_len": args.seq_len, "batch_size": args.batch_size, "lr": args.lr,
        "seed": args.seed, "eval_windows": 100, "sample_tokens": 120, "sample_prompt": "def ",
        "resume": args.resume, "progress": args.progress, "threads": args.threads,
    }
    # the budget alone paces the run: it evaluates and saves at each fifth of it, never by step count
    settings |= {"max_minutes": args.minutes, "warmup_steps": 50, "eval_every": UNLIMITED_STEPS, "save_every": UNLIMITED_STEPS}
    print(
        f"[1/2] a {args.vocab_size}-token BPE fitted to {TOKENIZER_SAMPLE_MB:g} MB of the training files, then "
        f"{args.model} for {args.minutes:g} minutes (train/validation split by file)"
    )
    result = resumably(train, build_config(None, settings))
    print(f"[2/2] done: {result.step} steps")
    if result.val_bpb is not None:
        print(f"validation: {result.val_bpb:.3f} bits per byte ({result.val_loss:.3f} nats per token)")
    for sample in result.samples:
        print("sample (prompt 'def '):\n" + "def " + sample)
    print(f"checkpoint: {result.final}\nloss plot:  {out / 'loss.png'}")
    print(f"next:       gptlab generate {shlex.quote(str(result.final))} --prompt 'import os' --max-new-tokens 100")
