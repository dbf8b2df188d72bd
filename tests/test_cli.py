"""The `gptlab` command as a user runs it: a real subprocess, real files, exit codes and one-line errors."""

import json

import pytest
import torch
from helpers import assert_one_line_error, gptlab_cli, run_cli

import gptlab
from gptlab.model import GPT, preset
from gptlab.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, small_tokenizer):
    torch.manual_seed(0)
    model = GPT(preset("tiny", vocab_size=small_tokenizer.vocab_size, n_ctx=64, init_std=0.1))
    return gptlab.save(tmp_path_factory.mktemp("cli") / "ckpt", model, small_tokenizer)


def test_help_lists_every_verb_and_each_verb_has_help():
    top = gptlab_cli("--help")
    assert top.returncode == 0
    for verb in ("model", "tokenizer", "convert", "generate"):
        assert verb in top.stdout
    for args in (["model", "info"], ["tokenizer", "train"], ["tokenizer", "encode"], ["tokenizer", "decode"],
                 ["convert"], ["generate"]):
        result = gptlab_cli(*args, "--help")
        assert result.returncode == 0 and "usage: gptlab" in result.stdout and "--" in result.stdout, args


def test_model_info_json_on_the_meta_device():
    info = json.loads(gptlab_cli("model", "info", "gpt3-175b", "--json").stdout)
    assert info["params"] == 174_604_259_328
    assert (info["n_layer"], info["n_head"], info["d_model"], info["n_ctx"], info["vocab_size"]) == (96, 96, 12288, 2048, 50257)
    assert json.loads(gptlab_cli("model", "info", "gpt2", "--json").stdout)["params"] == 124_439_808
    assert_one_line_error(gptlab_cli("model", "info", "gpt9"), "unknown model preset")


def test_model_info_reads_a_checkpoint(checkpoint, small_tokenizer):
    info = json.loads(gptlab_cli("model", "info", checkpoint, "--json").stdout)
    assert info["vocab_size"] == small_tokenizer.vocab_size and info["n_ctx"] == 64


def test_tokenizer_train_encode_decode(tmp_path, corpus_text, small_tokenizer):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(corpus_text[:200_000])
    out = tmp_path / "tok"
    trained = gptlab_cli("tokenizer", "train", "--input", corpus, "--vocab-size", 400, "--out", out, "--quiet")
    assert trained.returncode == 0, trained.stderr
    tok = gptlab.Tokenizer.from_dir(out)
    assert tok.vocab_size == 400 and tok.eot_id == 399
    sample = tmp_path / "sample.txt"
    sample.write_text("First Citizen:\nBefore we proceed any further, hear me speak.")
    ids = json.loads(gptlab_cli("tokenizer", "encode", "--tokenizer", out, "--input", sample).stdout)
    assert ids == tok.encode(sample.read_text())
    assert json.loads(gptlab_cli("tokenizer", "encode", "--tokenizer", out, input=sample.read_text()).stdout) == ids
    decoded = gptlab_cli("tokenizer", "decode", "--tokenizer", out, "--text", json.dumps(ids))
    assert decoded.stdout == sample.read_text() + "\n"


def test_tokenizer_train_prints_one_line(tmp_path, corpus):
    """The HF trainer ends each progress stage with a newline on stdout: it must not reach ours."""
    trained = gptlab_cli("tokenizer", "train", "--input", corpus, "--vocab-size", 300, "--out", tmp_path / "tok")
    assert trained.returncode == 0, trained.stderr
    assert trained.stdout == f"wrote tokenizer with 300 tokens to {tmp_path / 'tok'}\n"
    assert trained.stderr == ""  # not a terminal: no progress bar, no blank lines


def test_token_counts_read_in_the_singular():
    from gptlab.data.sampler import eval_starts

    with pytest.raises(gptlab.GptlabError, match="^1 token is too few for one window of seq_len 16: it takes 17 "):
        eval_starts(1, 16, max_windows=4)


def test_tokenizer_bad_input(tmp_path, small_tokenizer):
    tokdir = tmp_path / "tok"
    small_tokenizer.save(tokdir)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"caf\xe9 au lait")
    assert_one_line_error(gptlab_cli("tokenizer", "encode", "--tokenizer", tokdir, "--input", bad), "not valid UTF-8")
    assert_one_line_error(gptlab_cli("tokenizer", "encode", "--tokenizer", tmp_path / "none", "--text", "hi"))
    assert_one_line_error(gptlab_cli("tokenizer", "decode", "--tokenizer", tokdir, "--text", "[1, 2"), "JSON")
    assert_one_line_error(gptlab_cli("tokenizer", "train", "--input", tmp_path / "x.txt", "--vocab-size", 300, "--out", tmp_path / "o"), "not found")
    assert_one_line_error(gptlab_cli("tokenizer", "train", "--input", bad, "--vocab-size", 300, "--out", tmp_path / "o"), "nothing readable", "bad.txt")


def test_generate_matches_the_python_api(checkpoint):
    lm = gptlab.load(checkpoint)
    expected = lm.generate("ROMEO:", max_new_tokens=24, temperature=0)
    result = gptlab_cli("generate", checkpoint, "--prompt", "ROMEO:", "--max-new-tokens", 24, "--temperature", 0)
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected + "\n"
    echoed = gptlab_cli("generate", checkpoint, "--prompt", "ROMEO:", "--max-new-tokens", 24, "--temperature", 0, "--echo")
    assert echoed.stdout == "ROMEO:" + expected + "\n"


def test_generate_seeded_sampling_batch_and_stop(checkpoint):
    args = ["generate", checkpoint, "--prompt", "KING:", "--prompt", "QUEEN:", "--max-new-tokens", 30, "--seed", 3]
    a, b = gptlab_cli(*args), gptlab_cli(*args)
    assert a.returncode == 0 and a.stdout == b.stdout and a.stdout.count("-" * 40) == 1
    lm = gptlab.load(checkpoint)
    full = lm.generate("KING:", max_new_tokens=30, temperature=0)
    stop = full[5:8]
    stopped = gptlab_cli("generate", checkpoint, "--prompt", "KING:", "--max-new-tokens", 30, "--temperature", 0, "--stop", stop)
    assert stopped.stdout == full[: full.index(stop)] + "\n"


def test_generate_defaults_work_on_a_short_context(checkpoint):
    """The CLI's defaults are the library's: both fit a context of 64 tokens."""
    result = gptlab_cli("generate", checkpoint, "--seed", 0, "--prompt", "ROMEO:")
    assert result.returncode == 0, result.stderr
    assert result.stdout == gptlab.load(checkpoint).generate("ROMEO:", seed=0) + "\n"
    unconditional = gptlab_cli("generate", checkpoint)
    assert unconditional.returncode == 0, unconditional.stderr


def test_generate_on_a_device_that_is_not_there(checkpoint):
    assert_one_line_error(gptlab_cli("generate", checkpoint, "--device", "nonsense"), "unknown device 'nonsense'")
    if not torch.cuda.is_available():
        assert_one_line_error(gptlab_cli("generate", checkpoint, "--device", "cuda"), "no GPU is available")


def test_generate_bad_input(checkpoint, tmp_path):
    long_prompt = "word " * 200
    assert_one_line_error(gptlab_cli("generate", checkpoint, "--prompt", long_prompt, "--max-new-tokens", 8), "context is 64 tokens", "--truncate")
    ok = gptlab_cli("generate", checkpoint, "--prompt", long_prompt, "--max-new-tokens", 8, "--truncate", "--seed", 0)
    assert ok.returncode == 0, ok.stderr
    assert_one_line_error(gptlab_cli("generate", tmp_path / "missing", "--prompt", "x"), "no gptlab checkpoint at")
    assert_one_line_error(gptlab_cli("generate", checkpoint, "--prompt", "x", "--top-p", 2), "top_p")
    assert_one_line_error(gptlab_cli("generate", checkpoint, "--prompt", "x", "--num-beams", 0), "--num-beams must be at least 1")
    bad = tmp_path / "prompt.txt"
    bad.write_bytes(b"\xff\xfe")
    assert_one_line_error(gptlab_cli("generate", checkpoint, "--prompt-file", bad), "not valid UTF-8")


def test_readme_tour_convert_a_hf_model_then_generate(tmp_path, small_tokenizer):
    """Convert a real transformers GPT-2 with the CLI; `gptlab generate` greedy equals HF's own generate."""
    import transformers

    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=small_tokenizer.vocab_size, n_positions=64, n_embd=64, n_layer=2, n_head=4,
        initializer_range=0.3, bos_token_id=small_tokenizer.eot_id, eos_token_id=small_tokenizer.eot_id,
    )
    hf = transformers.GPT2LMHeadModel(config).eval()
    hf.save_pretrained(tmp_path / "hf")
    small_tokenizer.save(tmp_path / "hf")

    converted = gptlab_cli("convert", tmp_path / "hf", tmp_path / "ours", "--to", "gptlab")
    assert converted.returncode == 0, converted.stderr
    prompt = "First Citizen:"
    ids = small_tokenizer.encode(prompt)
    with torch.no_grad():
        out = hf.generate(torch.tensor([ids]), max_new_tokens=20, do_sample=False, pad_token_id=small_tokenizer.eot_id)
    new = out[0, len(ids):].tolist()
    if small_tokenizer.eot_id in new:
        new = new[: new.index(small_tokenizer.eot_id)]
    generated = gptlab_cli("generate", tmp_path / "ours", "--prompt", prompt, "--max-new-tokens", 20, "--temperature", 0)
    assert generated.returncode == 0, generated.stderr
    assert generated.stdout == small_tokenizer.decode(new) + "\n"

    back = gptlab_cli("convert", tmp_path / "ours", tmp_path / "hf2", "--to", "hf")
    assert back.returncode == 0, back.stderr
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf2").eval()
    x = torch.tensor([ids])
    with torch.no_grad():
        assert (reloaded(x).logits - hf(x).logits).abs().max() < 1e-4
    assert_one_line_error(gptlab_cli("convert", tmp_path / "hf", tmp_path / "ours", "--to", "gptlab"), "set overwrite to replace it")
    assert_one_line_error(gptlab_cli("convert", tmp_path / "nothing", tmp_path / "x", "--to", "gptlab"))


def test_unconditional_sample_starts_from_endoftext(checkpoint):
    result = gptlab_cli("generate", checkpoint, "--max-new-tokens", 10, "--seed", 0)
    assert result.returncode == 0, result.stderr
    lm = gptlab.load(checkpoint)
    assert result.stdout == lm.generate("", max_new_tokens=10, seed=0) + "\n"


def test_model_list_says_which_vocabulary_its_counts_assume(capsys):
    from helpers import run_cli

    result = run_cli(capsys, "model", "list")
    assert result.returncode == 0, result.stderr
    header, *lines = result.stdout.splitlines()
    assert header.split()[:4] == ["preset", "params", "vocab", "non-emb"]
    rows = {line.split()[0]: line.split()[1:4] for line in lines if line.split()[0] in ("mini", "gpt1")}
    assert rows["mini"] == ["7.26M", "50257", "0.79M"] and rows["gpt1"][1] == "40478"
    assert "GPT-2's BPE" in result.stdout and "the same at any vocab" in result.stdout


def test_tokenizer_train_refuses_empty_input_and_warns_when_it_falls_short(capsys, tmp_path):
    from helpers import assert_one_line_error, run_cli

    empty = tmp_path / "empty.txt"
    empty.write_text("")
    refused = run_cli(capsys, "tokenizer", "train", "--input", empty, "--vocab-size", 300, "--out", tmp_path / "none")
    assert_one_line_error(refused, "nothing to learn", "no text")
    assert not (tmp_path / "none").exists()
    small = tmp_path / "small.txt"
    small.write_text("hello world")
    short = run_cli(capsys, "tokenizer", "train", "--input", small, "--vocab-size", 300, "--out", tmp_path / "tok", "--quiet")
    assert short.returncode == 0, short.stderr
    reached = Tokenizer.from_dir(tmp_path / "tok").vocab_size
    assert reached < 300 and f"wrote tokenizer with {reached} tokens" in short.stdout
    assert short.stderr.strip() == (f"warning: the input is too small for vocab_size 300: it ran out of pairs to merge "
                                    f"at {reached} tokens")


def test_tokenizer_train_checks_its_output_before_training_and_replaces_only_when_asked(capsys, tmp_path):
    small = tmp_path / "small.txt"
    small.write_text("hello world, hello tokens")
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    for taken in (tmp_path / "a-file", tmp_path / "full"):
        refused = run_cli(capsys, "tokenizer", "train", "--input", small, "--vocab-size", 300, "--out", taken, "--quiet")
        assert_one_line_error(refused, str(taken), "already exists")
    assert (tmp_path / "a-file").read_text() == "x" and not (tmp_path / "full" / "vocab.json").exists()
    replaced = run_cli(capsys, "tokenizer", "train", "--input", small, "--vocab-size", 300, "--out", tmp_path / "full",
                       "--quiet", "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert Tokenizer.from_dir(tmp_path / "full").encode("hello") == gptlab.train_tokenizer(small, 300, progress=False).encode("hello")


def test_train_runs_a_packaged_recipe_by_name_with_its_data_relative_to_the_current_directory(tmp_path, corpus):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "input.txt").write_text(corpus.read_text())  # where shakespeare-char's `data` points
    result = gptlab_cli("train", "shakespeare-char", "--max-steps", 1, "--eval-windows", 2, "--sample-tokens", 0,
                        "--n-layer", 1, "--d-model", 32, "--n-head", 2, "--threads", 1, "--no-progress", "--out", "run",
                        cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    saved = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert saved["data"] == ["demo/input.txt"] and saved["tokenizer"] == "char" and saved["seq_len"] == 64
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()


def test_a_recipe_that_is_neither_packaged_nor_a_file_is_one_line(capsys):
    from helpers import run_cli

    assert_one_line_error(run_cli(capsys, "train", "no-such-recipe"), "no config file or packaged recipe",
                          "shakespeare-char", "quickstart")


def test_flags_come_from_the_config_fields_with_their_defaults_types_and_checks(capsys, checkpoint):
    from helpers import run_cli

    def help_of(*verb: str) -> str:
        result = gptlab_cli(*verb, "--help")
        assert result.returncode == 0, result.stderr
        return " ".join(result.stdout.split())

    finetune = help_of("finetune")
    assert "--lr VALUE Peak learning rate. (default 6.25e-05)" in finetune  # FinetuneConfig's default, not training's
    assert "--lr-schedule {cosine,linear}" in finetune and "(default linear)" in finetune
    train = help_of("train")
    assert "--max-steps VALUE Optimizer steps;" in train and "(default 1000)" in train
    assert "--compile, --no-compile" in train and "--data VALUE [VALUE ...]" in train  # `--data a b` or repeated
    serve = help_of("serve")
    assert "--port VALUE Port to listen on. (default 8000)" in serve and "--precision {fp32,bf16,int8}" in serve
    for args, fragments in [
        (["train", "--lr-schedule", "cubic"], ["--lr-schedule", "lr_schedule must be one of cosine, linear"]),
        (["train", "--max-steps", "many"], ["--max-steps", "max_steps must be int, got 'many'"]),
        (["serve", checkpoint, "--max-batch", "0"], ["--max-batch", "max_batch must be at least 1, got 0"]),
        (["generate", checkpoint, "--precision", "int4"], ["--precision", "precision must be one of fp32, bf16, int8"]),
        (["predict", checkpoint, "--input", "x.jsonl", "--batch-size", "-1"], ["batch_size must be at least 1"]),
    ]:
        assert_one_line_error(run_cli(capsys, *args), *fragments, code=2)
