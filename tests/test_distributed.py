"""Training on two CPU processes (torchrun, gloo) against one process with the same global batch.

Both strategies split each batch into equal per-process shares and average gradients, so the math
is the single-process math; only the order of floating-point sums changes. That shifts losses by
~1e-7 relative and weights by ~1e-6 after a few Adam steps, hence rtol 1e-5 and atol 1e-4.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import gptlab
from gptlab.cli.main import main
from gptlab.errors import GptlabError
from gptlab.train.distributed import micro_batch

STEPS = 6
# A schedule that does not depend on --max-steps, so a run stopped at step 3 and resumed repeats it;
# micro-batches of 2 exercise gradient accumulation (no_sync under DDP), and grad_clip 0.1 is active.
ARGS = ["--tokenizer", "byte", "--model", "tiny", "--n-layer", "2", "--d-model", "32", "--n-head", "2",
        "--seq-len", "16", "--batch-size", "8", "--micro-batch-size", "2", "--grad-clip", "0.1", "--lr", "1e-2",
        "--warmup-steps", "2", "--lr-decay-steps", str(STEPS), "--save-every", "3", "--eval-every", "1000",
        "--eval-windows", "32", "--sample-tokens", "4", "--log-every", "1", "--threads", "1", "--no-progress"]


def train(corpus: Path, out: Path, *args: str, procs: int = 1) -> Path:
    """Run `gptlab train` as users do: plainly, or under torchrun with `procs` processes."""
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs)] if procs > 1 else []
    cmd = [sys.executable, *launcher, "-m", "gptlab", "train", "--data", str(corpus), "--out", str(out),
           "--max-steps", str(STEPS), *ARGS, *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # as --threads 1; spares torchrun's notice about it
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def metrics(out: Path) -> tuple[dict[int, float], float]:
    """Training loss per step, and the final validation loss."""
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}, [r["val_loss"] for r in rows if "val_loss" in r][-1]


def assert_same_training(run: Path, reference: Path) -> None:
    got, got_val = metrics(run)
    want, want_val = metrics(reference)
    assert got, f"no losses logged in {run}"
    assert got == pytest.approx({step: want[step] for step in got}, rel=1e-5)
    assert got_val == pytest.approx(want_val, rel=1e-5)
    weights = load_file(str(run / "final" / "model.safetensors"))
    expected = load_file(str(reference / "final" / "model.safetensors"))
    assert weights.keys() == expected.keys()
    for key in weights:
        torch.testing.assert_close(weights[key], expected[key], rtol=0, atol=1e-4, msg=key)


def resume_from(checkpoint: Path, out: Path) -> Path:
    """A fresh run directory holding only `checkpoint`, as if the run had been stopped there."""
    shutil.copytree(checkpoint, out / "checkpoints" / checkpoint.name)
    return out


@pytest.fixture(scope="module")
def single(corpus, tmp_path_factory) -> Path:
    return train(corpus, tmp_path_factory.mktemp("single"))


@pytest.fixture(scope="module")
def two(corpus, tmp_path_factory) -> dict[str, Path]:
    """A two-process run of each strategy."""
    return {s: train(corpus, tmp_path_factory.mktemp(s), "--distributed", s, procs=2) for s in ("ddp", "fsdp")}


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_match_one(single, two, strategy):
    assert_same_training(two[strategy], single)


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_process_checkpoint_resumes_in_one_process(corpus, tmp_path, single, two, strategy):
    out = resume_from(two[strategy] / "checkpoints" / "step_0000003", tmp_path / "resumed")
    train(corpus, out, "--resume")
    assert sorted(metrics(out)[0]) == [4, 5, 6]
    assert_same_training(out, single)


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_one_process_checkpoint_resumes_in_two(corpus, tmp_path, single, strategy):
    out = resume_from(single / "checkpoints" / "step_0000003", tmp_path / "resumed")
    train(corpus, out, "--resume", "--distributed", strategy, procs=2)
    assert sorted(metrics(out)[0]) == [4, 5, 6]
    assert_same_training(out, single)


def test_fsdp_checkpoints_are_ordinary_checkpoints(single, two, capsys):
    for path in (two["fsdp"] / "final", two["fsdp"] / "checkpoints" / "step_0000003"):
        lm = gptlab.load(path)
        assert lm.config == gptlab.load(single / "final").config
        assert isinstance(lm.generate("ROMEO:", max_new_tokens=4, temperature=0), str)
    main(["generate", str(two["fsdp"] / "final"), "--prompt", "ROMEO:", "--max-new-tokens", "8", "--seed", "0"])
    assert capsys.readouterr().out.strip()


@pytest.mark.parametrize(
    ("batch", "micro", "message"),
    [(7, None, "does not split evenly over 2 processes"), (1, None, "does not split evenly"),
     (8, 3, "multiple of micro_batch_size 3 x 2 processes")],
)
def test_batch_that_does_not_split_over_two_processes_is_a_clear_error(batch, micro, message):
    with pytest.raises(GptlabError, match=message):
        micro_batch(batch, micro, 2)


def test_micro_batch_defaults_to_each_process_share():
    assert micro_batch(8, None, 2) == 4
    assert micro_batch(8, 2, 2) == 2


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_fine_tuning_on_two_processes_matches_one(tmp_path, strategy):
    """A GPT-1 task fine-tune runs through the same loop, so torchrun splits it the same way."""
    from test_finetune import write_rows

    base = tmp_path / "base"
    torch.manual_seed(0)
    gptlab.save(base, gptlab.GPT(gptlab.preset("tiny", n_layer=2, d_model=32, n_head=2, n_ctx=64, vocab_size=257)),
                gptlab.tokenizer.byte_tokenizer())
    train_rows = write_rows(tmp_path / "train.jsonl", "entailment", 64, seed=0)
    args = ["--task", "entailment", "--train", str(train_rows), "--max-steps", "4", "--batch-size", "8",
            "--micro-batch-size", "2", "--lr", "1e-3", "--clf-pdrop", "0", "--log-every", "1", "--threads", "1",
            "--no-progress", "--distributed", strategy]
    runs = {}
    for procs in (1, 2):
        launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs)] if procs > 1 else []
        out = tmp_path / f"run{procs}"
        done = subprocess.run([sys.executable, *launcher, "-m", "gptlab", "finetune", str(base), *args, "--out", str(out)],
                              capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert done.returncode == 0, done.stderr[-3000:]
        runs[procs] = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for key in ("loss", "val_loss"):
        one, two = ({r["step"]: r[key] for r in rows if key in r} for rows in (runs[1], runs[2]))
        assert one and two == pytest.approx(one, rel=1e-5), key
