"""`gptlab.run_pipeline`, `gptlab.run_sweep` and the other tools' Python calls (`scale_predict`, `scale_plan`,
`write_example`, `model_info`, `convert`): the `gptlab data`, `scale`, `model` and `convert` verbs as calls that
return their results instead of printing them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import gptlab
from gptlab.errors import GptlabError


@pytest.fixture
def documents(tmp_path, corpus_text) -> Path:
    """Twelve 1,000-character documents and a near-copy of the first."""
    texts = [corpus_text[i * 1000 : (i + 1) * 1000] for i in range(12)]
    texts.append(texts[0].replace(" the ", " a ", 1))
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    return path


def test_run_pipeline_returns_each_stage_result_and_prints_nothing(tmp_path, documents, small_tokenizer, capsys):
    small_tokenizer.save(tmp_path / "tokenizer")
    spec = {"workers": 1, "stages": [
        {"dedup": {"input": [str(documents)], "output": str(tmp_path / "dedup")}},
        {"tokenize": {"input": str(tmp_path / "dedup"), "output": str(tmp_path / "shards"),
                      "tokenizer": str(tmp_path / "tokenizer")}},
    ]}
    result = gptlab.run_pipeline(spec)
    assert capsys.readouterr().out == ""
    dedup, tokenize = result.stages
    assert (dedup.stage, dedup.stats["documents_in"], dedup.stats["documents_out"]) == ("dedup", 13, 12)
    assert dedup.stats == json.loads((tmp_path / "dedup" / "stats.json").read_text())
    assert result.output == tmp_path / "shards" and tokenize.stats["documents_written"] == 12
    shards = np.concatenate([np.fromfile(p, np.uint16) for p in sorted((tmp_path / "shards").glob("*.bin"))])
    assert int((shards == small_tokenizer.eot_id).sum()) == 12
    assert "12 written" in tokenize.report()

    (tmp_path / "pipeline.yaml").write_text(json.dumps(spec))  # a YAML file means the same; a rerun resumes
    again = gptlab.run_pipeline(tmp_path / "pipeline.yaml")
    assert [s.stats for s in again.stages] == [s.stats for s in result.stages]


@pytest.mark.parametrize("stage, fragment", [
    ({"dedup": {"input": "x", "output": "y", "bogus": 1}}, "(dedup): unknown option bogus"),
    ({"dedup": {"input": "x"}}, "(dedup): missing output"),
    ({"dedup": {"input": "x", "output": "y", "workers": "many"}}, "(dedup): workers must be int"),
    ({"mix": {"input": ["web"], "weight": {"web": 1}, "tokenizer": "t", "output": "o"}}, "(mix): input: 'web': expected NAME=VALUE"),
])
def test_run_pipeline_checks_every_stage_before_running_any(tmp_path, documents, stage, fragment):
    first = {"dedup": {"input": str(documents), "output": str(tmp_path / "first")}}
    with pytest.raises(GptlabError) as error:
        gptlab.run_pipeline({"stages": [first, stage]})
    assert f"stage 2 {fragment}" in str(error.value)
    assert not (tmp_path / "first").exists()


def test_run_sweep_returns_the_fitted_laws(tmp_path):
    import argparse
    import shlex

    text = tmp_path / "source.txt"
    text.write_text("\n".join(Path(m.__file__).read_text(encoding="utf-8") for m in (argparse, shlex, json.decoder)))
    config = gptlab.SweepConfig(data=(str(text),), out=str(tmp_path / "sweep"), sizes=(7000, 15000, 26000, 40000),
                                tokens_per_param=(0.4,), seq_len=16, batch_size=4, eval_windows=4, threads=1,
                                progress=False)
    result = gptlab.run_sweep(config)
    assert result.summary == json.loads(result.scaling_file.read_text())
    assert len(result.summary["runs"]) == 4 and result.plot_file.stat().st_size > 0
    assert "L(C) = a·C^-b + c: a = " in result.report() and str(result.scaling_file) in result.report()
    largest = max(run["flops"] for run in result.summary["runs"])
    estimate = gptlab.scale_predict(result.out, flops=10 * largest)
    assert estimate.beyond == pytest.approx(10) and 0 < estimate.prediction.loss < result.summary["runs"][0]["val_loss"]
    planned = gptlab.scale_plan(result.out, flops=10 * largest)
    assert planned.settings["out"] == str(result.out / f"planned-{10 * largest:.0e}")
    assert planned.estimate.prediction.loss > 0 and planned.command().startswith("gptlab train --data")
    with pytest.raises(GptlabError, match="sizes or their compute budgets"):
        gptlab.run_sweep(data=(str(text),), out=str(tmp_path / "none"))


def test_the_tools_calls_write_describe_and_convert(tmp_path):
    written = gptlab.write_example(tmp_path / "demo")
    assert (tmp_path / "demo" / "input.txt").stat().st_size > 100_000 and written

    assert gptlab.model_info("gpt2")["params"] == 124_439_808  # GPT-2 small, the tied head counted once
    checkpoint = gptlab.save(tmp_path / "tiny", gptlab.GPT(gptlab.preset("tiny", vocab_size=300)), None)
    assert gptlab.model_info(str(checkpoint))["n_layer"] == gptlab.preset("tiny").n_layer

    hf = gptlab.convert(checkpoint, tmp_path / "hf", to="hf")
    back = gptlab.convert(hf, tmp_path / "back", to="gptlab")
    before, after = gptlab.load(checkpoint).model.state_dict(), gptlab.load(back).model.state_dict()
    assert before.keys() == after.keys() and all(before[k].equal(after[k]) for k in before)
    with pytest.raises(GptlabError, match="exists"):
        gptlab.convert(checkpoint, tmp_path / "hf", to="hf")
