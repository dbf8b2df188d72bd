"""Greedy generation speed of the gptlab engine at fp32, bf16 and int8 against transformers' `generate`.

gptlab is measured as its users call it: `gptlab.load(...)` and the LanguageModel's own engine.

GPT-2 124M shape with random weights (saved once, loaded by both sides: the same weights), a 32-token
prompt and 128 new tokens at batch 1 and 8; tokens/s counts new tokens over the whole call, prefill
included. At batch 1 decoding reads every weight once per token, so the memory bandwidth, measured here
by summing a 1 GB fp32 tensor with the same threads, bounds tokens/s at bandwidth / weight bytes.
Random weights never stop early: the engine has no end-of-text token without a tokenizer, and
transformers is given none. Each figure is the best of --repeats runs (the machine is shared).

    python benchmarks/generate_speed.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import GPT2LMHeadModel

import gptlab
from gptlab.checkpoint.hf import export_hf
from gptlab.generation.params import SamplingParams
from gptlab.model import GPT, preset

PROMPT_TOKENS = 32
BATCHES = (1, 8)
PRECISIONS = ("fp32", "bf16", "int8")
GOALS = (("fp32", "b1", 1.5), ("int8", "b1", 3.0), ("int8", "b8", 2.0))
"""Speed-ups over transformers the issue asks for: (precision, batch, at least)."""


def best_seconds(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Fastest of `repeats` timed calls of each run after one untimed warm-up, taken in turns so that a
    burst of other work on the machine slows one round of every run rather than all rounds of one."""
    for run in runs.values():
        run()
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def read_bandwidth(repeats: int) -> float:
    """Bytes/s of a streaming read: `.sum()` over 1 GB of fp32, with PyTorch's thread count."""
    data = torch.ones(2**28)
    return data.numel() * data.element_size() / best_seconds({"sum": data.sum}, repeats)["sum"]


def weight_bytes_per_token(model: GPT) -> int:
    """Bytes a batch-1 decode step reads: every weight once, except the embeddings, of which it reads a row;
    a tied output head reads the whole of `wte`."""
    tensors = dict(model.named_parameters(remove_duplicate=False)) | dict(model.named_buffers())
    return sum(t.numel() * t.element_size() for name, t in tensors.items() if name not in ("wte.weight", "wpe.weight"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="32 new tokens, one timed run each")
    parser.add_argument("--new-tokens", type=int, default=None, help="default 128 (32 with --quick)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per figure; default 3 (1 with --quick)")
    args = parser.parse_args()
    new_tokens = args.new_tokens or (32 if args.quick else 128)
    repeats = args.repeats or (1 if args.quick else 3)

    torch.manual_seed(0)
    config = preset("gpt2", embd_pdrop=0.0, resid_pdrop=0.0, attn_pdrop=0.0)
    prompts = torch.randint(0, config.vocab_size, (max(BATCHES), PROMPT_TOKENS)).tolist()
    params = SamplingParams(max_new_tokens=new_tokens, temperature=0)
    runs: dict[tuple[str, int], Callable[[], list[list[int]]]] = {}
    bytes_per_token = {}
    with tempfile.TemporaryDirectory() as scratch:
        ours, theirs = Path(scratch) / "gptlab", Path(scratch) / "hf"
        gptlab.save(ours, GPT(config), None)
        export_hf(ours, theirs)
        hf = GPT2LMHeadModel.from_pretrained(theirs).eval()
        hf.generation_config.eos_token_id = None
        hf.generation_config.pad_token_id = 0
        for precision in PRECISIONS:
            lm = gptlab.load(ours, precision=precision)
            bytes_per_token[precision] = weight_bytes_per_token(lm.model)
            engine = lm.engine(max(BATCHES))  # ids only (no tokenizer saved): no end-of-text to stop at
            for batch in BATCHES:
                runs[precision, batch] = lambda e=engine, b=batch: [c.tokens for c in e.generate(prompts[:b], params)]
    for batch in BATCHES:
        ids = torch.tensor(prompts[:batch])

        @torch.inference_mode()
        def hf_generate(ids: torch.Tensor = ids) -> list[list[int]]:
            out = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens, do_sample=False)
            return out[:, PROMPT_TOKENS:].tolist()

        runs["transformers", batch] = hf_generate
    seconds = best_seconds({f"{name} b{batch}": run for (name, batch), run in runs.items()}, repeats)
    results: dict[str, dict[str, float]] = {}
    for name, batch in runs:
        results.setdefault(name, {})[f"b{batch}"] = batch * new_tokens / seconds[f"{name} b{batch}"]
    reference = runs["transformers", 1]()[0]
    agree = {p: next((i for i, (a, b) in enumerate(zip(runs[p, 1]()[0], reference)) if a != b), new_tokens) for p in PRECISIONS}
    bandwidth = read_bandwidth(10)
    print(json.dumps({
        "benchmark": "generate_speed",
        "model": "gpt2 (124M) shape, random weights",
        "prompt_tokens": PROMPT_TOKENS, "new_tokens": new_tokens, "threads": torch.get_num_threads(),
        "repeats": repeats,
        "tokens_per_s": {name: {b: round(v, 1) for b, v in row.items()} for name, row in results.items()},
        "speedup_vs_transformers": {
            name: {b: round(v / results["transformers"][b], 2) for b, v in row.items()}
            for name, row in results.items() if name != "transformers"
        },
        "greedy_tokens_before_first_difference_from_transformers_b1": agree,
        "bandwidth_limit_b1": {
            "read_gb_per_s": round(bandwidth / 1e9, 2),
            "weight_mb_per_token": {p: round(b / 1e6, 1) for p, b in bytes_per_token.items()},
            "max_tokens_per_s": {p: round(bandwidth / b, 1) for p, b in bytes_per_token.items()},
            "share_reached": {p: round(results[p]["b1"] * b / bandwidth, 2) for p, b in bytes_per_token.items()},
        },
        "goals": {
            f"{precision}_{batch}": {"target": goal, "reached": round(results[precision][batch] / results["transformers"][batch], 2)}
            for precision, batch, goal in GOALS
        },
    }, indent=2))


if __name__ == "__main__":
    main()
