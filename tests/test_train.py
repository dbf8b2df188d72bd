"""Pretraining as users run it: real `gptlab train` processes, killed and resumed, compared bit for bit."""

import json
import math
import subprocess
import sys

import pytest
import torch
from helpers import TINY_TRAIN, assert_one_line_error, assert_same_weights, gptlab_cli, kill_at, losses, run_cli, train_cli
from safetensors.torch import load_file

import gptlab
from gptlab.errors import GptlabError
from gptlab.model import GPT, preset
from gptlab.train import TrainConfig, build_config
from gptlab.train.optim import batch_size_at, build_optimizer, lr_at, lr_at_time

# --- the recipe --------------------------------------------------------------------------------


def test_lr_schedule_is_warmup_then_cosine_to_ten_percent():
    config = TrainConfig(data=["x"], max_steps=1000, warmup_steps=100)
    assert lr_at(0, config, 1.0) == pytest.approx(0.01)
    assert lr_at(99, config, 1.0) == pytest.approx(1.0)
    assert lr_at(550, config, 1.0) == pytest.approx(0.55)  # halfway down the cosine: (1 + 0.1) / 2
    assert lr_at(1000, config, 1.0) == pytest.approx(0.1)
    assert lr_at(5000, config, 1.0) == pytest.approx(0.1)
    values = [lr_at(s, config, 1.0) for s in range(100, 1000)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_time_budget_schedule_warms_up_then_decays_over_the_budget():
    config = TrainConfig(data=["x"], max_minutes=10, warmup_steps=100)
    assert lr_at_time(0, 0.0, config, 1.0) == pytest.approx(0.01)
    assert lr_at_time(49, 0.001, config, 1.0) == pytest.approx(0.5)
    assert lr_at_time(5, 0.1, config, 1.0) == pytest.approx(1.0, rel=0.03)  # warmup ends by a tenth of the budget
    assert lr_at_time(10**6, 0.55, config, 1.0) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 0.55)))
    assert lr_at_time(10**6, 1.0, config, 1.0) == pytest.approx(0.1)
    linear = TrainConfig(data=["x"], max_minutes=10, warmup_steps=0, lr_schedule="linear")
    assert lr_at_time(0, 0.5, linear, 1.0) == pytest.approx(0.55)
    values = [lr_at_time(s, s / 1000, config, 1.0) for s in range(100, 1000)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_batch_ramp_grows_in_micro_batch_multiples():
    config = TrainConfig(data=["x"], batch_size=64, micro_batch_size=8, batch_ramp_steps=100, batch_ramp_start=8)
    sizes = [batch_size_at(s, config, 8) for s in range(0, 120)]
    assert sizes[0] == 8 and sizes[-1] == 64 and all(s % 8 == 0 for s in sizes)
    assert all(a <= b for a, b in zip(sizes, sizes[1:]))


def test_presets_carry_the_papers_learning_rate_and_batch():
    from gptlab.train.prepare import with_paper_defaults

    small = with_paper_defaults(TrainConfig(data=["x"], model="gpt3-small"), 2048)
    assert (small.lr, small.batch_size) == (6e-4, 244)  # 0.5M tokens of 2048
    big = with_paper_defaults(TrainConfig(data=["x"], model="gpt3-175b"), 2048)
    assert (big.lr, big.batch_size) == (0.6e-4, 1562)  # 3.2M tokens
    assert with_paper_defaults(TrainConfig(data=["x"], model="gpt2"), 1024).batch_size == 512
    mine = with_paper_defaults(TrainConfig(data=["x"], model="gpt3-small", lr=1e-3, batch_size=8), 2048)
    assert (mine.lr, mine.batch_size) == (1e-3, 8)
    assert with_paper_defaults(TrainConfig(data=["x"], model="tiny"), 128).batch_size == 12


def test_weight_decay_only_on_matrices():
    model = GPT(preset("tiny"))
    optimizer = build_optimizer(model, TrainConfig(data=["x"]), 1e-3)
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() == 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    assert sum(p.numel() for g in optimizer.param_groups for p in g["params"]) == model.num_params()
    assert optimizer.defaults["betas"] == (0.9, 0.95) and optimizer.defaults["eps"] == 1e-8


# --- configuration -----------------------------------------------------------------------------


def test_yaml_then_command_line(tmp_path):
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("data: [a.txt]\nmodel: gpt3-small\nn_layer: 2\nlr: 1.0e-3\nbatch_size: 16\n")
    config = build_config(yaml_file, {"lr": "3e-4", "model.window_size": "64", "attention": "global,local", "data": ["b.txt"]})
    assert config.lr == 3e-4 and config.batch_size == 16 and config.data == ["b.txt"]
    assert config.model_overrides == {"n_layer": 2, "window_size": 64, "attention": ["global", "local"]}


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"bacth_size": 3}, "unknown config key 'bacth_size'"),
        ({"lr": "fast"}, "lr must be float"),
        ({"precision": "fp8"}, "precision must be one of"),
        ({"micro_batch_size": 0}, "micro_batch_size must be at least 1"),
        ({"model.n_embd": 8}, "unknown model field"),
    ],
)
def test_bad_config_is_a_clear_error(overrides, message):
    with pytest.raises(GptlabError, match=message):
        build_config(None, {"data": ["a.txt"], **overrides})


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--lr", "nan"], "lr must be a finite number, got nan"),
        (["--lr", "-1"], "lr must be positive, got -1.0"),
        (["--warmup-steps", "-5"], "warmup_steps must be >= 0"),
        (["--weight-decay", "-0.1"], "weight_decay must be >= 0"),
        (["--weight-decay", "inf"], "weight_decay must be a finite number"),
        (["--grad-clip", "0"], "grad_clip must be positive"),
        (["--beta1", "nan"], "beta1 must be a finite number"),
        (["--beta2", "1"], "beta2 must be in [0, 1)"),
        (["--eps=-1e-8"], "eps must be positive"),
        (["--min-lr-ratio", "2"], "min_lr_ratio must be in [0, 1]"),
        (["--max-minutes", "inf"], "max_minutes must be a finite number"),
        (["--lr-decay-steps", "0"], "lr_decay_steps must be at least 1"),
        (["--batch-ramp-start", "-8"], "batch_ramp_start must be at least 1"),
        (["--threads", "0"], "threads must be at least 1"),
        (["--seed", "-1"], "seed must be >= 0"),
        (["--seed", str(2**64)], "seed must be below 2**63"),
        (["--resid-pdrop", "nan"], "resid_pdrop must be in [0, 1)"),
        (["--init-std", "-0.02"], "init_std must be a positive number"),
        (["--layer-norm-eps", "nan"], "layer_norm_eps must be a positive number"),
    ],
)
def test_bad_numbers_are_one_line_before_any_work(capsys, tmp_path, corpus, args, fragment):
    out = tmp_path / "run"
    result = run_cli(capsys, "train", "--data", corpus, "--out", out, "--max-steps", 1, *TINY_TRAIN, *args)
    assert_one_line_error(result, fragment)
    assert not out.exists()


def test_bad_numbers_in_a_yaml_config_are_one_line(capsys, tmp_path, corpus):
    config = tmp_path / "run.yaml"
    config.write_text(f"data: [{corpus}]\nout: {tmp_path / 'run'}\nmax_steps: 1\nlr: .nan\n")
    assert_one_line_error(run_cli(capsys, "train", config), "lr must be a finite number")
    config.write_text(f"data: [{corpus}]\nout: {tmp_path / 'run'}\nmax_steps: 1\ngrad_clip: -1\n")
    assert_one_line_error(run_cli(capsys, "train", config), "grad_clip must be positive")


def test_help_lists_every_key():
    result = train_cli("--help")
    for flag in ("--data", "--tokenizer", "--model", "--out", "--max-steps", "--batch-size", "--seq-len", "--lr",
                 "--seed", "--eval-every", "--save-every", "--resume", "--n-layer", "--window-size", "--on-nan"):
        assert flag in result.stdout, flag


# --- a run ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("tokenizer", ["byte", "char", "bpe:300"])
def test_run_directory_and_final_checkpoint(tmp_path, corpus, tokenizer):
    out = tmp_path / "run"
    result = train_cli("--data", corpus, "--tokenizer", tokenizer, "--out", out, "--max-steps", 30, "--eval-every", 15,
                       "--save-every", 15, *TINY_TRAIN[:-2], "--sample-tokens", 20)
    assert result.returncode == 0, result.stderr
    assert "bits/byte" in result.stdout and str(out / "final") in result.stdout
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "loss" in r]
    assert [r["step"] for r in train_rows] == list(range(1, 31))
    assert all({"step", "loss", "lr", "tokens_per_s"} <= r.keys() for r in train_rows)
    val_rows = [r for r in rows if "val_loss" in r]
    assert [r["step"] for r in val_rows] == [15, 30] and all(r["val_bpb"] > 0 for r in val_rows)
    assert train_rows[-1]["loss"] < train_rows[0]["loss"]
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_0000015", "step_0000030"]
    lm = gptlab.load(out / "final")
    assert lm.config.n_layer == 2 and lm.tokenizer.vocab_size <= lm.config.vocab_size
    generated = gptlab_cli("generate", out / "final", "--prompt", "ROMEO:", "--max-new-tokens", 10, "--seed", 0)
    assert generated.returncode == 0, generated.stderr


def test_a_time_budget_ends_the_run_with_a_finished_schedule_and_can_be_extended(tmp_path, corpus):
    """--max-minutes alone ends the run: no step count is given, the decay reaches its floor by the end, the
    spent time is saved, and a resume needs a larger budget, which continues the clock."""
    out = tmp_path / "run"
    result = train_cli("--data", corpus, "--tokenizer", "byte", "--out", out, "--max-minutes", 0.04, *TINY_TRAIN)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in rows if "lr" in r]
    steps = len(lrs)
    assert steps >= 3 and (out / "final").is_dir() and any("val_loss" in r for r in rows)
    assert lrs[-1] < 0.6 * max(lrs)  # the last steps run late in the decay (its exact shape: the test above)
    state = torch.load(sorted((out / "checkpoints").iterdir())[-1] / "train_state.pt", weights_only=False)
    assert state["elapsed"] >= 0.04 * 60
    again = train_cli("--data", corpus, "--tokenizer", "byte", "--out", out, "--max-minutes", 0.04, *TINY_TRAIN, "--resume")
    assert_one_line_error(again, "set a larger max_minutes")
    longer = train_cli("--data", corpus, "--tokenizer", "byte", "--out", out, "--max-minutes", 0.07, *TINY_TRAIN, "--resume")
    assert longer.returncode == 0, longer.stderr
    assert max(losses(out)) > steps


def test_no_progress_hides_only_the_bar_and_the_header_says_what_the_parameter_count_counts(tmp_path, corpus, capsys):
    out = tmp_path / "run"
    result = train_cli("--data", corpus, "--tokenizer", "byte", "--out", out, "--max-steps", 2, "--eval-every", 2,
                       *TINY_TRAIN, "--model", "mini", "--n-layer", "4", "--d-model", "128", "--n-head", "4")
    assert result.returncode == 0, result.stderr
    header = result.stdout.splitlines()[0]
    assert header.startswith("model mini: ") and ("fp32" in header or "bf16" in header), result.stdout
    assert "step 2: val_loss" in result.stdout
    assert "%|" not in result.stderr and "step/s" not in result.stderr  # no bar
    # the header's count is the model list's at this run's vocabulary: the part without embeddings is the same
    listed = json.loads(run_cli(capsys, "model", "list", "--json").stdout)
    mini = next(row for row in listed if row["name"] == "mini")
    assert f"with a 257-token embedding ({mini['non_embedding_params'] / 1e6:.2f}M without embeddings)" in header
    assert f"{gptlab.load(out / 'final').model.num_params() / 1e6:.2f}M parameters" in header


def test_bits_per_byte_is_consistent_with_the_loss(tmp_path, corpus):
    out = tmp_path / "run"
    assert train_cli("--data", corpus, "--tokenizer", "byte", "--out", out, "--max-steps", 10, "--eval-every", 10, *TINY_TRAIN).returncode == 0
    row = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][-1]
    # byte-level on ASCII text: one token per byte, so bits/byte = nats/token / ln 2, but for the
    # <|endoftext|> that closes the validation text: it costs loss and stands for no bytes
    assert row["val_bpb"] == pytest.approx(row["val_loss"] / math.log(2), rel=1e-3)
    assert row["val_bpb"] > row["val_loss"] / math.log(2)


def test_bpe_tokenizer_is_fitted_to_the_training_split_only(tmp_path):
    """A word that only the validation part repeats must not become a token: that would flatter val_bpb."""
    head = "".join(f"line {i} of the training text, with plain words.\n" for i in range(400))
    tail = "zqxjvk wubbly " * 300
    data = tmp_path / "one.txt"
    data.write_text(head + tail)
    fraction = len(tail) / len(head + tail)
    out = tmp_path / "run"
    result = train_cli("--data", data, "--tokenizer", "bpe:400", "--val-fraction", fraction, "--out", out,
                       "--max-steps", 2, "--eval-every", 2, *TINY_TRAIN)
    assert result.returncode == 0, result.stderr
    tok = gptlab.load(out / "final").tokenizer
    specials = set(tok.special_tokens.values())
    learned = [tok.decode_bytes([i]) for i in range(tok.vocab_size) if i not in specials]
    assert any(b"train" in token for token in learned)  # the training text was learned...
    assert not any(b"zq" in token or b"wub" in token for token in learned)  # ...the held-out text was not


def test_compiled_training_matches_eager(tmp_path, corpus):
    args = ["--data", corpus, "--tokenizer", "byte", "--max-steps", 4, "--eval-every", 4, *TINY_TRAIN]
    eager = train_cli(*args, "--out", tmp_path / "eager")
    compiled = train_cli(*args, "--out", tmp_path / "compiled", "--compile")
    assert eager.returncode == 0 and compiled.returncode == 0, compiled.stderr[-2000:]
    assert losses(tmp_path / "compiled") == pytest.approx(losses(tmp_path / "eager"), rel=1e-4)


def test_tensorboard_logs_the_metrics(tmp_path, corpus):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    result = train_cli("--data", corpus, "--tokenizer", "byte", "--out", out, "--max-steps", 4, "--eval-every", 2,
                       "--tensorboard", *TINY_TRAIN)
    assert result.returncode == 0, result.stderr
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    logged = {e.step: e.value for e in events.Scalars("loss")}
    assert logged == pytest.approx(losses(out), rel=1e-6)
    assert [e.step for e in events.Scalars("val_bpb")] == [2, 4]


# --- never losing a run ------------------------------------------------------------------------


def test_sigkill_mid_run_then_resume_equals_uninterrupted(tmp_path, corpus):
    args = ["--data", corpus, "--tokenizer", "byte", "--max-steps", 600, "--save-every", 100, "--eval-every", 300, *TINY_TRAIN]
    reference = tmp_path / "reference"
    assert train_cli(*args, "--out", reference).returncode == 0

    out = tmp_path / "killed"
    kill_at(train_cli(*args, "--out", out, wait=False), out / "checkpoints" / "step_0000100")

    resumed = train_cli(*args, "--out", out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert losses(out) == losses(reference)
    assert_same_weights(out / "final", reference / "final")
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".")], "temporary directories left"


def test_corrupt_last_checkpoint_falls_back_to_the_previous(tmp_path, corpus):
    args = ["--data", corpus, "--tokenizer", "byte", "--save-every", 20, "--eval-every", 100, *TINY_TRAIN]
    reference = tmp_path / "reference"
    assert train_cli(*args, "--max-steps", 60, "--out", reference).returncode == 0
    out = tmp_path / "run"
    assert train_cli(*args, "--max-steps", 40, "--out", out).returncode == 0
    newest = out / "checkpoints" / "step_0000040" / "model.safetensors"
    newest.write_bytes(newest.read_bytes()[:1000])
    resumed = train_cli(*args, "--max-steps", 60, "--out", out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "skipping checkpoint step_0000040" in resumed.stderr and "corrupt or truncated" in resumed.stderr
    assert losses(out) == losses(reference)
    assert_same_weights(out / "final", reference / "final")


def test_existing_run_is_not_overwritten_without_resume(tmp_path, corpus):
    args = ["--data", corpus, "--tokenizer", "byte", "--out", tmp_path / "run", "--max-steps", 5, "--save-every", 5, *TINY_TRAIN]
    assert train_cli(*args).returncode == 0
    assert_one_line_error(train_cli(*args), "already holds checkpoints of a run; resume it")


def test_nan_loss_stops_without_a_poisoned_checkpoint(tmp_path, corpus):
    out = tmp_path / "run"
    args = ["--data", corpus, "--tokenizer", "byte", "--max-steps", 50, "--save-every", 1,
            "--lr", "1e30", "--warmup-steps", 0, *TINY_TRAIN]
    message = assert_one_line_error(train_cli(*args, "--out", out))
    assert "loss became nan" in message or "loss became inf" in message, message
    failed_step = int(message.split(" at step ")[1].split()[0])
    saved = sorted(int(p.name.split("_")[1]) for p in (out / "checkpoints").iterdir())
    assert saved and max(saved) < failed_step
    for step in saved:
        weights = load_file(str(out / "checkpoints" / f"step_{step:07d}" / "model.safetensors"))
        assert all(torch.isfinite(w).all() for w in weights.values())

    skipped = train_cli(*args, "--out", tmp_path / "skip", "--on-nan", "skip")
    assert skipped.returncode == 0, skipped.stderr
    assert "skipping the update" in skipped.stderr + skipped.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data", "missing.txt"], "missing.txt"),
        (["--tokenizer", "nope"], "tokenizer must be byte, char, bpe:N or a tokenizer directory"),
        (["--seq-len", "100000", "--n-ctx", "64"], "longer than the model's context"),
        ([], None),
    ],
)
def test_bad_training_input_is_one_line(tmp_path, corpus, args, message):
    base = ["--out", tmp_path / "o", "--max-steps", 1, *TINY_TRAIN]
    if "--data" not in args:
        base = ["--data", corpus, *base]
    if not args:  # no data at all
        base = ["--out", tmp_path / "o", "--max-steps", 1, *TINY_TRAIN]
        message = "no training data"
    assert_one_line_error(train_cli(*base, *args), message)


def test_precision_auto_probes_the_cpu_once_and_remembers(tmp_path, monkeypatch):
    """bf16 only on a CPU with bf16 instructions whose timed matmul beats fp32; the answer is cached on disk."""
    from gptlab import device

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    probes = []
    monkeypatch.setattr(device, "_bf16_matmul_speedup", lambda: probes.append(1) or 2.0)
    cpu = torch.device("cpu")

    def fresh_answer(flags: set[str]) -> bool:
        device._cpu_bf16_is_fast.cache_clear()
        monkeypatch.setattr(device, "_cpu_flags", lambda: (flags, "Some CPU"))
        return device.bf16_is_fast(cpu)

    assert fresh_answer({"avx2", "fma"}) is False and probes == []  # no bf16 instructions: emulated, never probed
    assert fresh_answer({"avx512f", "avx512_bf16"}) is True and len(probes) == 1
    assert json.loads((tmp_path / "gptlab" / "cpu_bf16.json").read_text()) == {f"Some CPU | torch {torch.__version__}": True}
    assert fresh_answer({"avx512f", "avx512_bf16"}) is True and len(probes) == 1  # remembered: no second probe
    monkeypatch.setattr(device, "_bf16_matmul_speedup", lambda: 1.0)
    (tmp_path / "gptlab" / "cpu_bf16.json").unlink()
    assert fresh_answer({"amx_bf16"}) is False  # the instructions are there but not faster: fp32
    device._cpu_bf16_is_fast.cache_clear()


@pytest.mark.parametrize("precision", ["auto", "fp32"])
def test_precision_auto_is_the_default_and_says_what_it_chose(tmp_path, corpus, precision):
    from gptlab.device import bf16_is_fast

    args = [] if precision == "auto" else ["--precision", precision]
    shown = [arg for arg in TINY_TRAIN if arg != "--no-progress"]  # the run's first line names its precision
    result = train_cli("--data", corpus, "--tokenizer", "byte", "--out", tmp_path / "run", "--max-steps", 2, *shown, *args)
    assert result.returncode == 0, result.stderr
    chose = "bf16 autocast" if precision == "auto" and bf16_is_fast(torch.device("cpu")) else "fp32"
    assert f"on cpu, {chose}" in result.stdout + result.stderr


_FAULTS_PER_STEP = """
import resource, sys
import torch
import torch.nn.functional as F
from gptlab.device import keep_freed_memory
from gptlab.model import GPT, preset

if sys.argv[1] == "keep":
    assert keep_freed_memory()
torch.set_num_threads(2)
model = GPT(preset("mini").replace(vocab_size=65, n_ctx=64))
optimizer = torch.optim.AdamW(model.parameters(), fused=True)
x, y = torch.randint(0, 65, (2, 12, 64))


def step() -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = F.cross_entropy(model(x).float().flatten(0, 1), y.flatten())
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


for _ in range(10):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


def test_training_steps_reuse_freed_memory_instead_of_faulting_it_in():
    """At nanoGPT's CPU shape, glibc's malloc can hand each step's freed activations back to the OS, so that the
    next step faults thousands of fresh pages in; `keep_freed_memory` makes it keep them."""
    per_step = {}
    for mode in ("glibc-defaults", "keep"):
        result = subprocess.run([sys.executable, "-c", _FAULTS_PER_STEP, mode], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        per_step[mode] = float(result.stdout.split()[-1])
    assert per_step["glibc-defaults"] > 300, per_step  # the pattern is there to avoid
    # Not zero: a busy machine's one-off faults (lazily touched pages, thread stacks) land in the window too.
    assert per_step["keep"] < per_step["glibc-defaults"] / 10, per_step


def test_training_on_a_cpu_keeps_freed_memory(tmp_path, corpus, monkeypatch):
    from gptlab.train import trainer

    calls = []
    monkeypatch.setattr(trainer, "keep_freed_memory", lambda: calls.append(1))
    gptlab.train.train(build_config(None, {
        "data": [str(corpus)], "out": str(tmp_path / "run"), "max_steps": 1, "progress": False, "model": "tiny",
        "tokenizer": "byte", "seq_len": 16, "batch_size": 2, "sample_tokens": 0,
    }))
    assert calls == [1]


def test_activation_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = GPT(preset("tiny", vocab_size=50, n_ctx=16))
    x = torch.randint(0, 50, (2, 16))
    model(x).sum().backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.activation_checkpointing = True
    model(x).sum().backward()
    for a, p in zip(plain, model.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-6)


def test_quickstart_runs_the_pipeline_end_to_end(tmp_path):
    out = tmp_path / "qs"
    result = gptlab_cli("quickstart", "--minutes", 0.15, "--out", out, "--vocab-size", 512, "--seq-len", 64,
                        "--batch-size", 8, "--no-progress", timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "bits per byte" in result.stdout and "sample" in result.stdout and str(out / "final") in result.stdout
    assert "model mini: " in result.stdout and "val_bpb" in result.stdout  # --no-progress hides the bars only
    assert "%|" not in result.stderr
    assert (out / "loss.png").is_file()
    lm = gptlab.load(out / "final")
    assert lm.tokenizer.vocab_size == 512
    text = lm.generate("import ", max_new_tokens=10, seed=0)
    assert isinstance(text, str)
