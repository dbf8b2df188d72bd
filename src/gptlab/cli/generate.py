"""`gptlab generate`: sample text from a checkpoint, streaming it as it is produced."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gptlab.files import read_text
from gptlab.generation.params import DEFAULT_MAX_NEW_TOKENS, SamplingParams

_DEFAULTS = SamplingParams()  # the library's defaults are the command's


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
    parser.add_argument(
        "--temperature", type=float, default=_DEFAULTS.temperature, help=f"0 = greedy (default {_DEFAULTS.temperature})"
    )
    parser.add_argument("--top-k", type=int, help="sample from the k most likely tokens")
    parser.add_argument("--top-p", type=float, help="nucleus sampling: smallest set holding this probability mass")
    parser.add_argument(
        "--repetition-penalty", type=float, default=_DEFAULTS.repetition_penalty,
        help="CTRL-style penalty (>1 discourages repeats)",
    )
    parser.add_argument("--seed", type=int, help="random seed for reproducible samples")
    parser.add_argument("--stop", action="append", default=[], help="stop when this text appears (repeatable)")
    parser.add_argument("--num-samples", type=int, default=1, help="completions per prompt (default 1)")
    parser.add_argument("--truncate", action="store_true", help="drop the start of a prompt that does not fit the context")
    parser.add_argument("--echo", action="store_true", help="print the prompt before its completion")
    parser.add_argument(
        "--num-beams", type=int, default=1,
        help="beam search with this many beams instead of sampling (GPT-3 used 4); prints the best beam",
    )
    parser.add_argument(
        "--length-penalty", type=float, default=0.6,
        help="beam search: a beam's score is its log-probability / length ** this (default 0.6, as GPT-3)",
    )
    parser.add_argument(
        "--precision", choices=("fp32", "bf16", "int8"), default="fp32",
        help="weights at load: fp32, bf16, or int8 with per-channel scales (faster on CPU, slightly less exact)",
    )
    parser.add_argument("--device", default="auto", help="torch device: auto (GPU if present), cpu, cuda, ...")
    parser.set_defaults(run=run)


def _beams(lm, prompts: list[str], params: SamplingParams, num_beams: int, length_penalty: float):
    """(prompt index, text) of each prompt's best beam, as `stream_batch` yields pieces."""
    from gptlab.engine import Engine, fit_prompt
    from gptlab.generation.text import encode_prompt

    tokenizer = lm.require_tokenizer()
    engine = Engine(lm.model, tokenizer, max_batch=1)
    for row, prompt in enumerate(prompts):
        ids = fit_prompt(encode_prompt(tokenizer, prompt), engine.n_ctx, params)
        best = engine.beam_search(
            ids, params.new_tokens(len(ids), engine.n_ctx), num_beams=num_beams, length_penalty=length_penalty,
            stop=params.stop,
        )
        yield row, best.text


def run(args: argparse.Namespace) -> None:
    import gptlab
    from gptlab.errors import GptlabError
    from gptlab.generation import stream_batch

    prompts = list(args.prompt)
    if args.prompt_file is not None:
        prompts.append(sys.stdin.read() if str(args.prompt_file) == "-" else read_text(args.prompt_file))
    if not prompts:
        prompts = [""]  # unconditional sample, started from <|endoftext|>
    if args.num_samples < 1:
        raise GptlabError(f"--num-samples must be at least 1, got {args.num_samples}")
    if args.num_beams < 1:
        raise GptlabError(f"--num-beams must be at least 1, got {args.num_beams}")
    params = SamplingParams(
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
        repetition_penalty=args.repetition_penalty, seed=args.seed, stop=tuple(args.stop), truncate=args.truncate,
    )
    lm = gptlab.load(args.checkpoint, device=args.device, precision=args.precision)
    batch = [p for p in prompts for _ in range(args.num_samples)]
    if args.num_beams > 1:
        pieces = _beams(lm, batch, params, args.num_beams, args.length_penalty)
    else:
        pieces = stream_batch(lm.model, lm.require_tokenizer(), batch, params)
    if len(batch) == 1:
        if args.echo:
            sys.stdout.write(batch[0])
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
