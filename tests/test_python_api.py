"""Each verb's Python call (`gptlab.train`, `gptlab.finetune`, `gptlab.quickstart`, `gptlab.predict`,
`gptlab.serve`): real runs of tiny models, returning what they made."""

import json
import socket
import threading

import openai
import pytest
import torch

import gptlab
from gptlab.errors import GptlabError
from gptlab.tokenizer import byte_tokenizer

TINY = {"model": "tiny", "n_layer": 1, "d_model": 32, "n_head": 2, "seq_len": 32, "batch_size": 4, "max_steps": 2,
        "eval_windows": 2, "sample_tokens": 0, "progress": False, "threads": 1}


def test_train_takes_settings_and_returns_its_run(tmp_path, corpus):
    result = gptlab.train(data=[str(corpus)], tokenizer="byte", out=str(tmp_path / "run"), **TINY)
    assert isinstance(result, gptlab.TrainResult)
    assert result.step == 2 and result.out == tmp_path / "run" and (result.final / "model.safetensors").is_file()
    assert result.val_bpb is not None and result.val_bpb > 0
    assert gptlab.load(result.final).config.n_layer == 1


def test_train_takes_a_packaged_recipe_by_name_or_a_config_object(tmp_path, corpus):
    result = gptlab.train("shakespeare-char", data=[str(corpus)], out=str(tmp_path / "byname"), **TINY)
    saved = json.loads((result.out / "train_config.json").read_text())
    assert saved["tokenizer"] == "char" and saved["lr"] == 1e-3  # the recipe's, under the settings given
    model = {k: TINY[k] for k in ("n_layer", "d_model", "n_head")}
    training = {k: v for k, v in TINY.items() if k not in model} | {"max_steps": 1}
    config = gptlab.TrainConfig(data=[str(corpus)], tokenizer="byte", out=str(tmp_path / "obj"), model_overrides=model,
                                **training)
    assert gptlab.train(config).step == 1
    with pytest.raises(GptlabError, match=r"unknown config key 'max_stepz' \(did you mean max_steps\?\)"):
        gptlab.train(data=[str(corpus)], max_stepz=3)
    with pytest.raises(GptlabError, match="no config file or packaged recipe 'no-such-recipe'.*shakespeare-char"):
        gptlab.train("no-such-recipe")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """An untrained byte-level GPT to fine-tune."""
    torch.manual_seed(0)
    model = gptlab.GPT(gptlab.preset("tiny", n_layer=1, d_model=32, n_head=2, n_ctx=64, vocab_size=257))
    return gptlab.save(tmp_path_factory.mktemp("base") / "gpt", model, byte_tokenizer())


ROWS = [{"text": f"{word} {i}", "label": label} for i in range(8) for word, label in (("good", "pos"), ("bad", "neg"))]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory, base):
    """The finetune twin's run: (its result, its output directory)."""
    folder = tmp_path_factory.mktemp("finetune")
    train = folder / "train.jsonl"
    train.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    result = gptlab.finetune(checkpoint=str(base), train=str(train), out=str(folder / "run"), max_steps=2,
                             batch_size=4, progress=False, threads=1)
    return result


def test_finetune_takes_settings_and_returns_its_run(classifier):
    assert classifier.step == 2 and (classifier.final / "model.safetensors").is_file()
    assert "val_acc" in classifier.val
    config = json.loads((classifier.out / "train_config.json").read_text())
    assert config["lr"] == 6.25e-5 and config["lr_schedule"] == "linear"  # GPT-1's defaults, not pretraining's


def test_finetune_config_has_gpt1_defaults_over_the_training_settings():
    config = gptlab.FinetuneConfig(checkpoint="ckpt", train="rows.jsonl")
    assert (config.lr, config.batch_size, config.weight_decay, config.max_steps, config.out) == (
        6.25e-5, 32, 0.01, None, "runs/finetune")
    assert gptlab.TrainConfig().lr is None and gptlab.TrainConfig().max_steps == 1000  # the parent's stay
    with pytest.raises(GptlabError, match="name the training rows file"):
        gptlab.FinetuneConfig(checkpoint="ckpt")


def test_predict_labels_rows_and_writes_them(classifier, tmp_path):
    result = gptlab.predict(classifier.final, ROWS, batch_size=3, threads=1)
    assert len(result.rows) == len(ROWS) and {r["label"] for r in result.rows} <= {"pos", "neg"}
    assert result.accuracy is not None and 0 <= result.accuracy.value <= 1 and result.output is None
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"text": r["text"]}) + "\n" for r in ROWS))
    written = gptlab.predict(classifier.final, rows, output=tmp_path / "out.jsonl")
    assert written.accuracy is None and written.output == tmp_path / "out.jsonl" and not written.replaced
    lines = [json.loads(line) for line in written.output.read_text().splitlines()]
    assert [line["label"] for line in lines] == [r["label"] for r in result.rows]  # same model, same answers
    with pytest.raises(GptlabError, match="is the input file"):
        gptlab.predict(classifier.final, rows, output=rows)
    with pytest.raises(GptlabError, match="batch_size must be at least 1"):
        gptlab.predict(classifier.final, ROWS, batch_size=0)


def test_quickstart_trains_on_the_standard_library(tmp_path):
    result = gptlab.quickstart(minutes=0.02, out=str(tmp_path / "qs"), model="tiny", vocab_size=300, seq_len=32,
                               batch_size=4, progress=False, threads=1)
    assert (result.final / "model.safetensors").is_file() and result.val_bpb is not None
    assert gptlab.load(result.final).tokenizer.vocab_size == 300


def test_serve_blocks_until_stopped_and_answers_meanwhile(base):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    servers = []
    thread = threading.Thread(
        target=gptlab.serve, args=(base,), kwargs={"port": port, "model_name": "tiny", "ready": servers.append}
    )
    thread.start()
    try:
        for _ in range(600):  # the model loads, then uvicorn starts: a hang guard, not a timing
            if servers and servers[0].started:
                break
            thread.join(0.1)
        client = openai.OpenAI(base_url=servers[0].url, api_key="unused", max_retries=0)
        assert client.models.list().data[0].id == "tiny"
        completion = client.completions.create(model="tiny", prompt="ab", max_tokens=3, temperature=0)
        assert completion.usage.completion_tokens == 3
    finally:
        if servers:
            servers[0].stop()
        thread.join(60)
    assert not thread.is_alive()
    with pytest.raises(GptlabError, match="port must be in 1..65535, got 0"):
        gptlab.serve(base, port=0)
