"""`gptlab convert`: to and from Hugging Face GPT-2 / GPT-Neo checkpoint directories, and sharded training
checkpoints to ordinary ones."""

from __future__ import annotations

import argparse
from pathlib import Path

from gptlab.checkpoint.convert import FORMATS


def register(verbs: argparse._SubParsersAction) -> None:
    parser = verbs.add_parser(
        "convert",
        help="convert between Hugging Face (GPT-2, GPT-Neo) and gptlab checkpoints, or a sharded checkpoint to one file",
        description=(
            "Convert a checkpoint directory. --to gptlab reads a Hugging Face GPT-2 or GPT-Neo directory "
            "(config.json + model.safetensors or pytorch_model.bin, plus vocab.json/merges.txt). --to hf writes one "
            "that transformers loads with from_pretrained: GPT-2 for dense models, GPT-Neo for models with local "
            "attention. Tokenizer files travel with the weights. GPT-1 fine-tuned GPT-2 models keep their head: "
            "classification and entailment as GPT2ForSequenceClassification, multiple choice as GPT2DoubleHeadsModel. "
            "A sharded training checkpoint (an FSDP run's checkpoints/step_N, with dcp/) becomes an ordinary "
            "single-file one with --to gptlab, and converts to hf directly."
        ),
    )
    parser.add_argument("src", type=Path, help="checkpoint directory to read")
    parser.add_argument("dst", type=Path, help="directory to write")
    parser.add_argument("--to", choices=FORMATS, required=True, help="target format")
    parser.add_argument("--overwrite", action="store_true", help="replace dst if it already exists")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from gptlab.checkpoint.convert import convert

    out = convert(args.src, args.dst, args.to, overwrite=args.overwrite)
    print(f"wrote {args.to} checkpoint to {out}")
