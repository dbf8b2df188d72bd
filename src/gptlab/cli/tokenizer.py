"""`gptlab tokenizer`: train a byte-level BPE, encode text to ids and decode ids to text."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gptlab.errors import GptlabError
from gptlab.files import read_text


def register(verbs: argparse._SubParsersAction) -> None:
    parser = verbs.add_parser("tokenizer", help="train a GPT-2 byte-level BPE tokenizer; encode and decode")
    sub = parser.add_subparsers(metavar="ACTION", required=True)

    train = sub.add_parser(
        "train",
        help="train a byte-level BPE on text files",
        description="Train a GPT-2 style byte-level BPE (HF tokenizers) and write vocab.json + merges.txt.",
    )
    train.add_argument("--input", type=Path, nargs="+", required=True, help="UTF-8 text files or directories")
    train.add_argument("--vocab-size", type=int, required=True, help="total vocabulary incl. 256 bytes and specials")
    train.add_argument("--out", type=Path, required=True, help="directory to write the tokenizer to")
    train.add_argument("--special", action="append", help="special token (repeatable; default <|endoftext|>)")
    train.add_argument("--overwrite", action="store_true", help="replace an --out directory that holds something")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(run=run_train)

    for name, helptext in (("encode", "print the token ids of text as JSON"), ("decode", "print the text of JSON token ids")):
        action = sub.add_parser(name, help=helptext, description=helptext[0].upper() + helptext[1:] + ".")
        action.add_argument("--tokenizer", type=Path, required=True, help="tokenizer or checkpoint directory")
        source = action.add_mutually_exclusive_group()
        source.add_argument("--input", type=Path, help="file to read (default: stdin)")
        source.add_argument("--text", help="the input itself")
        action.set_defaults(run=run_encode if name == "encode" else run_decode)


def run_train(args: argparse.Namespace) -> None:
    from gptlab.tokenizer import train_tokenizer

    specials = tuple(args.special) if args.special else ("<|endoftext|>",)
    tok = train_tokenizer(args.input, args.vocab_size, special_tokens=specials, progress=not args.quiet, out=args.out,
                          overwrite=args.overwrite)
    print(f"wrote tokenizer with {tok.vocab_size} tokens to {args.out}")


def _source(args: argparse.Namespace) -> str:
    if args.text is not None:
        return args.text
    if args.input is not None:
        return read_text(args.input)
    try:
        return sys.stdin.read()
    except UnicodeDecodeError as e:
        raise GptlabError(f"stdin is not valid UTF-8 (byte {e.start}: {e.reason})") from None


def run_encode(args: argparse.Namespace) -> None:
    from gptlab.tokenizer import load_tokenizer

    print(json.dumps(load_tokenizer(args.tokenizer).encode(_source(args))))


def run_decode(args: argparse.Namespace) -> None:
    from gptlab.tokenizer import load_tokenizer

    tok = load_tokenizer(args.tokenizer)
    try:
        ids = json.loads(_source(args))
    except json.JSONDecodeError as e:
        raise GptlabError(f"input is not a JSON list of token ids ({e})") from None
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise GptlabError("input must be a JSON list of integer token ids")
    sys.stdout.write(tok.decode(ids))
    sys.stdout.write("\n")
