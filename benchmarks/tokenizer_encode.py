"""Encode throughput of gptlab's Tokenizer against tiktoken and HF `tokenizers`, GPT-2 vocabulary.

All three encode the same tinyshakespeare text in the same process: as one call, as batches of
lines, of paragraphs and of 16 KiB chunks, and line by line (per-call overhead). Each timing is
the best of --repeat runs, engines interleaved so that machine noise hits them alike. Prints one
JSON object; the top-level ratios are the worst over scenarios.

    python benchmarks/tokenizer_encode.py [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import models, pre_tokenizers

from gptlab.tokenizer import Tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from gpt2_files import Unavailable, gpt2_dir, reference_encoding

SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"

Encoder = Callable[[list[str]], list[list[int]]]


def engines(directory: Path, scratch: Path) -> dict[str, dict[str, Encoder]]:
    """For each engine: encode a list of texts one call at a time ("single") or as a batch."""
    tok = Tokenizer.from_dir(directory)
    ref = reference_encoding(directory)
    tok.save(scratch)
    hf = HFTokenizer(models.BPE.from_file(str(scratch / "vocab.json"), str(scratch / "merges.txt")))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    return {
        "gptlab": {
            "single": lambda texts: [tok.encode(t) for t in texts],
            "batch": tok.encode_batch,
        },
        "tiktoken": {
            "single": lambda texts: [ref.encode_ordinary(t) for t in texts],
            "batch": ref.encode_ordinary_batch,
        },
        "hf_tokenizers": {
            "single": lambda texts: [hf.encode(t).ids for t in texts],
            "batch": lambda texts: [e.ids for e in hf.encode_batch(texts)],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeat", type=int, default=5, help="runs per measurement; the best counts"
    )
    args = parser.parse_args()
    try:
        directory = gpt2_dir()
    except Unavailable as e:
        sys.exit(f"GPT-2 tokenizer files unavailable: {e}")
    text = SHAKESPEARE.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    scenarios = {  # name: (texts, how they are passed)
        "whole_text": ([text], "single"),
        "line_batch": (lines, "batch"),
        "doc_batch": (text.split("\n\n"), "batch"),
        "chunk_batch": ([text[i : i + 16384] for i in range(0, len(text), 16384)], "batch"),
        "line_loop": (lines, "single"),
    }
    with tempfile.TemporaryDirectory() as scratch:
        by_engine = engines(directory, Path(scratch))

    results: dict[str, dict[str, float | bool]] = {}
    for name, (texts, mode) in scenarios.items():
        megabytes = sum(len(t.encode("utf-8")) for t in texts) / 1e6
        best = dict.fromkeys(by_engine, float("inf"))
        outputs = {}
        for _ in range(args.repeat):
            for engine, encoders in by_engine.items():
                start = time.perf_counter()
                outputs[engine] = encoders[mode](texts)
                best[engine] = min(best[engine], time.perf_counter() - start)
        speed = {engine: megabytes / seconds for engine, seconds in best.items()}
        results[name] = {
            **{f"{engine}_mb_s": round(mb_s, 2) for engine, mb_s in speed.items()},
            "gptlab_over_tiktoken": round(speed["gptlab"] / speed["tiktoken"], 3),
            "gptlab_over_hf_tokenizers": round(speed["gptlab"] / speed["hf_tokenizers"], 3),
            "ids_match": outputs["gptlab"] == outputs["tiktoken"] == outputs["hf_tokenizers"],
        }
    report = {
        "text": SHAKESPEARE.name,
        "megabytes": round(len(text.encode("utf-8")) / 1e6, 3),
        "repeat": args.repeat,
        "scenarios": results,
        "gptlab_over_tiktoken": min(r["gptlab_over_tiktoken"] for r in results.values()),
        "gptlab_over_hf_tokenizers": min(r["gptlab_over_hf_tokenizers"] for r in results.values()),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
