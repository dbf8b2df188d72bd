"""Training on two CPU processes (torchrun, gloo) against one process with the same global batch.

Both strategies split each batch into equal per-process shares and average gradients, so the math
is the single-process math; only the order of floating-point sums changes. That shifts losses by
~1e-7 relative and weights by ~1e-6 after a few Adam steps, hence rtol 1e-5 and atol 1e-4.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import gptlab
from gptlab.cli.main import main
from gptlab.errors import GptlabError
from gptlab.train.checkpointing import load_latest
from gptlab.train.distributed import micro_batch

STEPS = 6
# A schedule that does not depend on --max-steps, so a run stopped at step 3 and resumed repeats it;
# micro-batches of 2 exercise gradient accumulation (no_sync under DDP), and grad_clip 0.1 is active.
# fp32, because bf16 (the default on a CPU with native bf16) rounds the split sums differently from the whole.
ARGS = ["--precision", "fp32", "--tokenizer", "byte", "--model", "tiny", "--n-layer", "2", "--d-model", "32", "--n-head", "2",
        "--seq-len", "16", "--batch-size", "8", "--micro-batch-size", "2", "--grad-clip", "0.1", "--lr", "1e-2",
        "--warmup-steps", "2", "--lr-decay-steps", str(STEPS), "--save-every", "3", "--eval-every", "1000",
        "--eval-windows", "32", "--sample-tokens", "4", "--log-every", "1", "--threads", "1", "--no-progress"]


ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # as --threads 1; spares torchrun's notice about it


def command(corpus: Path, out: Path, *args: str, procs: int = 1) -> list[str]:
    """`gptlab train` as users run it: plainly, or under torchrun with `procs` processes."""
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs)] if procs > 1 else []
    return [sys.executable, *launcher, "-m", "gptlab", "train", "--data", str(corpus), "--out", str(out),
            "--max-steps", str(STEPS), *ARGS, *args]


def train(corpus: Path, out: Path, *args: str, procs: int = 1) -> Path:
    done = subprocess.run(command(corpus, out, *args, procs=procs), check=False, capture_output=True, text=True,
                          timeout=300, env=ENV)
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
    """FSDP's checkpoint is sharded: one process reads both processes' shards."""
    checkpoint = two[strategy] / "checkpoints" / "step_0000003"
    assert (checkpoint / "dcp").is_dir() == (strategy == "fsdp")
    out = resume_from(checkpoint, tmp_path / "resumed")
    train(corpus, out, "--resume")
    assert sorted(metrics(out)[0]) == [4, 5, 6]
    assert_same_training(out, single)


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_one_process_checkpoint_resumes_in_two(corpus, tmp_path, single, strategy):
    out = resume_from(single / "checkpoints" / "step_0000003", tmp_path / "resumed")
    train(corpus, out, "--resume", "--distributed", strategy, procs=2)
    assert sorted(metrics(out)[0]) == [4, 5, 6]
    assert_same_training(out, single)


def test_fsdp_checkpoints_load_like_any_checkpoint(single, two, capsys):
    """The sharded step checkpoints too: gptlab.load reads their weights from the shard files."""
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
            "--no-progress", "--distributed", strategy, "--precision", "fp32"]
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


# --- sharded checkpoints: FSDP's default, each process writes its own part --------------------------


def test_fsdp_writes_sharded_checkpoints_and_a_one_file_final(two):
    run = two["fsdp"]
    for step in ("step_0000003", "step_0000006"):
        path = run / "checkpoints" / step
        shards = sorted(p.name for p in (path / "dcp").iterdir())
        assert shards == [".metadata", "__0_0.distcp", "__1_0.distcp"]
        assert not (path / "model.safetensors").exists()
        assert "optimizer" not in torch.load(path / "train_state.pt", weights_only=True)
        sizes = [(path / "dcp" / name).stat().st_size for name in shards[1:]]
        assert max(sizes) < 0.7 * sum(sizes), f"one process wrote (nearly) everything: {sizes}"
    assert (run / "final" / "model.safetensors").is_file() and not (run / "final" / "dcp").exists()
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")], "temporary directories left"


def kill_all(process: subprocess.Popen) -> None:
    """SIGKILL torchrun and its workers together, as a machine failure would (the workers run in sessions of their own)."""
    workers = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    process.kill()
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    process.wait()


def test_sharded_checkpoint_resumes_bit_exact_after_sigkill(corpus, tmp_path, two):
    """Killed mid-run and resumed from step 3 in two processes, the run repeats the uninterrupted one bit for bit.

    The killed run is given 1000 steps so that it cannot finish first (the schedule ends at step 6 either way);
    checkpoints it wrote after step 3 before the kill landed are dropped, as if the kill had come right after it.
    """
    out = tmp_path / "killed"
    process = subprocess.Popen(command(corpus, out, "--distributed", "fsdp", "--max-steps", "1000", procs=2), env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "checkpoints" / "step_0000003").is_dir():
        assert process.poll() is None and time.time() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.01)
    kill_all(process)
    for later in (out / "checkpoints").glob("step_*"):
        if later.name != "step_0000003":
            shutil.rmtree(later)
    train(corpus, out, "--distributed", "fsdp", "--resume", procs=2)
    assert metrics(out) == metrics(two["fsdp"])
    weights = load_file(str(out / "final" / "model.safetensors"))
    expected = load_file(str(two["fsdp"] / "final" / "model.safetensors"))
    assert weights.keys() == expected.keys() and all(torch.equal(weights[k], expected[k]) for k in weights)
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".")], "a partial save was left behind"


def test_one_process_writes_sharded_checkpoints_that_resume_in_two(corpus, tmp_path, single):
    """`--checkpoint-format sharded` in one process: one shard file, and the run computes exactly what it would
    with full checkpoints; two processes then reshard it and continue as one process would (to rtol 1e-5)."""
    run = train(corpus, tmp_path / "sharded", "--checkpoint-format", "sharded")
    checkpoint = run / "checkpoints" / "step_0000003"
    assert sorted(p.name for p in (checkpoint / "dcp").iterdir()) == [".metadata", "__0_0.distcp"]
    assert metrics(run) == metrics(single)
    out = resume_from(checkpoint, tmp_path / "resumed")
    train(corpus, out, "--resume", "--distributed", "fsdp", procs=2)
    assert sorted(metrics(out)[0]) == [4, 5, 6]
    assert_same_training(out, single)


def test_convert_makes_a_sharded_checkpoint_one_file_with_the_same_logits(tmp_path, single, two):
    sharded = two["fsdp"] / "checkpoints" / "step_0000006"
    main(["convert", str(sharded), str(tmp_path / "one"), "--to", "gptlab"])
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == ["config.json", "merges.txt", "model.safetensors", "vocab.json"]
    assert json.loads((tmp_path / "one" / "config.json").read_text())["training"] == {"step": 6}
    ids = torch.tensor([list(b"ROMEO: What say you?")[:16]])
    with torch.no_grad():
        logits = gptlab.load(tmp_path / "one").model(ids)
        # the run's own final/ is exactly these weights; one process's run of the same steps agrees to float error
        assert torch.equal(logits, gptlab.load(two["fsdp"] / "final").model(ids))
        torch.testing.assert_close(logits, gptlab.load(single / "final").model(ids), rtol=1e-5, atol=1e-4)
        main(["convert", str(sharded), str(tmp_path / "hf"), "--to", "hf"])
        main(["convert", str(tmp_path / "hf"), str(tmp_path / "back"), "--to", "gptlab"])
        torch.testing.assert_close(gptlab.load(tmp_path / "back").model(ids), logits)


def test_a_damaged_shard_falls_back_to_the_previous_checkpoint(tmp_path, two, capsys):
    for step in ("step_0000003", "step_0000006"):
        shutil.copytree(two["fsdp"] / "checkpoints" / step, tmp_path / "checkpoints" / step)
    shard = tmp_path / "checkpoints" / "step_0000006" / "dcp" / "__1_0.distcp"
    shard.write_bytes(shard.read_bytes()[:1000])
    resumed = load_latest(tmp_path, "cpu")
    assert resumed.path.name == "step_0000003" and resumed.sharded
    assert "skipping checkpoint step_0000006" in capsys.readouterr().err
    with pytest.raises(GptlabError, match="__1_0.distcp is missing or truncated"):
        gptlab.load(tmp_path / "checkpoints" / "step_0000006")
