"""Memory and start-up of training and mixing on corpora larger than memory should allow.

(a) Writes --gb GB of synthetic uint16 token shards (random byte ids, an <|endoftext|> every ~2000
tokens; generated a chunk at a time into `write_shards`), then runs `gptlab train` on them in a
subprocess for --steps steps of the tiny model, and again on a corpus a tenth the size. Each
reports the first step's latency: from starting the process to step 1 appearing in metrics.jsonl,
so it includes Python and PyTorch start-up (`import_seconds`, timed apart). Goal: peak RSS under
1.5 GB and the same for both sizes; first step within a few seconds.

(b) Writes --mix-gb GB of synthetic JSONL documents (2-8 KB windows of random words, files of up to
64 MB, split 3:1 into two sources), fits a BPE-2048 tokenizer to a sample, and runs `gptlab data
mix` (weights 3:1, --workers) in a subprocess. Goal: peak RSS under 1.5 GB.

`peak_rss_gb` is the ru_maxrss of the command (wait4): the peak of its largest process, the mix's
datatrove workers included. `tree_largest_total_gb` is the largest sum of resident memory over the
command's processes, sampled from /proc every 0.2 s.

Everything is written under --dir (a new or empty folder) or a temporary folder, and deleted at
the end unless --keep. Prints one JSON object.

    python benchmarks/data_scale.py [--gb 4] [--mix-gb 2] [--steps 10] [--workers 2] [--dir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from gptlab.data import write_shards
from gptlab.tokenizer import byte_tokenizer, train_tokenizer_on_texts

CHUNK_TOKENS = 1 << 24
"""Tokens generated and handed to write_shards at once (32 MB)."""
TEXT_FILE_BYTES = 64 << 20
DOCUMENT_TOKENS = 2000
"""Mean tokens between <|endoftext|> in the synthetic token corpus."""


def write_token_corpus(directory: Path, n_tokens: int, seed: int) -> dict:
    """Random byte-level ids in shards of write_shards' default size, generated chunk by chunk."""
    tok = byte_tokenizer()
    rng = np.random.default_rng(seed)

    def chunks() -> Iterator[np.ndarray]:
        for start in range(0, n_tokens, CHUNK_TOKENS):
            tokens = rng.integers(0, 256, min(CHUNK_TOKENS, n_tokens - start), dtype=np.uint16)
            tokens[rng.integers(0, len(tokens), len(tokens) // DOCUMENT_TOKENS)] = tok.eot_id
            yield tokens

    start = time.perf_counter()
    written = write_shards(directory, chunks(), tok.vocab_size, tok.eot_id)
    size = sum(p.stat().st_size for p in directory.glob("*.bin"))
    return {"tokens": written, "gb": round(size / 1e9, 3), "shards": len(list(directory.glob("*.bin"))),
            "write_seconds": round(time.perf_counter() - start, 1)}


def write_text_corpus(directory: Path, n_bytes: int, seed: int) -> list[Path]:
    """JSONL files of documents cut from a pool of random words, about n_bytes of text in all."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words = ["".join(rng.choice(letters, rng.integers(2, 10))) for _ in range(5000)]
    pool = " ".join(rng.choice(words, 2_000_000, p=_zipf(len(words))))
    directory.mkdir(parents=True)
    files, written = [], 0
    file_bytes = min(TEXT_FILE_BYTES, n_bytes // 4)  # four files at least: three for one source, one for the other
    while written < n_bytes:
        lines, size = [], 0
        while size < min(file_bytes, n_bytes - written):
            start, length = int(rng.integers(len(pool) - 8000)), int(rng.integers(2000, 8000))
            text = pool[start : start + length]
            lines.append(json.dumps({"text": text}) + "\n")
            size += len(text)
        files.append(directory / f"{len(files):05d}.jsonl")
        files[-1].write_text("".join(lines))
        written += size
    return files


def _zipf(n: int) -> np.ndarray:
    weights = 1 / np.arange(1, n + 1)
    return weights / weights.sum()


class TreeMemory:
    """The largest sum of resident memory over a process and its descendants, sampled from /proc."""

    def __init__(self, pid: int, interval: float = 0.2):
        self.pid, self.interval = pid, interval
        self.largest_total = 0  # bytes
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.largest_total = max(self.largest_total, sum(_resident(pid) for pid in self._tree()))

    def _tree(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                children.setdefault(int(stat.rpartition(")")[2].split()[1]), []).append(int(entry))
        tree, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo += children.get(pid, [])
        return tree


def _resident(pid: int) -> int:
    """VmRSS of process `pid` in bytes; 0 once it is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0
    return next((int(line.split()[1]) * 1024 for line in lines if line.startswith("VmRSS:")), 0)


LAUNCHER = """
import json, os, subprocess, sys
process = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(process.pid, 0)
with open(sys.argv[1], "w") as f:
    json.dump({"exit": os.waitstatus_to_exitcode(status), "maxrss_kb": usage.ru_maxrss}, f)
"""
"""Runs a command and records its peak RSS. A child's ru_maxrss starts from the peak of the process
it was spawned from (exec folds that in), so the command is spawned from this bare interpreter
(~10 MB) rather than from the benchmark, which holds the data it generated."""


def run_measured(cmd: list[str], watch: Path | None = None) -> dict:
    """Run `cmd`: its wall time, peak RSS, sampled tree peaks, and when `watch` first had a line."""
    with tempfile.TemporaryDirectory() as scratch:
        result = Path(scratch) / "result.json"
        start = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(result), *cmd],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        tree = TreeMemory(process.pid)
        first_line = None
        errors: list[str] = []
        reader = threading.Thread(target=lambda: errors.append(process.stderr.read()), daemon=True)
        reader.start()
        while process.poll() is None:
            if watch is not None and first_line is None and watch.is_file() and watch.read_text().strip():
                first_line = time.perf_counter() - start
            time.sleep(0.01)
        seconds = time.perf_counter() - start
        tree.stop()
        reader.join()
        measured = json.loads(result.read_text())
    if measured["exit"]:
        raise SystemExit(f"{' '.join(cmd)} failed ({measured['exit']}):\n{errors[0][-3000:]}")
    return {
        "seconds": round(seconds, 1),
        "peak_rss_gb": round(measured["maxrss_kb"] * 1024 / 1e9, 3),
        "tree_largest_total_gb": round(tree.largest_total / 1e9, 3),
        **({"first_step_seconds": round(first_line, 2)} if first_line is not None else {}),
    }


def train_on(corpus: Path, out: Path, steps: int) -> dict:
    cmd = [sys.executable, "-m", "gptlab", "train", "--data", str(corpus), "--out", str(out), "--model", "tiny",
           "--seq-len", "256", "--batch-size", "8", "--max-steps", str(steps), "--log-every", "1",
           "--eval-every", str(steps), "--eval-windows", "16", "--sample-tokens", "0", "--no-progress"]
    result = run_measured(cmd, watch=out / "metrics.jsonl")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    result["losses"] = [round(row["loss"], 4) for row in rows if "loss" in row][:3]
    return result


def import_seconds() -> float:
    """The start-up every training process pays before it reads data: Python, PyTorch, the trainer."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import gptlab.train.trainer"], check=True)
    return round(time.perf_counter() - start, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=4.0, help="GB of token shards to train on (2 bytes a token)")
    parser.add_argument("--mix-gb", type=float, default=2.0, help="GB of JSONL text to mix; 0 skips the mix")
    parser.add_argument("--steps", type=int, default=10, help="training steps per run")
    parser.add_argument("--workers", type=int, default=2, help="--workers of gptlab data mix")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", type=Path, default=None, help="a new or empty folder to write in; default: a temporary one")
    parser.add_argument("--keep", action="store_true", help="leave what was written in place")
    args = parser.parse_args()
    if args.dir is not None and args.dir.exists() and any(args.dir.iterdir()):
        parser.error(f"--dir {args.dir} is not empty; give a new or empty folder")

    made = args.dir is None or not args.dir.exists()
    root = args.dir or Path(tempfile.mkdtemp(prefix="gptlab-data-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    report: dict = {"benchmark": "data_scale", "cpus": os.cpu_count(), "dir": str(root)}
    try:
        training: dict = {"import_seconds": import_seconds()}
        for name, gb in (("full", args.gb), ("tenth", args.gb / 10)):
            corpus = root / f"tokens-{name}"
            written = write_token_corpus(corpus, int(gb * 1e9) // 2, args.seed)
            training[name] = {"corpus": written, **train_on(corpus, root / f"run-{name}", args.steps)}
        report["train"] = training
        if args.mix_gb > 0:
            start = time.perf_counter()
            files = write_text_corpus(root / "text", int(args.mix_gb * 1e9), args.seed)
            sample = [json.loads(line)["text"] for line in files[0].read_text().splitlines()[:500]]
            train_tokenizer_on_texts(sample, 2048, progress=False).save(root / "tokenizer")
            setup = time.perf_counter() - start
            web, books = files[: len(files) * 3 // 4], files[len(files) * 3 // 4 :]
            cmd = [sys.executable, "-m", "gptlab", "data", "mix", "--input",
                   *(f"web={f}" for f in web), *(f"books={f}" for f in books), "--weight", "web=3", "books=1",
                   "--tokenizer", str(root / "tokenizer"), "--output", str(root / "mixed"), "--workers", str(args.workers)]
            mixed = run_measured(cmd)
            stats = json.loads((root / "mixed" / "stats.json").read_text())
            text_gb = stats["bytes_in"] / 1e9
            report["mix"] = {
                "text_gb": round(text_gb, 3), "files": len(files), "documents_in": stats["documents_in"],
                "documents_written": stats["documents_written"], "tokens_written": stats["tokens_written"],
                "setup_seconds": round(setup, 1), **mixed, "mb_per_s": round(text_gb * 1e3 / mixed["seconds"], 1),
            }
    finally:
        if not args.keep:
            for child in root.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
            if made:
                root.rmdir()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
