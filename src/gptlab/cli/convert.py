"""`gptlab convert`: to and from Hugging Face GPT-2 / GPT-Neo checkpoint directories, sharded training
checkpoints to ordinary ones, and checkpoints to GGUF files for llama.cpp."""

from __future__ import annotations

import argparse
from pathlib import Path

from gptlab.checkpoint.convert import FORMATS, GGUF_TYPES


def register(verbs: argparse._SubParsersAction) -> None:
    parser = verbs.add_parser(
        "convert",
        help="convert between Hugging Face (GPT-2, GPT-Neo) and gptlab checkpoints, a sharded checkpoint to one file, or to GGUF",
        description=(
            "Convert a checkpoint directory. --to gptlab reads a Hugging Face GPT-2 or GPT-Neo directory "
            "(config.json + model.safetensors or pytorch_model.bin, plus vocab.json/merges.txt). --to hf writes one "
            "that transformers loads with from_pretrained: GPT-2 for dense models, GPT-Neo for models with local "
            "attention. Tokenizer files travel with the weights. GPT-1 fine-tuned GPT-2 models keep their head: "
            "classification and entailment as GPT2ForSequenceClassification, multiple choice as GPT2DoubleHeadsModel. "
            "A sharded training checkpoint (an FSDP run's checkpoints/step_N, with dcp/) becomes an ordinary "
            "single-file one with --to gptlab, and converts to hf directly. --to gguf writes one file in llama.cpp's "
            "GPT-2 layout (dense-attention pre-LN models with a BPE tokenizer), weights in --type f32, f16 or q8_0."
        ),
    )
    parser.add_argument("src", type=Path, help="checkpoint directory to read")
    parser.add_argument("dst", type=Path, help="directory to write (a file for --to gguf)")
    parser.add_argument("--to", choices=FORMATS, required=True, help="target format")
    parser.add_argument("--type", choices=GGUF_TYPES, help="weight type of a GGUF file (default f32)")
    parser.add_argument("--overwrite", action="store_true", help="replace dst if it already exists")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from gptlab.checkpoint.convert import convert

    out = convert(args.src, args.dst, args.to, overwrite=args.overwrite, type=args.type)
    print(f"wrote {args.to} {'file' if args.to == 'gguf' else 'checkpoint'} to {out}")
