"""Training tokens/s of gptlab's trainer against a plain PyTorch loop of transformers' GPT-2.

The shape is nanoGPT's CPU quickstart (the packaged recipe shakespeare-char): char-level tinyshakespeare,
4 layers, 4 heads, 128 dims, context 64, batch 12. gptlab runs through `gptlab.train.train` and its
figure is read from metrics.jsonl: as it comes (`default`: no precision or compile setting, so `auto`),
in fp32, and in bf16 with `compile: true`; the peer is
`GPT2LMHeadModel` (default configuration) with AdamW and gradient clipping, fed the same windows, as an
ordinary loop runs it and again with the malloc setting gptlab's trainer makes on a CPU (`keep`, see
`gptlab.device.keep_freed_memory`), so that the share of the gap due to page faults shows.

Two comparisons:
- time-sliced (the goal's figure): plain `gptlab train`, the same with bf16 and compile, and the peer in fp32
  and in bf16 run as four live processes that take turns, --slice-seconds each, while the others are
  stopped. On a shared VM the machine's speed swings within a second (bf16 matmuls from ~380 to ~210
  GFLOP/s), so runs a minute apart can see different machines; the turns of one rotation see the same one.
  The figure is the median over --slices rotations of (faster peer's ms/step) / (plain gptlab's ms/step),
  with its quartiles, and the ratio of each engine's fastest slice (noise only ever slows a run, so the
  fastest is the usual estimate of the unloaded speed, as `timeit` takes the minimum); the compiled run's
  ratio comes alongside.
- separate runs: every variant (RUNS) as a fresh process, interleaved over --rounds; a figure is the median
  of all --log-every-step windows after the first (warm-up), and the fastest window.
Prints one JSON object.

    python benchmarks/train_throughput.py [--slices 60] [--slice-seconds 0.5] [--rounds 3] [--steps 300]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "shakespeare-char"  # a packaged recipe (src/gptlab/recipes/)
DATA = [str(ROOT.parent / "shared" / "data" / "tinyshakespeare.txt")]
"""The config's shape on nanoGPT's data (the config itself trains on the README's demo corpus)."""
RUNS = [
    "gptlab-default", "gptlab-fp32", "gptlab-bf16compile",
    "transformers-fp32", "transformers-bf16", "transformers-fp32exact", "transformers-fp32keep", "transformers-bf16keep",
]
"""The peer the goal is set against is GPT2LMHeadModel as configured by default (tanh GELU, ~47 ms a step
on the reference machine); `exact` gives it the exact GELU of gptlab's small presets instead."""
BATCH_TOKENS = 12 * 64
NANOGPT = {"ms_per_step": 27.5, "tokens_per_s": 28_000, "over_transformers_fp32": 1.7}


def gptlab_windows(precision: str, steps: int, log_every: int, threads: int, trace: str | None = None) -> dict:
    """tokens/s per logged window of a real `gptlab train` run on the reference config. With `trace` the run
    writes there and its metrics.jsonl, one row a step, is the trace."""
    from gptlab.train import build_config, train

    with contextlib.nullcontext(trace) if trace else tempfile.TemporaryDirectory() as out:
        flags = {} if precision == "default" else {
            "precision": precision.removesuffix("compile"), "compile": precision.endswith("compile"),
        }
        config = build_config(CONFIG, {
            "data": DATA, "out": out, **flags, "max_steps": steps, "log_every": log_every, "threads": threads,
            "eval_every": steps, "eval_windows": 12, "save_every": steps, "sample_tokens": 0, "progress": False,
        })
        train(config)
        rows = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    logged = [row for row in rows if "tokens_per_s" in row]
    return {"tokens_per_s": [row["tokens_per_s"] for row in logged[1:]], "final_loss": logged[-1]["loss"]}


def transformers_windows(precision: str, steps: int, log_every: int, threads: int, trace: str | None = None) -> dict:
    """The same measurement for an ordinary training loop around transformers' GPT2LMHeadModel. With `trace`
    each step also appends its tokens/s to that directory's metrics.jsonl, as a gptlab run logs them."""
    import torch
    import torch.nn.functional as F
    from transformers import GPT2Config, GPT2LMHeadModel

    from gptlab.data import WindowSampler, batch_from_starts, build_corpus
    from gptlab.device import keep_freed_memory
    from gptlab.train import build_config
    from gptlab.train.tokenizers import resolve_tokenizer

    torch.set_num_threads(threads)
    if precision.endswith("keep"):
        keep_freed_memory()
    config = build_config(CONFIG, {"data": DATA, "progress": False})
    tokenizer = resolve_tokenizer(config, Path("."), False)
    corpus = build_corpus(config.data, tokenizer, config.val_fraction, config.seed, False)
    vocab = tokenizer.vocab_size
    torch.manual_seed(config.seed)
    model = GPT2LMHeadModel(GPT2Config(
        n_layer=4, n_head=4, n_embd=128, n_positions=config.seq_len, vocab_size=vocab,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        activation_function="gelu" if precision.endswith("exact") else "gelu_new",
    )).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=(config.beta1, config.beta2),
                                  weight_decay=config.weight_decay)
    sampler = WindowSampler(len(corpus.train), config.seq_len, config.seed)
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if precision.startswith("bf16") else contextlib.nullcontext
    windows, loss_value = [], 0.0
    traced = open(Path(trace) / "metrics.jsonl", "a") if trace else None
    start = step_start = time.perf_counter()
    for step in range(1, steps + 1):
        x, y = batch_from_starts(corpus.train, sampler.next_starts(config.batch_size), config.seq_len)
        with autocast():
            logits = model(input_ids=x).logits
            loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss_value = loss.item()
        if traced:
            now = time.perf_counter()
            traced.write(json.dumps({"step": step, "tokens_per_s": config.batch_size * config.seq_len / (now - step_start)}) + "\n")
            traced.flush()
            step_start = now
        if step % log_every == 0:
            now = time.perf_counter()
            windows.append(log_every * config.batch_size * config.seq_len / (now - start))
            start = now
    return {"tokens_per_s": windows[1:], "final_loss": loss_value}


def best_peer(figures: dict[str, float], setting: str = "", faster: Callable[..., float] = max) -> float:
    """The faster of the transformers loop in fp32 and in bf16, as the issue defines the peer: `max` of
    tokens/s, `min` of ms/step."""
    return faster(figures[f"transformers-fp32{setting}"], figures[f"transformers-bf16{setting}"])


SLICED = ["gptlab-default", "gptlab-bf16compile", "transformers-fp32", "transformers-bf16"]
"""The runs timed again in time slices: the goal's (plain gptlab against both peers), and compile."""
WARM_STEPS = 20


def time_sliced(slices: int, slice_seconds: float, threads: int) -> dict[str, list[float]]:
    """Median ms/step of each SLICED run in each of `slices` rotations. All are live processes; in a
    rotation each runs for `slice_seconds` while the others are stopped (SIGSTOP), so the figures of a
    rotation see the machine in the same state, where separate runs a minute apart may not. The first step of
    each slice is dropped: it is the one the last stop interrupted."""
    import random

    with tempfile.TemporaryDirectory() as root:
        procs: dict[str, subprocess.Popen] = {}
        try:
            for run in SLICED:  # started one at a time, so that their start-ups do not compete
                trace = Path(root) / run
                trace.mkdir()
                cmd = [sys.executable, __file__, "--child", run, "--steps", str(10**8), "--log-every", "1",
                       "--threads", str(threads), "--trace", str(trace)]
                with open(trace / "stderr.txt", "w") as stderr:  # a file: a pipe nobody reads could fill and block
                    procs[run] = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr)
                while len(_step_ms(trace)) < WARM_STEPS:
                    if procs[run].poll() is not None:
                        raise RuntimeError(f"{run} exited: {(trace / 'stderr.txt').read_text()[-2000:]}")
                    time.sleep(0.1)
                _pause(procs[run])
            logged = {run: len(_step_ms(Path(root) / run)) for run in SLICED}  # steps each run has logged so far
            per_slice: dict[str, list[float]] = {run: [] for run in SLICED}
            order = random.Random(0)
            for _ in range(slices):
                for run in order.sample(SLICED, len(SLICED)):
                    os.kill(procs[run].pid, signal.SIGCONT)
                    time.sleep(slice_seconds)
                    _pause(procs[run])
                    all_steps = _step_ms(Path(root) / run)
                    steps, logged[run] = all_steps[logged[run] + 1:], len(all_steps)
                    if not steps:
                        raise RuntimeError(f"{run} finished no step in a {slice_seconds} s slice; give more --slice-seconds")
                    per_slice[run].append(statistics.median(steps))
            return per_slice
        finally:
            for proc in procs.values():
                proc.kill()
                proc.wait()


def _step_ms(trace: Path) -> list[float]:
    """ms of each step a run has logged so far (whole lines only: the process may be stopped mid-write)."""
    path = trace / "metrics.jsonl"
    text = path.read_text() if path.is_file() else ""
    lines = text.splitlines() if text.endswith("\n") else text.splitlines()[:-1]
    rows = [json.loads(line) for line in lines]
    return [1000 * BATCH_TOKENS / row["tokens_per_s"] for row in rows if "tokens_per_s" in row]


def _pause(proc: subprocess.Popen) -> None:
    """SIGSTOP, returning once the process is stopped (the signal is asynchronous)."""
    os.kill(proc.pid, signal.SIGSTOP)
    while Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("T", "t"):
        time.sleep(0.001)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps per run")
    parser.add_argument("--log-every", type=int, default=50, help="steps per timed window")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each engine, interleaved (0: none)")
    parser.add_argument("--slices", type=int, default=60, help="rotations of the time-sliced comparison (0: none)")
    parser.add_argument("--slice-seconds", type=float, default=0.5, help="length of one run's slice")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", choices=RUNS, help=argparse.SUPPRESS)
    parser.add_argument("--trace", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        engine, precision = args.child.split("-")
        measure = gptlab_windows if engine == "gptlab" else transformers_windows
        print(json.dumps(measure(precision, args.steps, args.log_every, args.threads, args.trace)))
        return

    import torch

    from gptlab.device import bf16_is_fast

    summary = {
        "benchmark": "train_throughput",
        "shape": "char tinyshakespeare, 4 layers, 4 heads, 128 dims, context 64, batch 12",
        "threads": args.threads,
        "peer": "transformers GPT2LMHeadModel (default config: sdpa attention, tanh GELU), torch AdamW, plain loop",
        "gptlab_default_precision": "bf16" if bf16_is_fast(torch.device("cpu")) else "fp32",
    }
    if args.rounds:
        summary.update(separate_runs(args))
    if args.slices:
        per_slice = time_sliced(args.slices, args.slice_seconds, args.threads)
        rotations = [dict(zip(per_slice, figures)) for figures in zip(*per_slice.values())]
        peer = [best_peer(rotation, faster=min) for rotation in rotations]
        fastest = {run: min(values) for run, values in per_slice.items()}

        def over_peer(run: str) -> list[float]:
            return [p / g for p, g in zip(peer, per_slice[run])]

        summary["time_sliced"] = {
            "slices": args.slices, "slice_seconds": args.slice_seconds,
            "ms_per_step": {run: round(statistics.median(values), 2) for run, values in per_slice.items()},
            "ms_per_step_fastest_slice": {run: round(value, 2) for run, value in fastest.items()},
            "ratio_default_over_best_peer": round(statistics.median(over_peer("gptlab-default")), 2),
            "ratio_quartiles": [round(q, 2) for q in statistics.quantiles(over_peer("gptlab-default"), n=4)[::2]],
            "ratio_default_over_best_peer_fastest_slices": round(
                best_peer(fastest, faster=min) / fastest["gptlab-default"], 2),
            "ratio_compile_over_best_peer": round(statistics.median(over_peer("gptlab-bf16compile")), 2),
        }
    summary["reference_nanogpt"] = NANOGPT
    summary["goal"] = "time_sliced.ratio_default_over_best_peer >= 2.0 (plain `gptlab train`, no flags)"
    print(json.dumps(summary, indent=2))


def separate_runs(args: argparse.Namespace) -> dict:
    """Every RUNS entry as its own fresh process, interleaved over --rounds; figures are medians of windows."""
    windows: dict[str, list[float]] = {run: [] for run in RUNS}
    losses: dict[str, list[float]] = {run: [] for run in RUNS}
    for _ in range(args.rounds):
        for run in RUNS:
            cmd = [sys.executable, __file__, "--child", run, "--steps", str(args.steps),
                   "--log-every", str(args.log_every), "--threads", str(args.threads)]
            result = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout)
            windows[run] += result["tokens_per_s"]
            losses[run].append(result["final_loss"])
    speed = {run: statistics.median(values) for run, values in windows.items()}
    fastest = {run: max(values) for run, values in windows.items()}

    def ratio(a: float, b: float) -> float:
        return round(a / b, 2)

    best_gptlab = max(speed[run] for run in RUNS if run.startswith("gptlab"))
    return {
        "steps": args.steps, "rounds": args.rounds,
        "tokens_per_s": {run: round(value) for run, value in speed.items()},
        "ms_per_step": {run: round(1000 * BATCH_TOKENS / value, 2) for run, value in speed.items()},
        "ms_per_step_fastest_window": {run: round(1000 * BATCH_TOKENS / value, 2) for run, value in fastest.items()},
        "final_loss": {run: round(statistics.mean(values), 3) for run, values in losses.items()},
        "ratio_default_over_best_peer": ratio(speed["gptlab-default"], best_peer(speed)),
        "ratio_fp32": ratio(speed["gptlab-fp32"], speed["transformers-fp32"]),
        "ratio_gptlab_best_over_best_peer": ratio(best_gptlab, best_peer(speed)),
        "ratio_default_over_best_peer_fastest_windows": ratio(fastest["gptlab-default"], best_peer(fastest)),
        "ratio_default_over_peer_with_exact_gelu": ratio(speed["gptlab-default"], speed["transformers-fp32exact"]),
        "ratio_default_over_best_peer_with_gptlab_malloc_setting": ratio(
            speed["gptlab-default"], best_peer(speed, "keep")),
    }


if __name__ == "__main__":
    main()
