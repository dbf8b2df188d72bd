"""`gptlab generate`: sample text from a checkpoint, streaming it as it is produced."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gptlab.cli.options import add_settings, given
from gptlab.files import read_text
from gptlab.generation.params import SamplingParams
from gptlab.loading import LoadConfig

_SAMPLING = ("temperature", "top_k", "top_p", "repetition_penalty", "seed")
"""Options that shape sampling, which beam search refuses."""
DEFAULT_LENGTH_PENALTY = 0.6


def register(verbs: argparse._SubParsersAction) -> None:
    parser = verbs.add_parser(
        "generate",
        help="generate text from a checkpoint (KV cache, streaming, batched prompts)",
        description="Complete prompts with a gptlab checkpoint. One prompt streams to stdout as tokens arrive.",
    )
    parser.add_argument("checkpoint", type=Path, help="gptlab checkpoint directory")
    parser.add_argument("--prompt", action="append", default=[], help="prompt text (repeat for a batch)")
    parser.add_argument("--prompt-file", type=Path, help="read one prompt from a UTF-8 file ('-' for stdin)")
    add_settings(parser, SamplingParams, skip=("logprobs", "logit_bias", "num_beams", "length_penalty"))
    parser.add_argument("--num-samples", type=int, default=1, help="completions per prompt (default 1)")
    parser.add_argument("--echo", action="store_true", help="print each prompt, then its completion")
    parser.add_argument(
        "--num-beams", type=int, default=argparse.SUPPRESS,
        help="beam search with this many beams instead of sampling (GPT-3 used 4; 1 is greedy decoding); "
             "prints the best beam",
    )
    parser.add_argument(
        "--length-penalty", type=float, default=argparse.SUPPRESS,
        help=f"beam search: a beam's score is its log-probability / length ** this (default {DEFAULT_LENGTH_PENALTY}, "
             "as GPT-3)",
    )
    add_settings(parser, LoadConfig)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from gptlab.errors import GptlabError

    load = LoadConfig(**given(args, LoadConfig))
    prompts = list(args.prompt)
    if args.prompt_file is not None:
        prompts.append(sys.stdin.read() if str(args.prompt_file) == "-" else read_text(args.prompt_file))
    if not prompts:
        prompts = [""]  # unconditional sample, started from <|endoftext|>
    if args.num_samples < 1:
        raise GptlabError(f"--num-samples must be at least 1, got {args.num_samples}")
    sampling = given(args, SamplingParams)  # --num-beams and --length-penalty included, when given
    if "num_beams" in sampling:
        if args.num_beams < 1:
            raise GptlabError(f"--num-beams must be at least 1, got {args.num_beams}")
        chosen = [f"--{name.replace('_', '-')}" for name in _SAMPLING if name in sampling]
        chosen += ["--num-samples"] * (args.num_samples > 1)
        if chosen:
            raise GptlabError(
                f"--num-beams searches for the likeliest text and samples nothing: drop {', '.join(chosen)}"
            )
        sampling["temperature"] = 0  # one beam is greedy decoding
        sampling.setdefault("length_penalty", DEFAULT_LENGTH_PENALTY)
    elif "length_penalty" in sampling:
        raise GptlabError("--length-penalty applies to beam search only: add --num-beams")
    params = SamplingParams(**sampling)
    lm = load.load(args.checkpoint)
    batch = [p for p in prompts for _ in range(args.num_samples)]
    pieces = lm.stream_batch(batch, params)
    if len(batch) == 1:
        if args.echo:
            sys.stdout.write(batch[0])
            sys.stdout.flush()  # the prompt shows at once, before the model's first token
        for _, piece in pieces:
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        return
    completions = [""] * len(batch)
    for row, piece in pieces:
        completions[row] += piece
    for i, (prompt, completion) in enumerate(zip(batch, completions)):
        if i:
            print("-" * 40)
        print((prompt if args.echo else "") + completion)
