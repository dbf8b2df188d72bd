"""Few-shot multiple-choice evaluation: lm-evaluation-harness's `hf` backend vs `gptlab eval`.

The same task file (JSONL + YAML) and the same random-weight GPT-2-shaped model (a gptlab checkpoint,
exported to a transformers directory for the harness) at K shots. Both must give identical accuracies;
the figure is the wall-clock ratio of the two evaluations (model loading excluded on both sides).
The tokenizer is a BPE trained here on the standard library's source (nothing is downloaded), so the
vocabulary is smaller than GPT-2's 50,257; the transformer body is GPT-2's.

    python benchmarks/eval_speed.py [--model gpt2] [--docs 40] [--shots 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sysconfig
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def corpus(n_files: int = 60) -> list[str]:
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:n_files]
    return [f.read_text(encoding="utf-8", errors="replace") for f in files]


def write_task(folder: Path, words: list[str], docs: int, seed: int = 0) -> Path:
    rng = random.Random(seed)

    def sentence(lo: int, hi: int) -> str:
        return " ".join(rng.choice(words) for _ in range(rng.randint(lo, hi)))

    def rows(n: int) -> str:
        return "".join(json.dumps({"question": sentence(15, 40), "choices": [sentence(2, 8) for _ in range(4)],
                                   "label": rng.randrange(4)}) + "\n" for _ in range(n))

    (folder / "train.jsonl").write_text(rows(50))
    (folder / "test.jsonl").write_text(rows(docs))
    config = {
        "task": "bench_mc", "dataset_path": "json", "output_type": "multiple_choice",
        "dataset_kwargs": {"data_files": {"train": str(folder / "train.jsonl"), "test": str(folder / "test.jsonl")}},
        "training_split": "train", "test_split": "test", "description": "Choose the continuation.\n\n",
        "doc_to_text": "Question: {{question}}\nAnswer:", "doc_to_choice": "{{choices}}", "doc_to_target": "{{label}}",
        "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}],
    }
    (folder / "bench_mc.yaml").write_text(json.dumps(config))
    return folder / "bench_mc.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gpt2", help="gptlab preset for the model's shape (default gpt2)")
    parser.add_argument("--docs", type=int, default=40, help="test documents (default 40)")
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    import gptlab
    from gptlab.checkpoint.hf import export_hf
    from gptlab.model import GPT, preset
    from gptlab.tokenizer import train_tokenizer_on_texts

    torch.set_num_threads(args.threads)
    texts = corpus()
    tokenizer = train_tokenizer_on_texts(texts, 8192, progress=False)
    words = sorted({w for t in texts for w in t.split() if w.isalpha()})
    torch.manual_seed(0)
    model = GPT(preset(args.model, vocab_size=tokenizer.vocab_size))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ckpt = gptlab.save(root / "ckpt", model, tokenizer)
        hf_dir = export_hf(ckpt, root / "hf")
        (root / "task").mkdir()
        task_path = write_task(root / "task", words, args.docs)

        lm = gptlab.load(ckpt)
        start = time.perf_counter()
        ours = gptlab.evaluate(lm, tasks=[str(task_path)], shots=[args.shots], batch_size=args.batch_size,
                               out=root / "eval")  # task loading and the files written included
        gptlab_seconds = time.perf_counter() - start
        ours = ours.results["tasks"]["bench_mc"]["shots"][str(args.shots)]

        hf = HFLM(pretrained=str(hf_dir), dtype="float32", batch_size=args.batch_size, device="cpu")
        start = time.perf_counter()
        theirs = simple_evaluate(
            model=hf, tasks=["bench_mc"], num_fewshot=args.shots, bootstrap_iters=1,
            task_manager=TaskManager(include_path=str(task_path.parent), include_defaults=False),
        )["results"]["bench_mc"]
        harness_seconds = time.perf_counter() - start

    same = (ours["metrics"]["acc"]["value"] == theirs["acc,none"]
            and ours["metrics"]["acc_norm"]["value"] == theirs["acc_norm,none"] and ours["capped"] == 0)
    print(json.dumps({
        "model": f"{args.model} shape, random weights, {tokenizer.vocab_size}-token BPE",
        "params": model.num_params(), "docs": args.docs, "choices": 4, "shots": args.shots,
        "batch_size": args.batch_size, "threads": args.threads,
        "acc": ours["metrics"]["acc"]["value"], "acc_norm": ours["metrics"]["acc_norm"]["value"],
        "identical_numbers": same,
        "lm_eval_hf_seconds": round(harness_seconds, 2), "gptlab_seconds": round(gptlab_seconds, 2),
        "speedup": round(harness_seconds / gptlab_seconds, 2),
    }, indent=2))


if __name__ == "__main__":
    main()
