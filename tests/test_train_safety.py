"""A run directory is never silently shared, resumed under other settings, or lost to Ctrl-C."""

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY_TRAIN, assert_one_line_error, gptlab_cli, losses, rewind, run_cli, train_cli

from gptlab.cli.main import main
from gptlab.data.shards import read_index
from gptlab.errors import GptlabError
from gptlab.train import build_config, train
from gptlab.train.run_dir import LOCK_FILE, locked, stop_on_signal


def wait_for(condition, process, what: str, seconds: float = 300) -> None:
    deadline = time.time() + seconds
    while not condition():
        assert process.poll() is None, f"the run ended before {what}: {process.communicate()[1][-2000:]}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def steps_saved(out: Path) -> list[int]:
    return sorted(int(p.name.split("_")[1]) for p in (out / "checkpoints").glob("step_*"))


# --- one run per directory -------------------------------------------------------------------------


def test_a_second_run_into_a_busy_directory_is_refused_and_a_kill_frees_it(tmp_path, corpus):
    out = tmp_path / "run"
    args = ["--data", corpus, "--tokenizer", "byte", "--save-every", 5, "--eval-every", 1000, *TINY_TRAIN]
    first = train_cli(*args, "--max-steps", 100_000, "--out", out, wait=False)
    try:
        wait_for(lambda: steps_saved(out), first, "its first checkpoint")
        settings = (out / "train_config.json").read_bytes()
        second = train_cli(*args, "--max-steps", 3, "--lr", 0.5, "--out", out)
        assert_one_line_error(second, "in use by another gptlab run")
        assert f"pid {first.pid}" in second.stderr
        assert (out / "train_config.json").read_bytes() == settings
        resumed_too = train_cli(*args, "--max-steps", 100_000, "--out", out, "--resume")
        assert_one_line_error(resumed_too, "in use by another gptlab run")
    finally:
        first.kill()
        first.wait()
    with locked(out):  # the kernel released the killed run's lock
        assert (out / LOCK_FILE).read_text().strip() == str(os.getpid())


def test_the_library_refuses_a_locked_directory(tmp_path, corpus):
    config = build_config(None, {"data": [str(corpus)], "out": str(tmp_path / "run"), "max_steps": 1, "progress": False})
    with locked(tmp_path / "run"), pytest.raises(GptlabError, match="in use"):
        train(config)


# --- resume under the run's own settings -------------------------------------------------------------


@pytest.mark.parametrize(
    "change, listed",
    [
        (["--lr", "0.002"], "lr 0.001 -> 0.002"),
        (["--batch-size", "4"], "batch_size 8 -> 4"),
        (["--n-layer", "3"], "model_overrides"),
        (["--model", "mini"], "model 'tiny' -> 'mini'"),
        (["--seed", "7"], "seed 1337 -> 7"),
    ],
)
def test_resume_with_changed_settings_is_refused(tmp_path, corpus, change, listed):
    out = tmp_path / "run"
    args = ["--data", corpus, "--tokenizer", "byte", "--save-every", 2, "--eval-every", 100, "--out", out, *TINY_TRAIN]
    assert train_cli(*args, "--max-steps", 2).returncode == 0
    refused = train_cli(*args, "--max-steps", 4, "--resume", *change)
    assert_one_line_error(refused, listed)
    assert steps_saved(out) == [2]


def test_resume_with_other_data_is_refused_and_max_steps_may_grow(tmp_path, corpus):
    out = tmp_path / "run"
    other = tmp_path / "other.txt"
    other.write_text(corpus.read_text()[:50_000])
    args = ["--tokenizer", "byte", "--save-every", 2, "--eval-every", 100, "--out", out, *TINY_TRAIN]
    assert train_cli("--data", corpus, *args, "--max-steps", 2).returncode == 0
    assert_one_line_error(train_cli("--data", other, *args, "--max-steps", 4, "--resume"), "data")
    assert_one_line_error(train_cli("--data", corpus, *args, "--max-steps", 2, "--resume"), "already at step 2")
    extended = train_cli("--data", corpus, *args, "--max-steps", 4, "--resume", "--log-every", 2)
    assert extended.returncode == 0, extended.stderr
    assert "from step 2" in extended.stderr
    assert steps_saved(out)[-1] == 4 and max(losses(out)) == 4


# --- Ctrl-C and SIGTERM save before stopping ----------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_saves_the_current_step_and_says_how_to_resume(tmp_path, corpus, signum):
    out = tmp_path / "run"
    args = ["--data", corpus, "--tokenizer", "byte", "--save-every", 10_000, "--eval-every", 10_000, "--out", out, *TINY_TRAIN]
    process = train_cli(*args, "--max-steps", 100_000, wait=False)
    wait_for(lambda: (out / "metrics.jsonl").is_file() and len(losses(out)) >= 3, process, "three steps")
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, stderr
    (saved,) = steps_saved(out)  # none was due: this one was written because of the signal
    assert saved >= 3 and max(losses(out)) == saved
    last = stderr.strip().splitlines()[-1]
    assert f"stopped by {signal.Signals(signum).name} at step {saved}" in last and "Traceback" not in stderr
    command = last.split("continue with: ")[1]
    assert command.startswith("gptlab train ") and command.endswith(" --resume")
    resumed = gptlab_cli(*command.split()[1:], "--max-steps", saved + 2)
    assert resumed.returncode == 0, resumed.stderr
    assert f"from step {saved}" in resumed.stderr and max(losses(out)) == saved + 2


def test_a_second_ctrl_c_quits_at_once(tmp_path, corpus):
    out = tmp_path / "run"
    args = ["--data", corpus, "--tokenizer", "byte", "--save-every", 10_000, "--eval-every", 10_000, "--out", out, *TINY_TRAIN]
    # a model whose step takes seconds, so the second signal lands before the step and its save end
    big = ["--d-model", 512, "--n-layer", 4, "--n-head", 8, "--seq-len", 128, "--batch-size", 32]
    process = train_cli(*args, "--max-steps", 100_000, *big, wait=False)
    wait_for(lambda: (out / "metrics.jsonl").is_file() and losses(out), process, "a step")
    process.send_signal(signal.SIGINT)
    while "Ctrl-C again" not in (line := process.stderr.readline()):
        assert line, "the run ended without acknowledging Ctrl-C"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    assert stderr.strip().splitlines()[-1] == "gptlab: interrupted"
    assert not (out / "checkpoints").is_dir() or not steps_saved(out)
    assert not list(out.rglob(".*.tmp")), "a temporary checkpoint was left behind"


def test_stop_on_signal_asks_once_then_quits():
    before = signal.getsignal(signal.SIGINT)  # Python's own, or SIG_IGN under a shell's `&` without job control
    with stop_on_signal() as stop:
        assert not stop
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.signum == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    assert signal.getsignal(signal.SIGINT) is before


# --- token shards bring their tokenizer ----------------------------------------------------------------


@pytest.fixture()
def shards(tmp_path, corpus, small_tokenizer, capsys) -> Path:
    """`gptlab data mix`'s output, as its summary tells the user to train on it."""
    small_tokenizer.save(tmp_path / "tok")
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "a.jsonl").write_text(
        "".join(json.dumps({"text": corpus.read_text()[i : i + 2000]}) + "\n" for i in range(0, 60_000, 2000))
    )
    main(["data", "mix", "--input", f"web={tmp_path / 'web'}", "--weight", "web=1", "--tokenizer",
          str(tmp_path / "tok"), "--output", str(tmp_path / "shards"), "--workers", "1"])
    assert f"gptlab train --data {tmp_path / 'shards'}" in capsys.readouterr().out  # the command tried below
    return tmp_path / "shards"


def test_token_shards_train_with_their_own_tokenizer(tmp_path, shards, small_tokenizer):
    assert read_index(shards)["vocab_size"] > 256  # more than the byte tokenizer's
    out = tmp_path / "run"
    result = train_cli("--data", shards, "--max-steps", 1, "--out", out, *TINY_TRAIN)
    assert result.returncode == 0, result.stderr
    import gptlab

    assert gptlab.load(out / "final").tokenizer.vocab_size == small_tokenizer.vocab_size
    same = train_cli("--data", shards, "--tokenizer", tmp_path / "tok", "--max-steps", 1, "--out", tmp_path / "run2", *TINY_TRAIN)
    assert same.returncode == 0, same.stderr


def test_a_conflicting_tokenizer_for_token_shards_is_one_line(tmp_path, shards, corpus_text):
    from gptlab.tokenizer import train_tokenizer_on_texts

    train_tokenizer_on_texts([corpus_text[:100_000]], 512, progress=False).save(tmp_path / "other")
    for tokenizer in ("byte", tmp_path / "other", "char", "bpe:300"):
        result = train_cli("--data", shards, "--tokenizer", tokenizer, "--max-steps", 1, "--out", tmp_path / "x", *TINY_TRAIN)
        assert_one_line_error(result, "tokenizer")
        assert not (tmp_path / "x" / "checkpoints").exists()


# --- a resume continues the run it names: its own settings, its own data ---------------------------------


def test_a_resume_keeps_every_setting_it_is_not_given_and_says_when_the_schedule_changes(tmp_path, corpus):
    out = tmp_path / "run"
    run = gptlab_cli("train", "--data", corpus, "--tokenizer", "byte", "--save-every", 2, "--eval-every", 100,
                     "--keep-checkpoints", 10, "--out", out, "--max-steps", 6, *TINY_TRAIN)
    assert run.returncode == 0, run.stderr
    rewind(out, 2)
    resumed = gptlab_cli("train", "--out", out, "--resume")  # data, model, recipe and max_steps: the run's own
    assert resumed.returncode == 0, resumed.stderr
    assert "from step 2" in resumed.stderr and "max_steps" not in resumed.stderr
    assert max(losses(out)) == 6 and (out / "final").is_dir()
    assert json.loads((out / "train_config.json").read_text())["max_steps"] == 6

    rewind(out, 2)
    shorter = gptlab_cli("train", "--out", out, "--resume", "--max-steps", 4)
    assert shorter.returncode == 0, shorter.stderr
    (warning,) = [line for line in shorter.stderr.splitlines() if line.startswith("warning: max_steps 6 -> 4")]
    assert "laid out for 6 steps" in warning and max(losses(out)) == 4


def test_a_resume_of_a_yaml_run_needs_no_yaml(tmp_path, corpus):
    out = tmp_path / "run"
    config = tmp_path / "run.yaml"
    config.write_text(f"data: [{corpus}]\ntokenizer: byte\nmodel: tiny\nn_layer: 1\nd_model: 32\nn_head: 2\nseq_len: 32\n"
                      f"batch_size: 4\nmax_steps: 4\nsave_every: 2\neval_every: 100\nkeep_checkpoints: 10\nlr: 0.003\n"
                      f"out: {out}\nthreads: 1\nprogress: false\nsample_tokens: 0\n")
    assert gptlab_cli("train", config).returncode == 0
    rewind(out, 2)
    resumed = gptlab_cli("train", "--out", out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert max(losses(out)) == 4
    settings = json.loads((out / "train_config.json").read_text())
    assert settings["lr"] == 0.003 and settings["model_overrides"]["n_layer"] == 1


def test_a_resume_on_changed_data_is_refused_naming_the_file(tmp_path, corpus, capsys):
    data = tmp_path / "data"
    data.mkdir()
    text = corpus.read_text()
    (data / "a.txt").write_text(text[:100_000])
    (data / "b.txt").write_text(text[100_000:])
    out = tmp_path / "run"
    args = ["--data", data, "--tokenizer", "byte", "--save-every", 2, "--eval-every", 100, "--out", out, *TINY_TRAIN]
    assert gptlab_cli("train", *args, "--max-steps", 4).returncode == 0
    rewind(out, 2)
    (data / "b.txt").write_text(text[100_000:].swapcase())  # the same size, other content
    refused = run_cli(capsys, "train", *args, "--max-steps", 4, "--resume")  # refused before any work: in-process
    line = assert_one_line_error(refused, "b.txt (changed)", "training data")
    assert "a.txt" not in line and not (out / "final").exists()

    # a run saved before data fingerprints were recorded still resumes
    state_file = out / "checkpoints" / "step_0000002" / "train_state.pt"
    state = torch.load(state_file, weights_only=True)
    del state["data"]
    torch.save(state, state_file)
    resumed = gptlab_cli("train", *args, "--max-steps", 4, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert max(losses(out)) == 4


def test_a_resume_on_rewritten_token_shards_is_refused(tmp_path, shards, capsys):
    out = tmp_path / "run"
    args = ["--data", shards, "--save-every", 1, "--eval-every", 100, "--out", out, *TINY_TRAIN]
    assert gptlab_cli("train", *args, "--max-steps", 2).returncode == 0
    rewind(out, 1)
    shard = shards / read_index(shards)["shards"][0]["file"]
    tokens = np.fromfile(shard, dtype=read_index(shards)["dtype"])
    tokens[::-1].tofile(shard)  # the same tokens, so the same size and vocabulary, in another order
    assert_one_line_error(run_cli(capsys, "train", *args, "--max-steps", 2, "--resume"), f"{shard.name} (changed)")
