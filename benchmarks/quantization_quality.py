"""What bf16 and int8 weights cost in quality: held-out perplexity and bits per byte against fp32.

Trains the shakespeare-fast recipe's small model (a 2048-token BPE) on tinyshakespeare for about
--minutes, then loads the final checkpoint at each precision and scores the file's last 10%, the part
training held out, with `loglikelihood_rolling` (every token scored once, lm-evaluation-harness's rule).
To fit the budget, a first short run inside the warmup measures the step rate, and the run is then
resumed to the step count the remaining time allows: the warmup does not depend on the run's length,
so this trains exactly what one uninterrupted run of that length would. Prints one JSON object.

    python benchmarks/quantization_quality.py [--minutes 3]
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import gptlab
from gptlab.data import split_documents
from gptlab.eval.scoring import loglikelihood_rolling
from gptlab.model.quantize import PRECISIONS
from gptlab.train import build_config, train

CONFIG = "shakespeare-fast"  # a packaged recipe (src/gptlab/recipes/)
CALIBRATION_STEPS = 40
"""Steps of the rate-measuring first run; below the recipe's warmup (120)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="training budget, data preparation included")
    args = parser.parse_args()

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "run"
        common = {"out": str(out), "progress": False, "eval_every": 10**6, "save_every": 10**6}
        config = build_config(CONFIG, {**common, "max_steps": CALIBRATION_STEPS})
        began = time.perf_counter()
        train(config)
        calibration = time.perf_counter() - began
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        # steps/s of each logged window (tokens/s over tokens per step); the first one holds the start-up
        rates = [row["tokens_per_s"] / row["tokens"] * row["step"] for row in rows if "tokens_per_s" in row][1:]
        seconds_per_step = len(rates) / sum(rates)
        overhead = calibration - CALIBRATION_STEPS * seconds_per_step  # tokenizer, data, evaluation, saving
        left = args.minutes * 60 - (time.perf_counter() - start) - overhead
        steps = CALIBRATION_STEPS + max(1, int(left / seconds_per_step))
        config = build_config(CONFIG, {**common, "max_steps": steps, "resume": True})
        result = train(config)
        trained = time.perf_counter() - start
        held_out = split_documents(config.data, config.val_fraction, config.seed).val[0].text
        scores = {}
        for precision in PRECISIONS:
            lm = gptlab.load(result.final, precision=precision)
            began = time.perf_counter()
            (loglikelihood,) = loglikelihood_rolling(lm, [held_out])
            n_tokens = len(lm.require_tokenizer().encode(held_out))
            scores[precision] = {
                "perplexity": round(math.exp(-loglikelihood / n_tokens), 4),
                "bits_per_byte": round(-loglikelihood / math.log(2) / len(held_out.encode()), 6),
                "scoring_seconds": round(time.perf_counter() - began, 2),
            }
    print(json.dumps({
        "benchmark": "quantization_quality",
        "model": f"{config.model} {lm.config.n_layer}x{lm.config.d_model}, {lm.config.closed_form_params() / 1e6:.2f}M parameters",
        "tokenizer": config.tokenizer,
        "steps": result.step, "training_seconds": round(trained, 1), "seconds_per_step": round(seconds_per_step, 4),
        "seconds_outside_steps_per_run": round(overhead, 1),
        "trainer_val_bpb": round(result.val["val_bpb"], 4),
        "held_out": {"bytes": len(held_out.encode()), "tokens": n_tokens, "context": lm.config.n_ctx},
        "scores": scores,
        "relative_to_fp32": {
            p: {
                "perplexity_ratio": round(scores[p]["perplexity"] / scores["fp32"]["perplexity"], 6),
                "bits_per_byte_difference": round(scores[p]["bits_per_byte"] - scores["fp32"]["bits_per_byte"], 6),
            }
            for p in PRECISIONS if p != "fp32"
        },
    }, indent=2))


if __name__ == "__main__":
    main()
