"""`gptlab quickstart`: the whole pipeline in a few minutes on the Python standard library's own source.

Every machine with Python has this corpus, so the first run needs no download: train a BPE tokenizer
on it, pretrain a small GPT on the CPU within a time budget, report validation bits per byte, show
samples, and leave a checkpoint that `gptlab generate` accepts. The recipe is the packaged `quickstart`.
"""

from __future__ import annotations

import argparse
import shlex

from gptlab.cli.options import add_settings, given
from gptlab.recipes.quickstart import QuickstartConfig


def register(verbs: argparse._SubParsersAction) -> None:
    parser = verbs.add_parser(
        "quickstart",
        help="train a tokenizer and a small GPT on Python's standard library in a few minutes (the main job)",
        description=(
            "Train a byte-level BPE tokenizer and a small GPT on the .py files of this Python's standard library "
            "(split into train/validation by file), on the CPU, within --minutes, with the packaged recipe "
            "`quickstart` (`gptlab train quickstart --data DIR` runs it on other text). Ends with validation bits "
            "per byte, samples, and the checkpoint and loss-plot paths."
        ),
    )
    add_settings(parser, QuickstartConfig)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    import gptlab
    from gptlab.cli.train import resumably

    config = QuickstartConfig(**given(args, QuickstartConfig))
    print(
        f"gptlab quickstart: a {config.vocab_size}-token BPE, then {config.model} for {config.minutes:g} minutes on "
        "the CPU, on Python's standard library (train/validation split by file)"
    )
    result = resumably(gptlab.quickstart, config)
    print(f"done: {result.step} steps")
    if result.val_bpb is not None:
        print(f"validation: {result.val_bpb:.3f} bits per byte ({result.val_loss:.3f} nats per token)")
    for sample in result.samples:
        print("sample (prompt 'def '):\n" + "def " + sample)
    print(f"checkpoint: {result.final}\nloss plot:  {result.out / 'loss.png'}")
    print(f"next:       gptlab generate {shlex.quote(str(result.final))} --prompt 'import os' --max-new-tokens 100")
