"""Predict a run's final validation loss from a sweep of runs at most a tenth its compute, then train it and compare.

On the embedded corpus (this Python's standard library source, byte tokens, split by file), the sweep
is the `--points` largest shapes of the sweep's rule whose runs, at `--tokens-per-param` tokens per
non-embedding parameter, cost at most `--sweep-fraction` of the target's compute; it fits
L(C) = a·C^-b + c. `gptlab scale plan` then gives the target's shape, tokens and predicted loss for
`--target-flops`; the target is trained with exactly that recipe, and the benchmark prints predicted
against measured as JSON (and draws OUT/scaling.png with both). Goal: |error| <= 2% of the measured
loss, sweep plus target under 20 minutes on 2 CPU cores. The corpus is cut to a spread subset of files
just large enough that no run repeats data, so a small --target-flops also tokenizes little.

The default target, 6e13 FLOPs, is one whose four sweep runs all lie past the steep fall of these byte-level
models (here: runs of at least ~1.4e12 FLOPs, 2M tokens): the sweep (2x64 to 2x88, 1.4e12-4.8e12) follows
one smooth curve and the target (2x168, the same depth) lands 1.6% from its prediction, in about 10 minutes;
a 7.2e13 target (sweep 2x72 to 2x96, target 2x176) lands 1.8% from it, in 12. One run below that edge is
enough to bend the fit: a 4.5e13 target sweeps 2x56 (8.4e11) to 2x80 and is predicted 8.5% too high, and a
3e13 target (2x48 to 2x72) 2.5-4% too low.

    python benchmarks/scaling_prediction.py [--target-flops 6e13] [--points 4] [--out DIR]   # ~10 minutes
    python benchmarks/scaling_prediction.py --target-flops 5e12 --points 4     # a quick run, a few minutes
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from gptlab.data.stdlib import stdlib_sources
from gptlab.scale import report
from gptlab.scale.plan import plan
from gptlab.scale.shapes import rule_shapes
from gptlab.scale.sweep import Execution, Recipe, budget_run, runs_for_sizes, sweep
from gptlab.train import build_config, train
from gptlab.train.checkpointing import checkpoints

HEADROOM = 1.3
"""Training text kept per target token (byte tokens: one per byte), beyond the 10% held out."""


def corpus(tokens: int) -> list[str]:
    """Every k-th standard-library file, k chosen so the files hold about HEADROOM·tokens training bytes."""
    files = stdlib_sources()
    sizes = [f.stat().st_size for f in files]
    stride = max(1, int(sum(sizes) * 0.9 / (HEADROOM * tokens)))
    return [str(f) for f in files[::stride]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target-flops", type=float, default=6e13, help="the target run's training compute budget")
    parser.add_argument("--sweep-fraction", type=float, default=0.1, help="most compute of a sweep run / the target's")
    parser.add_argument("--points", type=int, default=4, help="sweep runs")
    parser.add_argument("--tokens-per-param", type=float, default=20.0)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=None, help="sequences per step (default: the sweep's rule)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default PyTorch's)")
    parser.add_argument("--out", type=Path, help="keep the sweep and target here (rerun to continue); default a temporary folder")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=False)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        out = args.out or Path(scratch)
        probe = Recipe(("unused",), seq_len=args.seq_len, batch_size=args.batch_size)
        target = budget_run(probe, args.target_flops, args.tokens_per_param)
        recipe = Recipe(tuple(corpus(target.tokens(probe))), seq_len=args.seq_len, batch_size=args.batch_size)
        ceiling = args.sweep_fraction * target.flops(probe)

        def cost(shape) -> float:
            return shape.flops_per_token(args.seq_len) * args.tokens_per_param * shape.params

        sizes = [shape.params for shape in rule_shapes(target.shape.params) if cost(shape) <= ceiling][-args.points:]
        specs = runs_for_sizes(recipe, sizes, [args.tokens_per_param])

        started = time.perf_counter()
        summary = sweep(recipe, specs, out / "sweep", Execution(threads=args.threads, progress=args.progress))
        swept = time.perf_counter() - started

        planned = plan(out / "sweep", args.target_flops, out / "target")
        config = build_config(None, {**planned.settings, "progress": args.progress, "threads": args.threads,
                                     "resume": bool(checkpoints(out / "target"))})
        if (out / "target" / "final").is_dir():
            from gptlab.checkpoint.io import read_config

            measured = read_config(out / "target" / "final")["training"]
        else:
            measured = train(config).val
        total = time.perf_counter() - started

        predicted = planned.estimate.prediction
        error = (predicted.loss - measured["val_loss"]) / measured["val_loss"]
        report.plot(summary, out / "scaling.png",
                    [report.Mark(planned.flops, predicted.loss, predicted.low, predicted.high, measured["val_loss"])])
        law = summary["loss_vs_compute"]
        print(json.dumps({
            "benchmark": "scaling_prediction",
            "corpus": {"files": len(recipe.data), "train_tokens": summary["data"]["train_tokens"],
                       "val_tokens": summary["data"]["val_tokens"], "tokenizer": recipe.tokenizer},
            "sweep": {
                "runs": [{k: r[k] for k in ("name", "params", "tokens", "flops", "epochs", "val_loss")} for r in summary["runs"]],
                "seconds": round(swept, 1),
                "flops": sum(r["flops"] for r in summary["runs"]),
            },
            "law": {"L(C)": law["params"], "stderr": law["stderr"], "residual_rms": law["residual_rms"]},
            "target": {
                "name": planned.spec.name, "params": planned.spec.shape.params, "tokens": planned.tokens,
                "flops": planned.flops, "epochs": round(planned.epochs, 3),
                "flops_over_largest_sweep_run": round(planned.flops / max(r["flops"] for r in summary["runs"]), 2),
                "seconds": round(total - swept, 1),
            },
            "predicted_val_loss": round(predicted.loss, 4),
            "interval_95": None if predicted.low is None else [round(predicted.low, 4), round(predicted.high, 4)],
            "caveat": planned.estimate.caveat,
            "measured_val_loss": round(measured["val_loss"], 4),
            "predicted_val_bpb": planned.estimate.bits_per_byte and round(planned.estimate.bits_per_byte.loss, 4),
            "measured_val_bpb": round(measured["val_bpb"], 4),
            "error_pct_of_measured": round(100 * error, 2),
            "total_seconds": round(total, 1),
            "goal": "|error_pct_of_measured| <= 2 and total_seconds <= 1200 on 2 CPU cores",
            "met": abs(error) <= 0.02 and total <= 1200,
            "plot": str(out / "scaling.png") if args.out else None,
        }, indent=2))


if __name__ == "__main__":
    main()
