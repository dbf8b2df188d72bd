"""`gptlab scale`: the laws recover known parameters, FLOPs are counted exactly, and a sweep runs,
survives a SIGKILL, and refuses bad input in one line."""

import json
import math
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import assert_one_line_error, gptlab_cli, run_cli

from gptlab.cli.main import main
from gptlab.errors import GptlabError
from gptlab.model import GPT
from gptlab.scale import fit
from gptlab.scale.shapes import SMALLEST, Shape, flops_per_token, non_embedding_params, rule_shapes, shape_for_params
from gptlab.scale.sweep import Recipe, runs_for_budgets, runs_for_sizes

# Tiny runs: four sizes, a few steps each, on a few standard-library modules.
SIZES = ["7000", "15000", "26000", "40000"]
TINY = ["--tokens-per-param", "0.4", "--seq-len", "16", "--batch-size", "4", "--eval-windows", "8", "--threads", "1"]


@pytest.fixture(scope="module")
def text(tmp_path_factory) -> Path:
    """About 100 kB of Python source: modules every Python installation has."""
    import argparse
    import shlex

    path = tmp_path_factory.mktemp("data") / "source.txt"
    path.write_text("\n".join(Path(m.__file__).read_text(encoding="utf-8") for m in (argparse, shlex, json.decoder)))
    return path


# --- the laws --------------------------------------------------------------------------------------


def test_compute_law_recovers_known_parameters_and_covers_a_prediction():
    rng = np.random.default_rng(0)
    flops = np.logspace(11, 13, 7)
    a, b, c = 2.0e3, 0.3, 1.2
    losses = (a * flops**-b + c) * (1 + 0.002 * rng.standard_normal(len(flops)))
    law = fit.fit_compute_law(flops, losses, [f"r{i}" for i in range(len(flops))])
    assert law.params["b"] == pytest.approx(b, rel=0.05)
    assert law.params["c"] == pytest.approx(c, rel=0.03)
    assert law.params["a"] == pytest.approx(a, rel=0.5)  # a trades off against b
    truth = a * 1e14**-b + c
    prediction = law.predict(1e14)
    assert prediction.low < truth < prediction.high and prediction.loss == pytest.approx(truth, rel=0.01)
    again = fit.Law.from_dict(json.loads(json.dumps(law.to_dict())))
    assert again.predict(1e14) == prediction


def test_a_fit_whose_floor_sits_at_zero_says_so_and_keeps_its_interval_above_zero():
    flops = np.logspace(11, 12.3, 4)
    steepening = 40 * flops**-0.1 * (1 - 0.02 * np.arange(4))  # the shape of runs still in their steepest fall
    law = fit.fit_compute_law(flops, steepening, [f"r{i}" for i in range(4)])
    assert law.params["c"] < fit.FLOOR_AT_ZERO
    assert "the fitted floor c is 0" in law.caveat()
    far = law.predict(1e16)
    assert far.low is not None and far.low >= 0.0 and far.high > far.loss
    flattening = 2.0e3 * flops**-0.3 + 1.2
    assert fit.fit_compute_law(flops, flattening, [f"r{i}" for i in range(4)]).caveat() is None


def test_data_law_recovers_known_parameters():
    rng = np.random.default_rng(1)
    params = np.repeat(np.logspace(4, 6, 4), 3)
    tokens = params * np.tile([5, 20, 80], 4)
    truth = dict(E=1.0, A=50.0, alpha=0.35, B=200.0, beta=0.3)
    losses = truth["E"] + truth["A"] / params ** truth["alpha"] + truth["B"] / tokens ** truth["beta"]
    law = fit.fit_data_law(params, tokens, losses * (1 + 0.001 * rng.standard_normal(len(losses))),
                           [str(i) for i in range(len(losses))])
    for name in ("E", "alpha", "beta"):
        assert law.params[name] == pytest.approx(truth[name], rel=0.05), name
    expected = truth["E"] + truth["A"] / 1e7 ** truth["alpha"] + truth["B"] / 2e8 ** truth["beta"]
    assert law.predict(1e7, 2e8).loss == pytest.approx(expected, rel=0.01)


def test_one_token_budget_per_size_does_not_fit_the_data_law():
    params = np.logspace(4, 6, 8)
    with pytest.raises(GptlabError, match="several token budgets per size"):
        fit.fit_data_law(params, 20 * params, 1 + 10 / params**0.3, [str(i) for i in range(8)])


@pytest.mark.parametrize("losses, needle", [
    ([3.0, 2.5, 2.2], "3 runs are too few to fit L(C)"),
    ([3.0, 2.5, float("nan"), 2.0], "run r2 ended with validation loss nan: it diverged"),
    ([3.0, float("inf"), 2.2, 2.0], "run r1 ended with validation loss inf: it diverged"),
])
def test_too_few_or_diverged_runs_are_one_line(losses, needle):
    with pytest.raises(GptlabError) as error:
        fit.fit_compute_law(np.logspace(10, 12, len(losses)), losses, [f"r{i}" for i in range(len(losses))])
    assert needle in str(error.value) and "\n" not in str(error.value)


# --- shapes and FLOPs ------------------------------------------------------------------------------


@pytest.mark.parametrize("shape, seq_len, params, per_token", [
    # 2 layers, d 16: 2·(12·16² + 13·16) = 6,560 in the blocks, + 2·16 for the final LayerNorm
    (Shape(2, 16), 32, 6_592, 6 * 6_592 + 6 * 2 * 32 * 16),
    # 2 layers, d 64: 2·(12·64² + 13·64) + 2·64 = 100,096; attention 6·2·128·64 = 98,304 per token
    (Shape(2, 64), 128, 100_096, 600_576 + 98_304),
])
def test_flops_match_a_hand_count(shape, seq_len, params, per_token):
    assert shape.params == params
    assert shape.flops_per_token(seq_len) == per_token
    config = shape.model_config(seq_len, vocab_size=257)
    assert non_embedding_params(config) == params and flops_per_token(config) == per_token
    with torch.device("meta"):
        model = GPT(config)
    counted = sum(p.numel() for name, p in model.named_parameters() if not name.startswith(("wte.", "wpe.")))
    assert counted == params  # the tied head is wte, counted once and left out
    recipe = Recipe(("unused",), seq_len=seq_len, batch_size=4)
    (spec,) = runs_for_sizes(recipe, [params], [10.0])
    assert spec.flops(recipe) == per_token * spec.steps * 4 * seq_len


def test_shape_rule_grows_with_size_and_budgets_keep_the_token_ratio():
    sizes = (7e3, 3e4, 1e5, 3e5, 1e6, 1e7)
    shapes = [shape_for_params(n) for n in sizes]
    assert [s.params for s in shapes] == sorted(s.params for s in shapes)
    for n, shape in zip(sizes, shapes):
        assert abs(math.log(shape.params / n)) < 0.2 and shape.d_model % 8 == 0 and shape.n_layer >= 2
    assert all(0.5 <= s.d_model / (64 * s.n_layer) <= 2 for s in shapes[3:])  # past the two-layer floor
    steps = [b.params / a.params for a, b in zip(rule_shapes(1e6), rule_shapes(1e6)[1:])]
    assert max(steps[3:]) < 1.5  # past the smallest widths, neighbours are close
    recipe = Recipe(("unused",), seq_len=128)  # the batch by the rule
    for budget, spec in zip((1e12, 10**12.5, 1e13), runs_for_budgets(recipe, 1e12, 1e13, 3, [20.0]), strict=True):
        assert budget / 2.2 < spec.flops(recipe) <= budget * 1.01  # the largest shape that fits
        assert spec.tokens(recipe) / spec.shape.params == pytest.approx(20, rel=0.02)


# --- a sweep ---------------------------------------------------------------------------------------


def test_sweep_runs_end_to_end_and_a_sigkill_loses_no_finished_run(tmp_path, text, capsys):
    out = tmp_path / "sweep"
    args = ["sweep", "--data", str(text), "--sizes", *SIZES, *TINY, "--out", str(out), "--no-progress"]
    process = gptlab_cli("scale", *args, wait=False, capture=False, new_session=True)
    runs = out / "runs"
    deadline = time.monotonic() + 120
    # kill once the first run has finished and the second has saved a checkpoint
    while time.monotonic() < deadline and process.poll() is None:
        done = {p.parent.name for p in runs.glob("*/final")}
        if done and any(p.parent.parent.name not in done for p in runs.glob("*/checkpoints/step_*")):
            break
        time.sleep(0.01)
    assert process.poll() is None, "the sweep finished before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished = {p.parent.name: p.stat().st_mtime_ns for p in runs.glob("*/final")}
    assert 1 <= len(finished) < len(SIZES)

    main(["scale", *args])  # the same command again
    captured = capsys.readouterr()
    for name, mtime in finished.items():
        assert f"skip {name}: finished" in captured.out
        assert (runs / name / "final").stat().st_mtime_ns == mtime
    assert "resume " in captured.out  # the run the kill interrupted continued from its checkpoint
    summary = json.loads((out / "scaling.json").read_text())
    flops = [r["flops"] for r in summary["runs"]]
    assert len(flops) == len(SIZES) and flops == sorted(flops)
    assert all(math.isfinite(r["val_loss"]) and r["epochs"] < 1 and not r["repeats_data"] for r in summary["runs"])
    assert (out / "scaling.png").stat().st_size > 0 and "L(C) = a·C^-b + c: a = " in captured.out

    main(["scale", "predict", str(out), "--flops", "1e10"])
    assert "predicted validation loss" in capsys.readouterr().out
    main(["scale", "plan", str(out), "--flops", "1e10", "--out", str(tmp_path / "planned")])
    command = capsys.readouterr().out.strip().splitlines()[-1]
    assert command.startswith("gptlab train --data ") and "--n-layer" in command and "--max-steps" in command

    # a second token budget per size: L(N, D) is fitted to all the directory's runs
    main(["scale", "sweep", "--data", str(text), "--sizes", *SIZES, "--tokens-per-param", "0.4", "1.2", *TINY[2:],
          "--out", str(out), "--no-progress"])
    assert json.loads((out / "scaling.json").read_text())["loss_vs_params_and_tokens"].get("fitted", True)
    main(["scale", "predict", str(out), "--params", "60000", "--tokens", "50000"])
    assert "by L(N, D)" in capsys.readouterr().out


def test_ray_runs_the_sweep_side_by_side(tmp_path, text, capsys, monkeypatch):
    import ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # a local cluster of this machine
    out = tmp_path / "sweep"
    try:
        main(["scale", "sweep", "--data", str(text), "--sizes", *SIZES, *TINY, "--out", str(out), "--executor", "ray",
              "--no-progress"])
    finally:
        ray.shutdown()
    assert len(list((out / "runs").glob("*/final"))) == len(SIZES)
    assert "L(C) = a·C^-b + c: a = " in capsys.readouterr().out


def test_repeated_data_is_flagged(tmp_path, text, capsys):
    small = tmp_path / "small.txt"
    small.write_text(text.read_text()[:6000])
    main(["scale", "sweep", "--data", str(small), "--sizes", *SIZES, "--tokens-per-param", "0.5",
          "--seq-len", "16", "--batch-size", "4", "--eval-windows", "4", "--out", str(tmp_path / "sweep"), "--no-progress"])
    captured = capsys.readouterr()
    assert "repeats its data" in captured.err and "repeated their data" in captured.out
    assert any(r["repeats_data"] for r in json.loads((tmp_path / "sweep" / "scaling.json").read_text())["runs"])


@pytest.mark.parametrize("extra, needle", [
    (["--sizes", "7000", "20000", "50000"], "3 runs are too few to fit a scaling law"),
    (["--sizes", "100", "20000", "50000", "90000"], "below the smallest shape (2 layers, d_model 16, 4 heads: 6,592)"),
    (["--flops", "1e6", "1e9"], "budgets start at"),
    (["--sizes", "7000", "20000", "50000", "90000", "--tokens-per-param", "0.001"], "less than one step of 4x16"),
    (["--sizes", "7000", "20000", "50000", "90000", "--seq-len", "20000"], "fewer than one window of seq_len 20000"),
    (["--sizes", "7000", "20000", "50000", "90000", "--tokenizer", "bpe:100"], "vocab"),
    (["--sizes", *SIZES, "--lr-scale", "1e9", "--tokens-per-param", "0.5"], "diverged: loss became"),
])
def test_bad_sweeps_are_one_line(tmp_path, text, capsys, extra, needle):
    assert_one_line_error(run_cli(capsys, "scale", "sweep", "--data", text, "--seq-len", 16, "--batch-size", 4,
                                  "--eval-windows", 4, "--no-progress", "--out", tmp_path / "sweep", *extra), needle)


def test_predict_and_plan_need_a_finished_sweep(tmp_path, capsys):
    assert_one_line_error(run_cli(capsys, "scale", "predict", tmp_path, "--flops", "1e12"), "no scaling.json")
    assert_one_line_error(run_cli(capsys, "scale", "plan", tmp_path, "--flops", "1e12"), "no scaling.json")


def test_a_sweep_directory_keeps_its_recipe(tmp_path, text, capsys):
    out = tmp_path / "sweep"
    out.mkdir()
    recipe = Recipe((str(text),), seq_len=16, batch_size=4)
    (out / "sweep.json").write_text(json.dumps({"recipe": recipe.to_dict(), "data": {}, "runs": []}))
    assert_one_line_error(run_cli(capsys, "scale", "sweep", "--data", text, "--sizes", *SIZES, "--seq-len", 32,
                                  "--batch-size", 4, "--out", out), "holds a sweep with another recipe (seq_len 16 -> 32)")


def test_smallest_shape_is_the_floor():
    assert shape_for_params(SMALLEST.params) == SMALLEST


# --- predictions that say little, and compute that is not a number ------------------------------------------------


def fabricated_sweep(out: Path, scatter: tuple[float, ...]) -> dict:
    """A finished sweep's scaling.json without training: four runs of the rule's shapes with losses on a known
    L(C), each multiplied by its `scatter` factor, and L(C) fitted to them as a sweep fits it."""
    recipe = Recipe((str(out / "data.txt"),), seq_len=128)
    specs = runs_for_sizes(recipe, [float(n) for n in SIZES], [20.0])
    runs = [{"name": s.name, "params": s.shape.params, "tokens": s.tokens(recipe), "tokens_per_param": 20.0,
             "flops": s.flops(recipe), "epochs": s.tokens(recipe) / 1e8, "repeats_data": False,
             "val_loss": (30 * s.flops(recipe) ** -0.08 + 0.5) * factor, "val_bpb": None, "fitted": True}
            for s, factor in zip(specs, scatter, strict=True)]
    law = fit.fit_compute_law([r["flops"] for r in runs], [r["val_loss"] for r in runs], [r["name"] for r in runs])
    summary = {"recipe": recipe.to_dict(), "data": {"tokenizer": "byte", "vocab_size": 257, "train_tokens": 10**8,
                                                    "val_tokens": 10**7},
               "runs": runs, "loss_vs_compute": law.to_dict(),
               "loss_vs_params_and_tokens": {"law": fit.DATA_LAW, "fitted": False, "why": "one token budget per size"},
               "bits_per_byte_per_nat": None}
    out.mkdir()
    (out / "scaling.json").write_text(json.dumps(summary))
    return summary


ON_THE_CURVE, SCATTERED = (1.0, 1.0, 1.0, 1.0), (1.05, 0.95, 1.05, 0.95)


@pytest.mark.parametrize("argv", [
    ["predict", "SWEEP", "--flops", "inf"], ["predict", "SWEEP", "--flops", "nan"], ["predict", "SWEEP", "--flops", "-1"],
    ["predict", "SWEEP", "--params", "inf", "--tokens", "1e6"],
    ["plan", "SWEEP", "--flops", "inf"], ["plan", "SWEEP", "--flops", "0"],
    ["sweep", "--data", "x.txt", "--flops", "1e10", "inf", "--out", "SWEEP"],
    ["sweep", "--data", "x.txt", "--sizes", "7000", "nan", "--out", "SWEEP"],
])
def test_compute_and_sizes_must_be_positive_finite_numbers(tmp_path, capsys, argv):
    fabricated_sweep(tmp_path / "sweep", ON_THE_CURVE)
    result = run_cli(capsys, "scale", *(str(tmp_path / "sweep") if a == "SWEEP" else a for a in argv))
    assert_one_line_error(result, "finite")


def test_predictions_far_outside_the_sweep_are_flagged(tmp_path, capsys):
    summary = fabricated_sweep(tmp_path / "sweep", ON_THE_CURVE)
    largest = max(r["flops"] for r in summary["runs"])
    near = run_cli(capsys, "scale", "predict", tmp_path / "sweep", "--flops", 2 * largest)
    assert near.returncode == 0 and "predicted validation loss" in near.stdout and near.stderr == ""
    for argv in (["predict", tmp_path / "sweep", "--flops", "1e30"],
                 ["plan", tmp_path / "sweep", "--flops", "1e30", "--out", tmp_path / "planned"]):
        far = run_cli(capsys, "scale", *argv)
        assert far.returncode == 0 and "predicted validation loss" in far.stdout
        assert "warning: " in far.stderr and "far outside the sweep (more than 1,000x)" in far.stderr


def test_an_interval_wider_than_the_loss_is_flagged(tmp_path, capsys):
    from gptlab.scale import report

    scattered = fabricated_sweep(tmp_path / "scattered", SCATTERED)
    at = 10 * max(r["flops"] for r in scattered["runs"])
    for argv in (["predict", tmp_path / "scattered", "--flops", at],
                 ["plan", tmp_path / "scattered", "--flops", at, "--out", tmp_path / "planned"]):
        result = run_cli(capsys, "scale", *argv)
        low, high = (float(v) for v in result.stdout.split("(95%: ")[1].split(")")[0].split(" to "))
        loss = float(result.stdout.split("predicted validation loss ")[1].split()[0])
        assert high - low > loss  # what the demo sweep printed as 0.0000 to 6.6704
        assert "warning: the prediction says little" in result.stderr and "wider than the loss" in result.stderr
    assert "predicts little at 10x the largest run's compute" in report.table(scattered)
    assert "predicts little" not in report.table(fabricated_sweep(tmp_path / "on-curve", ON_THE_CURVE))


@pytest.fixture
def listener():
    """A TCP port that accepts connections and says nothing, on every address of this machine."""
    import socket

    server = socket.create_server(("", 0), backlog=16)
    yield server
    server.close()


@pytest.mark.parametrize("where", ["refused", "silent", "not ray"])
def test_an_unreachable_ray_cluster_stops_the_sweep_in_one_line(tmp_path, text, listener, where):
    import socket

    port = 1 if where == "refused" else listener.getsockname()[1]
    if where == "silent":  # a full backlog (one connection waiting): the kernel answers no further connection
        listener.listen(0)
        held = socket.create_connection(("127.0.0.1", port), timeout=5)  # noqa: F841 (kept open)
    out = tmp_path / "sweep"
    result = gptlab_cli("scale", "sweep", "--data", text, "--sizes", *SIZES, *TINY, "--out", out, "--executor", "ray",
                        env={"RAY_ADDRESS": f"127.0.0.1:{port}", "GPTLAB_RAY_TIMEOUT": "3"}, timeout=120)
    if where == "not ray":
        assert_one_line_error(result, f"gptlab: error: the Ray cluster at 127.0.0.1:{port} (RAY_ADDRESS) accepts "
                              "connections but did not let this process join within 3 s")
    else:
        assert_one_line_error(result, f"Ray cluster at 127.0.0.1:{port}", *(["no answer within 3 s"] if where == "silent" else []))
    assert not out.exists()  # nothing prepared or trained
