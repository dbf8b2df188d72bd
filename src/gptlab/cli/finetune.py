"""`gptlab finetune`: adapt a pretrained checkpoint to a labelled task (GPT-1) or to new text (`--task lm`)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from gptlab.cli.options import add_settings


def register(verbs: argparse._SubParsersAction) -> None:
    from gptlab.finetune.config import FinetuneConfig

    parser = verbs.add_parser(
        "finetune",
        help="fine-tune a checkpoint on a task, GPT-1 style (classification, entailment, similarity, "
        "multiple choice) or as a language model",
        description=(
            "GPT-1 supervised fine-tuning: the rows of --train (JSONL) are laid out as [s; text; e] "
            "(classification: text, label), [s; premise; $; hypothesis; e] (entailment), both orderings of "
            "[s; a; $; b; e] (similarity: text_a, text_b, label) or [s; context; $; choice; e] per choice "
            "(multiple_choice: context, choices, label); a linear head on e's final state is trained with "
            "the task loss plus lm_coef times the LM loss. --task lm continues next-token training on text. "
            "Every option is also a key of --config YAML. Validation accuracy each epoch; the best model is "
            "kept in OUT/best. Resumable with --resume, like `gptlab train`."
        ),
    )
    parser.add_argument("checkpoint", nargs="?", default=argparse.SUPPRESS, help="pretrained gptlab checkpoint")
    parser.add_argument("--config", type=Path, help="YAML file with any of the options below")
    add_settings(
        parser.add_argument_group("fine-tuning"), FinetuneConfig,
        skip=("checkpoint", "data", "tokenizer", "tokenizer_sample_mb", "model"),
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    import gptlab
    from gptlab.cli.train import overrides, resumably
    from gptlab.finetune.config import FinetuneConfig
    from gptlab.train.config import build_config

    result = resumably(gptlab.finetune, build_config(args.config, overrides(args), FinetuneConfig))
    if os.environ.get("RANK", "0") != "0":
        return
    shown = ", ".join(f"{k} {v:.4f}" for k, v in result.val.items())
    if shown:
        print(f"validation after {result.step} steps: {shown}")
    best = result.out / "best"
    print(f"checkpoint: {result.final}" + (f"\nbest:       {best}" if best.is_dir() else ""))
    print(f"loss plot:  {result.out / 'loss.png'}\nmetrics:    {result.out / 'metrics.jsonl'}")
