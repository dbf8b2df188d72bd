"""`gptlab generate`: sample text from a checkpoint, streaming it as it is produced."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gptlab.cli.options import add_threads
from gptlab.files import read_text
from gptlab.generation.params import DEFAULT_MAX_NEW_TOKENS, SamplingParams

_DEFAULTS = SamplingParams()  # the library's defaults are the command's
_SAMPLING = ("temperature", "top_k", "top_p", "repetition_penalty", "seed")
"""Options that shape sampling: None unless given, so that beam search can refuse them."""
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
    parser.add_argument(
        "--max-new-tokens", type=int, default=_DEFAULTS.max_new_tokens,
        help=f"tokens to generate per prompt (default: as many as fit in the context, up to {DEFAULT_MAX_NEW_TOKENS})",
    )
    parser.add_argument("--temperature", type=float, help=f"0 = greedy (default {_DEFAULTS.temperature})")
    parser.add_argument("--top-k", type=int, help="sample from the k most likely tokens")
    parser.add_argument("--top-p", type=float, help="nucleus sampling: smallest set holding this probability mass")
    parser.add_argument(
        "--repetition-penalty", type=float,
        help=f"CTRL-style penalty (>1 discourages repeats; default {_DEFAULTS.repetition_penalty})",
    )
    parser.add_argument("--seed", type=int, help="random seed for reproducible samples")
    parser.add_argument("--stop", action="append", default=[], help="stop when this text appears (repeatable)")
    parser.add_argument("--num-samples", type=int, default=1, help="completions per prompt (default 1)")
    parser.add_argument("--truncate", action="store_true", help="drop the start of a prompt that does not fit the context")
    parser.add_argument("--echo", action="store_true", help="print each prompt, then its completion")
    parser.add_argument(
        "--num-beams", type=int,
        help="beam search with this many beams instead of sampling (GPT-3 used 4; 1 is greedy decoding); "
             "prints the best beam",
    )
    parser.add_argument(
        "--length-penalty", type=float,
        help=f"beam search: a beam's score is its log-probability / length ** this (default {DEFAULT_LENGTH_PENALTY}, "
             "as GPT-3)",
    )
    parser.add_argument(
        "--precision", choices=("fp32", "bf16", "int8"), default="fp32",
        help="weights at load: fp32, bf16, or int8 with per-channel scales (faster on CPU, slightly less exact)",
    )
    parser.add_argument("--device", default="auto", help="torch device: auto (GPU if present), cpu, cuda, ...")
    add_threads(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    import gptlab
    from gptlab.errors import GptlabError
    from gptlab.threads import use_threads

    use_threads(args.threads)
    prompts = list(args.prompt)
    if args.prompt_file is not None:
        prompts.append(sys.stdin.read() if str(args.prompt_file) == "-" else read_text(args.prompt_file))
    if not prompts:
        prompts = [""]  # unconditional sample, started from <|endoftext|>
    if args.num_samples < 1:
        raise GptlabError(f"--num-samples must be at least 1, got {args.num_samples}")
    sampling = {name: getattr(args, name) for name in _SAMPLING if getattr(args, name) is not None}
    if args.num_beams is not None:
        if args.num_beams < 1:
            raise GptlabError(f"--num-beams must be at least 1, got {args.num_beams}")
        given = [f"--{name.replace('_', '-')}" for name in sampling] + ["--num-samples"] * (args.num_samples > 1)
        if given:
            raise GptlabError(
                f"--num-beams searches for the likeliest text and samples nothing: drop {', '.join(given)}"
            )
        sampling["temperature"] = 0  # one beam is greedy decoding
        sampling["num_beams"] = args.num_beams
        sampling["length_penalty"] = DEFAULT_LENGTH_PENALTY if args.length_penalty is None else args.length_penalty
    elif args.length_penalty is not None:
        raise GptlabError("--length-penalty applies to beam search only: add --num-beams")
    params = SamplingParams(
        max_new_tokens=args.max_new_tokens, stop=tuple(args.stop), truncate=args.truncate, **sampling
    )
    lm = gptlab.load(args.checkpoint, device=args.device, precision=args.precision)
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
