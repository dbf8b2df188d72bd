"""`gptlab eval` runs lm-evaluation-harness's own task system: a task family with `include`, Python hooks
(`!function utils.process_docs`, `process_results`), a filter and a group gives the harness's numbers."""

from __future__ import annotations

import json
import os
import textwrap

import pytest
import torch
from helpers import gptlab_cli

import gptlab
from gptlab.checkpoint.hf import export_hf
from gptlab.model import GPT, preset

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

UTILS = '''
def process_docs(dataset):
    def words(doc):
        return {**doc, "question": f"What is {doc['a']} plus {doc['b']}?", "answer": str(doc["a"] + doc["b"])}
    return dataset.map(words)


def process_results(doc, results):
    (answer,) = results
    return {"exact_match": float(answer == doc["answer"]), "answered": float(answer != "[invalid]")}
'''


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory, small_tokenizer):
    torch.manual_seed(0)
    model = GPT(preset("tiny", vocab_size=small_tokenizer.vocab_size, n_ctx=128, init_std=0.2))
    root = tmp_path_factory.mktemp("lm_eval_tasks")
    ckpt = gptlab.save(root / "ckpt", model, small_tokenizer)
    return ckpt, export_hf(ckpt, root / "hf")


@pytest.fixture(scope="module")
def task_folder(tmp_path_factory):
    """A group of two tasks sharing one base YAML through `include`: a loglikelihood task, and a
    generate_until task whose answers go through a regex filter and a `process_results` hook."""
    folder = tmp_path_factory.mktemp("sums")
    for split, n in (("train", 4), ("test", 6)):
        rows = [{"a": 3 * i + len(split), "b": 7 - i} for i in range(n)]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "utils.py").write_text(UTILS)
    (folder / "_base.yaml").write_text(textwrap.dedent(f"""\
        dataset_path: json
        dataset_kwargs:
          data_files:
            train: {folder / 'train.jsonl'}
            test: {folder / 'test.jsonl'}
        training_split: train
        test_split: test
        process_docs: !function utils.process_docs
        doc_to_text: "Q: {{{{question}}}}\\nA:"
        doc_to_target: " {{{{answer}}}}"
        """))
    (folder / "sums_ll.yaml").write_text("include: _base.yaml\ntask: sums_ll\noutput_type: loglikelihood\n")
    (folder / "sums_gen.yaml").write_text(textwrap.dedent("""\
        include: _base.yaml
        task: sums_gen
        output_type: generate_until
        generation_kwargs:
          until: ["\\n"]
          max_gen_toks: 6
        filter_list:
          - name: first-word
            filter:
              - function: regex
                regex_pattern: "(\\\\w+)"
              - function: take_first
        process_results: !function utils.process_results
        metric_list:
          - metric: exact_match
            aggregation: mean
            higher_is_better: true
          - metric: answered
            aggregation: mean
            higher_is_better: true
        """))
    (folder / "sums.yaml").write_text("group: sums\ntask: [sums_ll, sums_gen]\n")
    return folder


def test_include_function_filter_and_group_give_the_harness_numbers(model_dirs, task_folder, tmp_path):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    ckpt, hf = model_dirs
    result = gptlab_cli("eval", ckpt, "--task", task_folder / "sums.yaml", "--shots", 1, "--json", "--log-samples",
                        "--out", tmp_path / "out", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    ours = json.loads(result.stdout)["tasks"]
    theirs = simple_evaluate(
        model="hf", model_args=f"pretrained={hf},dtype=float32", tasks=["sums"], num_fewshot=1, batch_size=4,
        device="cpu", task_manager=TaskManager(include_path=str(task_folder), include_defaults=False),
        log_samples=True, bootstrap_iters=0,
    )
    assert set(ours) >= {"sums_ll", "sums_gen"}
    for name in ("sums_ll", "sums_gen"):
        mine = ours[name]["shots"]["1"]["metrics"]
        reported = {k: v for k, v in theirs["results"][name].items() if "," in k and "_stderr" not in k}
        assert reported, theirs["results"][name]
        for key, value in reported.items():
            metric = key.removesuffix(",none")
            assert mine[metric]["value"] == pytest.approx(value, rel=1e-5, abs=1e-9), (name, key)  # float32 on both sides
    # the same requests and answers, document by document: the hook-made questions, the filtered answers
    for name in ("sums_ll", "sums_gen"):
        logged = [json.loads(line) for line in (tmp_path / "out" / f"samples_{name}_1shot.jsonl").read_text().splitlines()]
        harness = sorted(theirs["samples"][name], key=lambda s: (s["filter"], s["doc_id"]))
        logged.sort(key=lambda s: (s["filter"], s["doc_id"]))
        assert len(logged) == len(harness) == 6
        for mine, their in zip(logged, harness, strict=True):
            assert mine["doc"]["question"].startswith("What is") and mine["filter"] == their["filter"]
            assert mine["arguments"][0][0] == their["arguments"][0][0]
            if name == "sums_gen":
                assert mine["filter"] == "first-word" and mine["filtered_resps"] == their["filtered_resps"]
            else:
                assert mine["resps"][0][0][0] == pytest.approx(float(their["resps"][0][0][0]), abs=1e-4)


def test_python_evaluate_returns_results_and_prints_nothing(model_dirs, task_folder, tmp_path, capfd):
    """`gptlab.evaluate`, the Python face of `gptlab eval`: a checkpoint path or a loaded model, settings
    as keywords or an EvalConfig; the metrics and the files written come back, nothing is printed."""
    ckpt = model_dirs[0]
    results = gptlab.evaluate(ckpt, tasks=[str(task_folder / "sums_ll.yaml")], shots=[0, 2], out=tmp_path / "a",
                              device="cpu")
    assert capfd.readouterr() == ("", "")
    written = json.loads((tmp_path / "a" / "results.json").read_text())
    assert results.paths[0] == tmp_path / "a" / "results.json" and written == results.results
    assert set(results.metrics["sums_ll"]) == {0, 2}
    assert results.metrics["sums_ll"][2]["acc"] == written["tasks"]["sums_ll"]["shots"]["2"]["metrics"]["acc"]["value"]
    config = gptlab.EvalConfig(tasks=[str(task_folder / "sums_ll.yaml")], shots=[2])
    again = gptlab.evaluate(gptlab.load(ckpt), config, out=tmp_path / "b")
    assert again.metrics["sums_ll"][2] == results.metrics["sums_ll"][2]
    with pytest.raises(gptlab.GptlabError, match="already holds an evaluation"):
        gptlab.evaluate(ckpt, config, out=tmp_path / "b")


def test_generate_until_f1_is_squads(model_dirs, task_folder, tmp_path):
    """`metric: f1` on a generate_until task is SQuAD's token F1 of each answer (the harness's own `f1`
    is a multiple-choice class F1 that cannot score free text), averaged over the documents."""
    from gptlab.eval.text_metrics import f1

    (task_folder / "sums_f1.yaml").write_text(textwrap.dedent("""\
        include: _base.yaml
        task: sums_f1
        output_type: generate_until
        generation_kwargs:
          until: ["\\n"]
          max_gen_toks: 6
        metric_list:
          - metric: exact_match
          - metric: f1
        """))
    results = gptlab.evaluate(model_dirs[0], tasks=[str(task_folder / "sums_f1.yaml")], out=tmp_path, device="cpu",
                              log_samples=True)
    samples = results.results["samples"]["sums_f1_0shot"]
    scores = [f1(s["filtered_resps"][0], s["target"]) for s in samples]
    assert [s["f1"] for s in samples] == scores
    assert results.metrics["sums_f1"][0]["f1"] == pytest.approx(sum(scores) / len(scores))
