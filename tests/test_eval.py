"""In-context evaluation against lm-evaluation-harness itself: the same task file and the same model
(exported to a transformers directory for the harness's `hf` backend) give the same numbers."""

from __future__ import annotations

import json
import math
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
import torch.nn.functional as F
from helpers import assert_one_line_error, gptlab_cli, run_cli

import gptlab
from gptlab.checkpoint.hf import export_hf
from gptlab.eval import scoring
from gptlab.eval.tasks import load_tasks
from gptlab.model import GPT, preset
from gptlab.tokenizer import train_tokenizer_on_texts

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

WORDS = ("red green blue apple pear plum cat dog bird one two three north south east west sun moon star river hill "
         "stone cloud rain snow wind fire water").split()
COLORS = ["red", "green", "blue", "yellow"]


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    """A random-weight GPT-2-shaped model with a small BPE: as a gptlab checkpoint and as an HF directory."""
    rng = random.Random(0)
    tokenizer = train_tokenizer_on_texts([_sentence(rng, 12) + "?\n" for _ in range(400)] + COLORS, 320, progress=False)
    torch.manual_seed(0)
    model = GPT(preset("tiny", vocab_size=tokenizer.vocab_size, n_ctx=160, init_std=0.2))
    root = tmp_path_factory.mktemp("eval")
    ckpt = gptlab.save(root / "ckpt", model, tokenizer)
    return ckpt, export_hf(ckpt, root / "hf")


def _write_task(folder, name, docs, **extra):
    """A multiple-choice task YAML beside its train/test JSONL, the data files named relative to the YAML."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in docs.items():
        (folder / f"{name}_{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {split: str(folder / f"{name}_{split}.jsonl") for split in docs}},
        "output_type": "multiple_choice",
        "training_split": "train",
        "test_split": "test",
        "description": "Pick the colour.\n\n",
        "doc_to_text": "Question: {{question}}\nAnswer:",
        "doc_to_choice": "{{choices}}",
        "doc_to_target": "{{label}}",
        "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}],
        **extra,
    }
    path = folder / f"{name}.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def _choice_docs(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [
        {"question": _sentence(rng, rng.randint(2, 6)) + "?", "choices": rng.sample(COLORS, 3) + [_sentence(rng, 2)],
         "label": rng.randrange(4)}
        for _ in range(n)
    ]


@pytest.fixture(scope="module")
def mc_task(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tasks")
    return _write_task(folder, "colors", {"train": _choice_docs(8, 1), "test": _choice_docs(24, 2)})


@pytest.fixture(scope="module")
def rolling_task(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rolling")
    rng = random.Random(3)
    (folder / "docs.jsonl").write_text(
        "".join(json.dumps({"text": _sentence(rng, rng.randint(5, 300)) + "."}) + "\n" for _ in range(6)))
    (folder / "wiki.yaml").write_text(textwrap.dedent(f"""\
        task: tiny_wiki
        dataset_path: json
        dataset_kwargs:
          data_files:
            test: {folder / 'docs.jsonl'}
        output_type: loglikelihood_rolling
        test_split: test
        doc_to_text: ""
        doc_to_target: "{{{{text}}}}"
        """))
    return folder / "wiki.yaml"


def _task_manager(task_path):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(task_path.parent), include_defaults=False)


def _harness(model, model_args, task_path, k):
    from lm_eval import simple_evaluate

    name = yaml.safe_load(task_path.read_text())["task"]
    out = simple_evaluate(
        model=model, model_args=model_args, tasks=[name], num_fewshot=k, task_manager=_task_manager(task_path),
        batch_size=8, device="cpu", log_samples=True,
        bootstrap_iters=1,  # > 0 turns standard errors on; means get the closed form, not a bootstrap
    )
    return out["results"][name], out["samples"][name]


@pytest.fixture(scope="module")
def harness_mc(model_dirs, mc_task):
    """The harness's `hf` backend on the exported model: results and logged samples at K = 0 and 3."""
    return {k: _harness("hf", f"pretrained={model_dirs[1]},dtype=float32", mc_task, k) for k in (0, 3)}


def test_multiple_choice_matches_the_harness(model_dirs, mc_task, harness_mc, tmp_path):
    result = gptlab_cli("eval", model_dirs[0], "--task", mc_task, "--shots", 0, 3, "--json", "--out", tmp_path,
                        "--device", "cpu")
    assert result.returncode == 0, result.stderr
    ours = json.loads(result.stdout)
    assert ours == json.loads((tmp_path / "results.json").read_text())
    assert (tmp_path / "accuracy_vs_shots.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for k, (theirs, _) in harness_mc.items():
        at_k = ours["tasks"]["colors"]["shots"][str(k)]
        assert at_k["capped"] == 0 and at_k["shots_mean"] == k  # every prompt fits: no truncation on either side
        metrics = at_k["metrics"]
        assert metrics["acc"]["value"] == theirs["acc,none"]
        assert metrics["acc_norm"]["value"] == theirs["acc_norm,none"]
        assert metrics["acc"]["stderr"] == pytest.approx(theirs["acc_stderr,none"], abs=1e-12)
        assert metrics["acc_norm"]["stderr"] == pytest.approx(theirs["acc_norm_stderr,none"], abs=1e-12)
        assert {"acc_token", "acc_uncond"} <= set(metrics)


def test_same_prompts_and_loglikelihoods_as_the_harness(model_dirs, mc_task, harness_mc, tmp_path):
    """Per request: gptlab builds the harness's exact contexts, and scores them as its `hf` backend does."""
    lm = gptlab.load(model_dirs[0])
    ours = gptlab.evaluate(lm, tasks=[str(mc_task)], shots=list(harness_mc), out=tmp_path, log_samples=True)
    for k, (_, samples) in harness_mc.items():
        requests = [tuple(args) for s in samples for args in s["arguments"]]
        mine = ours.results["samples"][f"colors_{k}shot"]
        assert [tuple(args) for s in mine for args in s["arguments"]] == requests
        harness_lls = [float(resp[0][0]) for s in samples for resp in s["resps"]]
        scores = scoring.loglikelihood(lm, requests)
        assert [ll for ll, _ in scores] == pytest.approx(harness_lls, abs=1e-4)
        assert [greedy for _, greedy in scores] == [bool(r[0][1]) for s in samples for r in s["resps"]]


def test_rolling_perplexity_matches_the_harness(model_dirs, rolling_task, capsys, tmp_path):
    lm = gptlab.load(model_dirs[0])
    texts = [json.loads(line)["text"] for line in (rolling_task.parent / "docs.jsonl").read_text().splitlines()]
    assert max(len(lm.tokenizer.encode(t)) for t in texts) > 2 * lm.config.n_ctx  # several windows per text
    theirs, samples = _harness("hf", f"pretrained={model_dirs[1]},dtype=float32", rolling_task, 0)
    # totals of thousands of nats: the harness sums each window in float32, gptlab in float64
    assert scoring.loglikelihood_rolling(lm, texts) == pytest.approx([s["resps"][0][0] for s in samples], rel=1e-6)
    result = run_cli(capsys, "eval", model_dirs[0], "--task", rolling_task, "--json", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)["tasks"]["tiny_wiki"]["shots"]["0"]["metrics"]
    for name in ("word_perplexity", "byte_perplexity", "bits_per_byte"):
        assert metrics[name]["value"] == pytest.approx(theirs[f"{name},none"], rel=1e-5)
    # --text: one file, the same rule
    text = tmp_path / "one.txt"
    text.write_text(texts[0])
    result = run_cli(capsys, "eval", model_dirs[0], "--text", text, "--out", tmp_path / "t")
    assert result.returncode == 0, result.stderr
    (bpb,) = [line for line in result.stdout.splitlines() if "bits_per_byte" in line]
    expected = -scoring.loglikelihood_rolling(lm, [texts[0]])[0] / len(texts[0].encode()) / math.log(2)
    assert float(bpb.split()[3]) == pytest.approx(expected, abs=1e-4)


def test_lm_eval_command_runs_gptlab_checkpoints(model_dirs, mc_task, harness_mc, tmp_path):
    """The harness's own command, `lm_eval --model gptlab`, with nothing imported first: the hf backend's
    numbers on the same model."""
    lm_eval = os.path.join(os.path.dirname(sys.executable), "lm_eval")
    done = subprocess.run(
        [lm_eval, "--model", "gptlab", "--model_args", f"path={model_dirs[0]}", "--tasks", "colors",
         "--include_path", str(mc_task.parent), "--num_fewshot", "3", "--batch_size", "8", "--device", "cpu",
         "--output_path", str(tmp_path / "out"), "--log_samples"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "HF_DATASETS_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    [results] = (tmp_path / "out").glob("*/results_*.json")
    [samples] = (tmp_path / "out").glob("*/samples_colors_*.jsonl")
    theirs = json.loads(results.read_text())["results"]["colors"]
    assert theirs["acc,none"] == harness_mc[3][0]["acc,none"]
    assert theirs["acc_norm,none"] == harness_mc[3][0]["acc_norm,none"]
    hf_lls = [float(r[0][0]) for s in harness_mc[3][1] for r in s["resps"]]
    ours = [float(r[0][0]) for line in samples.read_text().splitlines() for r in json.loads(line)["resps"]]
    assert ours == pytest.approx(hf_lls, abs=1e-4)


def test_fewshot_from_the_test_split_never_shows_the_document_itself(model_dirs, tmp_path):
    """With fewshot_split = test_split the harness draws K+1 and drops the evaluated document; gptlab's
    contexts equal the harness's own, and no document is among its own examples."""

    docs = _choice_docs(12, 5)
    path = _write_task(tmp_path / "t", "selfshot", {"test": docs}, fewshot_split="test", training_split=None)
    tm = _task_manager(path)
    harness_task = tm.load("selfshot")["tasks"]["selfshot"]
    harness_task.set_config(key="num_fewshot", value=4)
    harness_task.set_fewshot_seed(seed=1234)
    harness_task.build_all_requests()
    contexts = [inst.args[0] for inst in harness_task.instances if inst.idx == 0]
    ours = gptlab.evaluate(model_dirs[0], tasks=[str(path)], shots=[4], out=tmp_path / "out", log_samples=True)
    samples = ours.results["samples"]["selfshot_4shot"]
    assert [s["arguments"][0][0] for s in samples] == contexts
    for sample in samples:
        context = sample["arguments"][0][0]
        assert sample["shots"] == 4 and context.count(f"Question: {sample['doc']['question']}\n") == 1


def test_kv_reuse_equals_full_sequence_scoring(model_dirs):
    """Contexts shared by several continuations, computed once, score as the plain forward pass does."""
    lm = gptlab.load(model_dirs[0])
    rng = random.Random(0)
    pairs = []
    for _ in range(12):
        context = [rng.randrange(lm.tokenizer.vocab_size) for _ in range(rng.randint(1, 60))]
        pairs += [(context, [rng.randrange(lm.tokenizer.vocab_size) for _ in range(rng.randint(1, 30))])
                  for _ in range(rng.randint(1, 5))]
    pairs.append(([1] * 150, [2] * 20))  # too long: the context loses its start, as in the harness
    for batch_size in (1, 5, 64):
        scores = scoring.score_tokens(lm, pairs, batch_size)
        for score, (context, continuation) in zip(scores, pairs, strict=True):
            ids = torch.tensor([(context + continuation)[-(lm.config.n_ctx + 1):][:-1]])
            logprobs = F.log_softmax(lm.model(ids)[0, -len(continuation):], dim=-1)
            assert score.logprob == pytest.approx(logprobs[torch.arange(len(continuation)), continuation].sum().item(), abs=1e-4)
            assert score.greedy == bool((logprobs.argmax(-1) == torch.tensor(continuation)).all())
            assert score.n_tokens == len(continuation)


def test_prompts_that_do_not_fit_keep_fewer_examples(model_dirs, tmp_path, capsys):
    docs = _choice_docs(6, 7)
    for doc in docs:
        doc["question"] = " ".join(["stone"] * 40)
    path = _write_task(tmp_path / "t", "long", {"train": docs, "test": docs[:3]})
    result = run_cli(capsys, "eval", model_dirs[0], "--task", path, "--shots", 0, 5, "--json", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "do not fit the model's context of 160 tokens with K=5" in result.stderr
    at5 = json.loads(result.stdout)["tasks"]["long"]["shots"]["5"]
    assert at5["capped"] == 3 and at5["shots_mean"] < 5


def test_bad_input_is_one_line(model_dirs, mc_task, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default output directory is relative to it
    ckpt = model_dirs[0]
    docs = {"train": _choice_docs(3, 1), "test": _choice_docs(4, 2)}
    missing = _write_task(tmp_path / "a", "missing", docs)
    (tmp_path / "a" / "missing_test.jsonl").unlink()
    assert_one_line_error(run_cli(capsys, "eval", ckpt, "--task", missing), "missing_test.jsonl not found")
    broken = _write_task(tmp_path / "b", "broken", docs, doc_to_text="Question: {{question}\nAnswer:")
    assert_one_line_error(run_cli(capsys, "eval", ckpt, "--task", broken), "not a valid Jinja template")
    docs["test"][2].pop("question")
    lacking = _write_task(tmp_path / "c", "lacking", docs)
    assert_one_line_error(run_cli(capsys, "eval", ckpt, "--task", lacking), "test row 3", "'question' is undefined")
    docs = {"train": _choice_docs(3, 1), "test": _choice_docs(2, 2)}
    docs["test"][1]["question"] = " ".join(["moon"] * 300)
    too_long = _write_task(tmp_path / "d", "too_long", docs)
    assert_one_line_error(run_cli(capsys, "eval", ckpt, "--task", too_long), "test row 2 does not fit", "160 tokens")
    assert_one_line_error(run_cli(capsys, "eval", ckpt, "--task", "no_such_task"), "unknown task")
    assert_one_line_error(run_cli(capsys, "eval", ckpt, "--task", mc_task, mc_task), "task colors given twice")


def test_data_files_relative_to_the_yaml_folder(tmp_path):
    """The harness reads data_files relative to the working directory; gptlab also finds them beside the YAML."""
    path = _write_task(tmp_path / "rel", "rel", {"train": _choice_docs(3, 1), "test": _choice_docs(3, 2)})
    config = json.loads(path.read_text())
    config["dataset_kwargs"]["data_files"] = {"train": "rel_train.jsonl", "test": "rel_test.jsonl"}
    path.write_text(json.dumps(config))
    assert len(load_tasks([str(path)]).tasks["rel"].eval_docs) == 3


def test_builtin_generate_until_task(model_dirs, tmp_path, capsys, monkeypatch):
    """A built-in GPT-3 synthetic task by name: written as task files, answers generated until the stop string."""
    monkeypatch.chdir(tmp_path)
    result = run_cli(capsys, "eval", model_dirs[0], "--task", "arithmetic_2d_plus", "--shots", 0, 2,
                     "--limit", 4, "--json")
    assert result.returncode == 0, result.stderr
    task = json.loads(result.stdout)["tasks"]["arithmetic_2d_plus"]
    assert task["output_type"] == "generate_until" and task["docs"] == 4
    assert set(task["shots"]) == {"0", "2"} and "exact_match" in task["shots"]["2"]["metrics"]
    assert (tmp_path / "runs" / "eval" / "tasks" / "arithmetic_2d_plus" / "arithmetic_2d_plus.yaml").is_file()


# --- inputs and outputs checked before the work; what an evaluation leaves behind -------------------


@pytest.fixture
def no_scoring(monkeypatch):
    """Any scoring or generation fails the test: what is checked here must be checked before the work."""

    def scored(*_, **__):
        raise AssertionError("the model was run before the inputs and the output were checked")

    for target in ("gptlab.eval.scoring.score_tokens", "gptlab.eval.scoring.loglikelihood_rolling",
                   "gptlab.eval.generate.generate_until"):
        monkeypatch.setattr(target, scored)


def test_empty_inputs_are_refused_before_scoring(model_dirs, mc_task, tmp_path, capsys, no_scoring):
    """An empty or blank text file, or a task whose documents hold no text, has no perplexity: one line,
    before the tasks given with it are scored, and no results written."""
    for name, content in (("empty.txt", ""), ("blank.txt", " \n\t\n")):
        (tmp_path / name).write_text(content)
        for extra in ([], ["--task", mc_task]):
            result = run_cli(capsys, "eval", model_dirs[0], *extra, "--text", tmp_path / name,
                             "--out", tmp_path / "out")
            assert_one_line_error(result, name, "holds no text")
    (tmp_path / "blank.jsonl").write_text(json.dumps({"text": ""}) + "\n" + json.dumps({"text": " "}) + "\n")
    (tmp_path / "blank.yaml").write_text(json.dumps({
        "task": "blank", "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(tmp_path / "blank.jsonl")}},
        "output_type": "loglikelihood_rolling", "test_split": "test", "doc_to_text": "", "doc_to_target": "{{text}}"}))
    result = run_cli(capsys, "eval", model_dirs[0], "--task", mc_task, tmp_path / "blank.yaml",
                     "--out", tmp_path / "out")
    assert_one_line_error(result, "task blank", "hold no text")
    no_docs = _write_task(tmp_path / "n", "nodocs", {"train": _choice_docs(3, 1), "test": []})
    assert_one_line_error(run_cli(capsys, "eval", model_dirs[0], "--task", mc_task, no_docs),
                          "split 'test' has no documents")
    assert not (tmp_path / "out").exists()


def test_output_directory_is_checked_before_scoring(model_dirs, mc_task, tmp_path, capsys, no_scoring):
    """A file where the output directory (or a folder above it) should be, and a directory that holds an
    earlier evaluation, are one-line errors before any scoring; the earlier results stay as they were."""
    ckpt = model_dirs[0]
    (tmp_path / "file").write_text("mine")
    for out in (tmp_path / "file", tmp_path / "file" / "deeper"):
        result = run_cli(capsys, "eval", ckpt, "--task", mc_task, "--out", out)
        assert_one_line_error(result, str(tmp_path / "file"), "not a directory")
    assert (tmp_path / "file").read_text() == "mine"
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "results.json").write_text("{}")
    result = run_cli(capsys, "eval", ckpt, "--task", mc_task, "--out", earlier)
    assert_one_line_error(result, str(earlier), "already holds an evaluation", "results.json")
    assert [p.name for p in earlier.iterdir()] == ["results.json"] and (earlier / "results.json").read_text() == "{}"


def test_output_directory_may_exist_and_hold_other_files(model_dirs, mc_task, tmp_path, capsys):
    out = tmp_path / "notes"
    out.mkdir()
    (out / "README.txt").write_text("my notes")
    result = run_cli(capsys, "eval", model_dirs[0], "--task", mc_task, "--limit", 2, "--out", out)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["README.txt", "accuracy_vs_shots.png", "results.json"]
    assert (out / "README.txt").read_text() == "my notes"


def test_k_beyond_the_few_shot_pool_is_capped_and_said(model_dirs, tmp_path, capsys):
    """Few-shot examples from the 4-document test split itself: at most 3 fit a prompt (never the document
    asked). K = 10 is run as K = 3, one warning names the K capped and the cap, and results mark it."""
    path = _write_task(tmp_path / "t", "four", {"test": _choice_docs(4, 5)}, fewshot_split="test", training_split=None)
    result = run_cli(capsys, "eval", model_dirs[0], "--task", path, "--shots", 0, 3, 5, 10, "--json",
                     "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "capped" in line]
    assert len(warnings) == 1, result.stderr
    assert "at most 3 examples" in warnings[0] and "K=5, 10 capped to 3" in warnings[0]
    assert "11" not in result.stderr
    shots = json.loads(result.stdout)["tasks"]["four"]["shots"]
    for k in ("5", "10"):
        assert shots[k]["capped"] == 4 and shots[k]["shots_mean"] == 3
        assert shots[k]["metrics"] == shots["3"]["metrics"]  # the same prompts as K = 3
    assert shots["3"]["capped"] == 0 and shots["3"]["shots_mean"] == 3


def test_plot_has_error_bars_and_marks_capped_k(model_dirs, tmp_path, capsys):
    from gptlab.eval import report

    docs = _choice_docs(6, 7)
    for doc in docs:
        doc["question"] = " ".join(["stone"] * 40)  # K = 5 does not fit the context: capped
    path = _write_task(tmp_path / "t", "long", {"train": docs, "test": docs[:4]})
    result = run_cli(capsys, "eval", model_dirs[0], "--task", path, "--shots", 0, 1, 5, "--json",
                     "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    results = json.loads(result.stdout)
    at_k = results["tasks"]["long"]["shots"]
    assert at_k["5"]["capped"] > 0 and at_k["0"]["capped"] == at_k["1"]["capped"] == 0
    figure = report.figure(results)
    axes = figure.axes[0]
    [bars] = axes.containers  # one error-bar set per task
    [segments] = bars.lines[2]
    half_widths = [(y[1] - y[0]) / 2 for y in (seg[:, 1] for seg in segments.get_segments())]
    assert half_widths == pytest.approx([at_k[k]["metrics"]["acc"]["stderr"] for k in ("0", "1", "5")])
    hollow = [line for line in axes.lines if line.get_markerfacecolor() in ("white", (1.0, 1.0, 1.0, 1.0))]
    assert [list(line.get_xdata()) for line in hollow if len(line.get_xdata())] == [[5]]
    assert report.CAPPED_LABEL in [text.get_text() for text in axes.get_legend().get_texts()]


def test_log_samples_match_the_harness_fields_and_values(model_dirs, mc_task, harness_mc, tmp_path, capsys):
    """One JSONL per task and K with the harness's `--log_samples` fields and, per document, its contexts,
    log-likelihoods, per-document scores and hashes; their mean is the reported score."""
    out = tmp_path / "out"
    result = run_cli(capsys, "eval", model_dirs[0], "--task", mc_task, "--shots", 0, 3, "--out", out,
                     "--log-samples")
    assert result.returncode == 0, result.stderr
    assert "samples_colors_3shot.jsonl" in result.stdout
    results = json.loads((out / "results.json").read_text())
    assert "samples" not in results
    for k, (_, theirs) in harness_mc.items():
        ours = [json.loads(line) for line in (out / f"samples_colors_{k}shot.jsonl").read_text().splitlines()]
        assert len(ours) == len(theirs) == 24
        for mine, their in zip(ours, sorted(theirs, key=lambda s: s["doc_id"]), strict=True):
            for field in ("doc_id", "doc", "target", "filter", "doc_hash", "prompt_hash", "target_hash", "acc", "acc_norm"):
                assert mine[field] == their[field], field
            assert mine["arguments"] == [list(args) for args in their["arguments"]]
            lls = [float(r[0][0]) for r in their["resps"]]
            assert [r[0][0] for r in mine["resps"]] == [r[0] for r in mine["filtered_resps"]] == pytest.approx(lls, abs=1e-4)
            assert [r[0][1] for r in mine["resps"]] == [bool(r[0][1]) for r in their["resps"]]
            assert set(their["metrics"]) <= set(mine["metrics"]) and mine["shots"] == k
            assert mine["acc"] == float(mine["picked"]["acc"] == mine["target"])
        for metric in ("acc", "acc_norm", "acc_token", "acc_uncond"):
            mean = sum(s[metric] for s in ours) / len(ours)
            assert results["tasks"]["colors"]["shots"][str(k)]["metrics"][metric]["value"] == pytest.approx(mean)


def test_log_samples_show_generated_answers(model_dirs, rolling_task, tmp_path, capsys, monkeypatch):
    """generate_until: each answer as generated and its exact match against the target; a rolling task
    (one file: K changes nothing): each document's log-likelihood with its words and bytes."""
    monkeypatch.chdir(tmp_path)
    result = run_cli(capsys, "eval", model_dirs[0], "--task", "arithmetic_2d_plus", rolling_task,
                     "--limit", 3, "--shots", 1, "--out", "out", "--log-samples")
    assert result.returncode == 0, result.stderr
    rolling = [json.loads(line) for line in (tmp_path / "out" / "samples_tiny_wiki.jsonl").read_text().splitlines()]
    texts = [sample["doc"]["text"] for sample in rolling]
    lls = scoring.loglikelihood_rolling(gptlab.load(model_dirs[0]), texts)
    for sample, text, ll in zip(rolling, texts, lls, strict=True):
        assert sample["arguments"] == [[text]] and sample["resps"][0][0] == pytest.approx(ll)
        assert sample["word_perplexity"] == [sample["resps"][0][0], len(text.split())]
        assert sample["bits_per_byte"] == [sample["resps"][0][0], len(text.encode())]
    logged = tmp_path / "out" / "samples_arithmetic_2d_plus_1shot.jsonl"
    samples = [json.loads(line) for line in logged.read_text().splitlines()]
    assert [s["doc_id"] for s in samples] == [0, 1, 2]
    for sample in samples:
        [[context, kwargs]] = sample["arguments"]
        assert context.endswith(sample["doc"]["context"]) and kwargs["until"] == ["\n"]
        [answer] = sample["filtered_resps"]
        assert sample["resps"] == [[answer]] and sample["target"] == sample["doc"]["completion"]
        assert sample["exact_match"] == float(answer == sample["target"]) and sample["metrics"] == ["exact_match"]


def test_readme_task_runs_in_lm_eval_as_printed_from_the_repository_root(model_dirs, tmp_path, capsys, monkeypatch):
    """The README's capitals task, written by the README's own commands into a folder shaped like the
    repository, and its `lm_eval --model gptlab ... --include_path demo` command exactly as printed, run
    from that folder as the README's commands are; `gptlab eval` on the same YAML gives the same accuracy."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    root = tmp_path / "repo"
    (root / "demo").mkdir(parents=True)
    shutil.copytree(model_dirs[0], root / "runs" / "mine" / "final")
    heredocs = re.findall(r"^(cat > demo/capitals\.\w+ <<'(\w+)'\n.*?^\2\n)", readme, re.M | re.S)
    assert len(heredocs) == 2, "the README no longer writes demo/capitals.jsonl and demo/capitals.yaml"
    for script, _ in heredocs:
        subprocess.run(["bash", "-euc", script], cwd=root, check=True)
    [command] = re.findall(r"`(lm_eval --model gptlab [^`]*)`", readme)
    program, *args = shlex.split(command)
    done = subprocess.run([os.path.join(os.path.dirname(sys.executable), program), *args], cwd=root,
                          capture_output=True, text=True, timeout=600, env={**os.environ, "HF_DATASETS_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    [row] = [line.split("|") for line in done.stdout.splitlines() if line.startswith("|capitals")]
    assert row[5].strip() == "acc", row
    monkeypatch.chdir(root)
    result = run_cli(capsys, "eval", "runs/mine/final", "--task", "demo/capitals.yaml", "--json")
    assert result.returncode == 0, result.stderr
    acc = json.loads(result.stdout)["tasks"]["capitals"]["shots"]["0"]["metrics"]["acc"]
    assert acc["value"] == pytest.approx(float(row[7]), abs=5e-5)  # the table shows 4 decimals
    assert acc["stderr"] == pytest.approx(float(row[9]), abs=5e-5)
