"""Checkpoint directories: saved and loaded whole and atomically, and every way one can be missing, damaged or
mismatched refused in one line."""

import json
import shutil

import pytest
import torch

import gptlab
from gptlab.errors import GptlabError
from gptlab.model import GPT, preset
from gptlab.tokenizer import byte_tokenizer


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, small_tokenizer):
    torch.manual_seed(0)
    model = GPT(preset("tiny", vocab_size=small_tokenizer.vocab_size, attention=("global", "local"), window_size=16))
    path = tmp_path_factory.mktemp("ckpt") / "model"
    gptlab.save(path, model, small_tokenizer)
    return path, model


def test_round_trip_keeps_weights_config_and_tokenizer(checkpoint, small_tokenizer):
    path, model = checkpoint
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "merges.txt", "model.safetensors", "vocab.json"]
    lm = gptlab.load(path)
    assert lm.config == model.config
    idx = torch.randint(0, model.config.vocab_size, (2, 40))
    assert torch.equal(lm.model(idx), model.eval()(idx))
    assert lm.model.lm_head.weight is lm.model.wte.weight
    text = "To be, or not to be"
    assert lm.tokenizer.encode(text) == small_tokenizer.encode(text)
    assert lm.tokenizer.decode(lm.tokenizer.encode(text)) == text


def test_saved_config_is_readable_json(checkpoint):
    config = json.loads((checkpoint[0] / "config.json").read_text())
    assert config["format"] == "gptlab" and config["model"]["attention"] == ["global", "local"]


def test_missing_checkpoint(tmp_path):
    with pytest.raises(GptlabError, match="no gptlab checkpoint at"):
        gptlab.load(tmp_path / "nope")
    with pytest.raises(GptlabError, match="config.json is missing"):
        gptlab.load(tmp_path)


def test_truncated_weights(checkpoint, tmp_path):
    bad = shutil.copytree(checkpoint[0], tmp_path / "bad")
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(GptlabError, match="corrupt or truncated"):
        gptlab.load(bad)
    (bad / "model.safetensors").unlink()
    with pytest.raises(GptlabError, match="has no model.safetensors"):
        gptlab.load(bad)


def test_weights_that_do_not_match_the_config(checkpoint, tmp_path):
    bad = shutil.copytree(checkpoint[0], tmp_path / "bad")
    config = json.loads((bad / "config.json").read_text())
    config["model"]["n_layer"] = 3
    config["model"]["d_model"] = 128
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(GptlabError, match=r"does not match its model config: missing h\.2\..*shape"):
        gptlab.load(bad)


def test_corrupt_or_foreign_config(checkpoint, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    with pytest.raises(GptlabError, match="not valid JSON"):
        gptlab.load(bad)
    (bad / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(GptlabError, match="Hugging Face checkpoint.*gptlab convert"):
        gptlab.load(bad)


def test_tokenizer_larger_than_model_vocab(small_tokenizer, tmp_path):
    gptlab.save(tmp_path / "m", GPT(preset("tiny", vocab_size=small_tokenizer.vocab_size - 10)), None)
    small_tokenizer.save(tmp_path / "m")  # a tokenizer copied in by hand
    with pytest.raises(GptlabError, match="tokenizer has 512 tokens but the model's vocab_size is 502"):
        gptlab.load(tmp_path / "m")


@pytest.mark.parametrize("model_vocab", [256, 385, 50257])
def test_save_refuses_a_model_vocab_that_does_not_fit_the_tokenizer(model_vocab, tmp_path):
    """The README's trap: preset("gpt3-small") with a small tokenizer saved fine and failed at generate time."""
    with pytest.raises(GptlabError, match=f"tokenizer has 257 tokens but the model's vocab_size is {model_vocab}"):
        gptlab.save(tmp_path / "m", GPT(preset("tiny", vocab_size=model_vocab)), byte_tokenizer())
    assert not (tmp_path / "m").exists()


def test_save_accepts_a_vocab_padded_to_a_multiple_of_128(tmp_path):
    """Padding 50257 to 50304 (nanoGPT, `gptlab train --vocab-size`) is legal: generation never samples the pad."""
    gptlab.save(tmp_path / "m", GPT(preset("tiny", vocab_size=384)), byte_tokenizer())
    lm = gptlab.load(tmp_path / "m")
    assert lm.config.vocab_size == 384
    assert isinstance(lm.generate("ab", max_new_tokens=40, temperature=100.0, seed=0), str)


def test_load_on_a_device_that_is_not_there(checkpoint):
    with pytest.raises(GptlabError, match="unknown device 'nonsense'"):
        gptlab.load(checkpoint[0], device="nonsense")
    if not torch.cuda.is_available():
        with pytest.raises(GptlabError, match="no GPU is available"):
            gptlab.load(checkpoint[0], device="cuda")
    else:
        with pytest.raises(GptlabError, match="cuda:99"):
            gptlab.load(checkpoint[0], device="cuda:99")


def test_save_replaces_atomically(checkpoint, tmp_path, small_tokenizer):
    path = tmp_path / "m"
    model = GPT(preset("tiny", vocab_size=small_tokenizer.vocab_size))
    gptlab.save(path, model, small_tokenizer)
    gptlab.save(path, model, small_tokenizer)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_generate_api_on_loaded_checkpoint(checkpoint):
    lm = gptlab.load(checkpoint[0])
    a = lm.generate("ROMEO:", max_new_tokens=20, temperature=0)
    pieces = list(lm.stream("ROMEO:", max_new_tokens=20, temperature=0))
    assert isinstance(a, str) and a == "".join(pieces)
    batch = lm.generate(["ROMEO:", "To be, or not to be, that is the question:"], max_new_tokens=20, temperature=0)
    assert batch[0] == a


def test_checkpoint_files_get_normal_permissions(checkpoint):
    import os
    import stat

    umask = os.umask(0)
    os.umask(umask)
    path = checkpoint[0]
    assert stat.S_IMODE(path.stat().st_mode) == 0o777 & ~umask
    for f in path.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) & 0o644 == 0o644 & ~umask, f
