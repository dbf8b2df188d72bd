"""gptlab's default thread count against the best fixed `--threads`, on a quiet machine and beside a CPU hog.

PyTorch's threads spin at barriers, so when another program keeps a core busy a run with a thread on that
core slows down up to tenfold. gptlab follows the machine's load by default (`gptlab.threads`). This
benchmark runs each workload with every fixed thread count from 1 to PyTorch's own and with the default,
first on a quiet machine and then beside `python -c 'while True: pass'`, and reports the default's speed
over the best fixed count's. Runs go in turns (1, 2, ..., default; then again), so that the machine's
drift touches every setting alike; each figure is the mean of its turns.

- train: `gptlab train` at the quickstart's shape (mini, a 1,024-token BPE, 128-token windows, 32 a step,
  bf16 where the CPU has it) for --train-seconds, tokens/s over the logged windows after the first fifth.
- generate: greedy batch-1 decoding, GPT-2 124M's blocks (with the BPE's 1,024-token vocabulary), new
  tokens/s over --generate-seconds of 128-token completions of a 32-token prompt.

Goals (issue 20): the default at >= 0.8x the best fixed count beside the hog, >= 0.95x on a quiet machine.

    python benchmarks/busy_machine.py [--quick] [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

GOALS = {"quiet": 0.95, "hog": 0.8}
HOG = [sys.executable, "-c", "while True: pass"]

GENERATE = """
import sys, time
import torch
import gptlab
from gptlab import threads
from gptlab.engine import Engine
from gptlab.generation.params import SamplingParams

checkpoint, setting, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
if setting != "default":
    threads.use_threads(int(setting))
lm = gptlab.load(checkpoint)
engine = Engine(lm.model, inference_layout=True)  # ids only: no end-of-text, so every completion runs its full length;
# the weights laid out for inference, as gptlab.load(...).engine() does
prompt = torch.randint(0, lm.model.config.vocab_size, (32,), generator=torch.Generator().manual_seed(0)).tolist()
params = SamplingParams(max_new_tokens=128, temperature=0)
engine.generate([prompt], SamplingParams(max_new_tokens=8, temperature=0))  # warm-up
tokens, start = 0, time.perf_counter()
while time.perf_counter() - start < seconds:
    tokens += len(engine.generate([prompt], params)[0].tokens)
print(tokens / (time.perf_counter() - start))
"""


def cpu_flags() -> str:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return "unknown"
    return " ".join(f for f in flags.split(":", 1)[1].split() if f.startswith(("avx512", "amx")) or f in ("avx2", "fma"))


def train_rate(scratch: Path, data: Path, tokenizer: Path, setting: str, seconds: float, run: int) -> float:
    out = scratch / f"train-{run}"
    threads = [] if setting == "default" else ["--threads", setting]
    subprocess.run(
        [sys.executable, "-m", "gptlab", "train", "--data", data, "--tokenizer", tokenizer, "--model", "mini",
         "--seq-len", "128", "--batch-size", "32", "--lr", "5e-3", "--warmup-steps", "50", "--max-minutes",
         str(seconds / 60), "--eval-windows", "2", "--sample-tokens", "0", "--log-every", "5", "--no-progress",
         "--out", out, *threads],
        check=True, capture_output=True, text=True)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rates = [row["tokens_per_s"] for row in rows if "tokens_per_s" in row]
    kept = rates[len(rates) // 5 :] or rates
    return len(kept) / sum(1 / r for r in kept)  # equal tokens per window: total tokens over total time


def generate_rate(checkpoint: Path, setting: str, seconds: float) -> float:
    result = subprocess.run([sys.executable, "-c", GENERATE, checkpoint, setting, str(seconds)],
                            check=True, capture_output=True, text=True)
    return float(result.stdout.strip().splitlines()[-1])


def prepare(scratch: Path) -> tuple[Path, Path, Path]:
    """The quickstart's kind of data (docstrings here, to keep tokenizing short), its BPE, a GPT-2-shaped model."""
    import gptlab
    from gptlab.data.example import docstring_text
    from gptlab.model import GPT, preset
    from gptlab.tokenizer import train_tokenizer

    data = scratch / "docstrings.txt"
    data.write_text(docstring_text(), encoding="utf-8")
    tokenizer = train_tokenizer([data], vocab_size=1024, progress=False)
    tokenizer_dir = scratch / "bpe1024"
    tokenizer.save(tokenizer_dir)
    torch.manual_seed(0)
    model = GPT(preset("gpt2", vocab_size=tokenizer.vocab_size))
    checkpoint = gptlab.save(scratch / "gpt2-shape", model, tokenizer)
    return data, tokenizer_dir, checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="turns of every setting per condition (default 2)")
    parser.add_argument("--train-seconds", type=float, default=40.0)
    parser.add_argument("--generate-seconds", type=float, default=20.0)
    parser.add_argument("--quick", action="store_true", help="one round of 20 s training and 10 s generation")
    parser.add_argument("--workloads", nargs="+", default=["train", "generate"], choices=["train", "generate"])
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.train_seconds, args.generate_seconds = 1, 20.0, 10.0
    most = torch.get_num_threads()
    settings = [*map(str, range(1, most + 1)), "default"]
    report: dict = {"cpu_flags": cpu_flags(), "cores": os.cpu_count(), "pytorch_threads": most, "rounds": args.rounds}
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        data, tokenizer, checkpoint = prepare(scratch)
        runs = 0
        for condition in ("quiet", "hog"):
            hog = subprocess.Popen(HOG) if condition == "hog" else None
            try:
                for workload in args.workloads:
                    rates: dict[str, list[float]] = {s: [] for s in settings}
                    for _ in range(args.rounds):
                        for setting in settings:
                            runs += 1
                            if workload == "train":
                                rate = train_rate(scratch, data, tokenizer, setting, args.train_seconds, runs)
                            else:
                                rate = generate_rate(checkpoint, setting, args.generate_seconds)
                            rates[setting].append(rate)
                            print(f"{condition} {workload} threads={setting}: {rate:,.1f}/s", file=sys.stderr)
                    means = {s: sum(r) / len(r) for s, r in rates.items()}
                    best = max((s for s in settings if s != "default"), key=means.get)
                    ratio = means["default"] / means[best]
                    report[f"{workload}_{condition}"] = {
                        "unit": "tokens/s", "mean": {s: round(v, 1) for s, v in means.items()},
                        "runs": {s: [round(v, 1) for v in r] for s, r in rates.items()},
                        "best_fixed_threads": int(best), "default_over_best_fixed": round(ratio, 3),
                        "goal": GOALS[condition], "met": ratio >= GOALS[condition],
                    }
            finally:
                if hog:
                    hog.kill()
                    hog.wait()
                    time.sleep(1)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
