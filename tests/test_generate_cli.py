"""`gptlab generate` options as the help and README state them: any integer seed, --num-beams 1 as greedy
decoding, sampling options refused where nothing is sampled, --echo."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_one_line_error, run_cli

import gptlab
from gptlab.model import GPT, preset


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, small_tokenizer):
    torch.manual_seed(0)
    model = GPT(preset("tiny", vocab_size=small_tokenizer.vocab_size, n_ctx=64, init_std=0.2))
    return gptlab.save(tmp_path_factory.mktemp("generate") / "ckpt", model, small_tokenizer)


def generate(capsys, ckpt, *args) -> str:
    result = run_cli(capsys, "generate", ckpt, "--prompt", "The", "--max-new-tokens", 12, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_any_integer_seed_is_reproducible(ckpt, capsys):
    """Seeds past 64 bits map into the generator's range (modulo 2**64), as the server's do."""
    huge = 100000000000000000000000
    assert generate(capsys, ckpt, "--seed", huge) == generate(capsys, ckpt, "--seed", huge % 2**64)


def test_one_beam_is_greedy_decoding(ckpt, capsys):
    greedy = generate(capsys, ckpt, "--temperature", 0)
    assert generate(capsys, ckpt, "--num-beams", 1) == greedy
    assert generate(capsys, ckpt, "--temperature", 1e-300) == greedy  # a tiny temperature, not a NaN
    beams = generate(capsys, ckpt, "--num-beams", 3, "--length-penalty", 1.0)
    assert beams == generate(capsys, ckpt, "--num-beams", 3, "--length-penalty", 1.0)


@pytest.mark.parametrize(("args", "fragment"), [
    (["--num-beams", 2, "--temperature", 0.7], "drop --temperature"),
    (["--num-beams", 1, "--top-k", 5, "--seed", 1], "drop --top-k, --seed"),
    (["--num-beams", 2, "--num-samples", 2], "drop --num-samples"),
    (["--length-penalty", 1.0], "--length-penalty applies to beam search only"),
    (["--temperature", "inf"], "temperature must be a finite number"),
])
def test_options_that_would_be_ignored_are_refused(ckpt, capsys, args, fragment):
    assert_one_line_error(run_cli(capsys, "generate", ckpt, "--prompt", "x", *args), fragment)


def test_echo_prints_each_prompt_then_its_completion(ckpt, capsys):
    completion = generate(capsys, ckpt, "--temperature", 0)
    assert generate(capsys, ckpt, "--temperature", 0, "--echo") == "The" + completion
    assert generate(capsys, ckpt, "--num-beams", 2, "--echo").startswith("The")
    batch = run_cli(capsys, "generate", ckpt, "--prompt", "A", "--prompt", "B", "--max-new-tokens", 4, "--echo")
    first, second = batch.stdout.split("-" * 40 + "\n")
    assert first.startswith("A") and second.startswith("B")
