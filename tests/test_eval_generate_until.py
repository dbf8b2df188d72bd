"""generate_until and beam search give what `transformers` generates from the same (exported) weights."""

from __future__ import annotations

import pytest
import torch
import transformers

import gptlab
from gptlab.checkpoint import io
from gptlab.checkpoint.hf import export_hf
from gptlab.errors import GptlabError
from gptlab.eval.generate import generate_until
from gptlab.generation import SamplingParams
from gptlab.model import GPT, GPTConfig
from gptlab.tokenizer import Tokenizer

PROMPTS = ["First Citizen:\nBefore we proceed", "All:\nSpeak, speak.", "O Romeo"]


@pytest.fixture(scope="module")
def models(tmp_path_factory, small_tokenizer: Tokenizer):
    """A tiny random GPT-2 as a gptlab checkpoint and as its Hugging Face export (model and tokenizer).

    Weights are drawn with a larger spread than training's init, so the next-token distributions are
    peaked and varied and beams really compete and end at different lengths."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=small_tokenizer.vocab_size, n_ctx=128, n_layer=2, n_head=4, d_model=64))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            p.copy_(1 + 0.1 * noise if ".ln" in f".{name}" and name.endswith("weight") else 0.3 * noise)
    root = tmp_path_factory.mktemp("beam")
    io.save(root / "gptlab", model, small_tokenizer)
    export_hf(root / "gptlab", root / "hf")
    hf = transformers.GPT2LMHeadModel.from_pretrained(root / "hf").eval()
    return gptlab.load(root / "gptlab"), hf, transformers.AutoTokenizer.from_pretrained(root / "hf")


@torch.no_grad()
def hf_generate(hf, ids: list[int], eos: int, **options) -> list[int]:
    out = hf.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                      do_sample=False, eos_token_id=eos, pad_token_id=eos, **options)
    return out[0, len(ids):].tolist()


def beams(lm, ids: list[int], **params):
    """The best beam, as the model's own engine runs beam requests."""
    return lm.engine(params["num_beams"]).generate([ids], SamplingParams(**params))[0]


def cut(text: str, until: list[str]) -> str:
    for stop in until:
        text = text.split(stop)[0]
    return text


def test_beam_search_matches_transformers_gpt3_settings(models):
    """GPT-3's width 4 and length penalty 0.6 (early_stopping False, the default the harness gets); a
    frequent stop letter ends hypotheses at many lengths."""
    lm, hf, hf_tokenizer = models
    tok, eos = lm.tokenizer, lm.tokenizer.eot_id
    lengths = set()
    for prompt in PROMPTS:
        ids = tok.encode(prompt)
        for stop in ("e", " "):
            ours = beams(lm, ids, max_new_tokens=12, num_beams=4, length_penalty=0.6, stop=(stop,))
            theirs = hf_generate(hf, ids, eos, num_beams=4, length_penalty=0.6, max_new_tokens=12,
                                 stop_strings=[stop], tokenizer=hf_tokenizer)
            assert ours.tokens == theirs, (prompt, stop)
            lengths.add(len(ours.tokens))
    assert len(lengths) >= 3  # hypotheses really finished at different lengths


def test_early_stopping_rules_match_transformers(models):
    """With a strong length penalty, stopping at `num_beams` finished hypotheses (True) picks another answer
    than the heuristic (False) or the exhaustive rule ("never") for some prompt; each agrees with transformers."""
    lm, hf, hf_tokenizer = models
    tok, eos = lm.tokenizer, lm.tokenizer.eot_id
    differ = []
    for prompt in PROMPTS:
        ids = tok.encode(prompt)
        results = {}
        for early_stopping in (True, False, "never"):
            ours = beams(lm, ids, max_new_tokens=12, num_beams=4, length_penalty=2.0, stop=("e",),
                         early_stopping=early_stopping)
            theirs = hf_generate(hf, ids, eos, num_beams=4, length_penalty=2.0, max_new_tokens=12,
                                 early_stopping=early_stopping, stop_strings=["e"], tokenizer=hf_tokenizer)
            assert ours.tokens == theirs, (prompt, early_stopping)
            results[early_stopping] = ours.tokens
        differ.append(results[True] != results[False])
    assert any(differ)  # the rules were really put to the test


def test_generate_until_beams_match_transformers_text(models):
    lm, hf, hf_tokenizer = models
    tok, eos = lm.tokenizer, lm.tokenizer.eot_id
    kwargs = {"until": ["o", "\n\n"], "num_beams": 4, "length_penalty": 0.6, "max_gen_toks": 10}
    ours = generate_until(lm, [(p, kwargs) for p in PROMPTS])
    for prompt, text in zip(PROMPTS, ours, strict=True):
        theirs = hf_generate(hf, tok.encode(prompt), eos, num_beams=4, length_penalty=0.6, max_new_tokens=10,
                             stop_strings=["o", "\n\n"], tokenizer=hf_tokenizer)
        assert text == cut(tok.decode([t for t in theirs if t != eos]), kwargs["until"])


def test_greedy_matches_transformers_batched_and_truncated(models):
    """Batches of different lengths, a stop string, and a context longer than the model's, which keeps its
    last n_ctx - max_gen_toks tokens as the harness does."""
    lm, hf, _ = models
    tok, eos = lm.tokenizer, lm.tokenizer.eot_id
    long_context = " ".join(PROMPTS * 20)
    contexts = [*PROMPTS, long_context]
    for until in ([], ["e"]):
        kwargs = {"until": until, "max_gen_toks": 16}
        ours = generate_until(lm, [(c, kwargs) for c in contexts], batch_size=3)
        for context, text in zip(contexts, ours, strict=True):
            ids = tok.encode(context)[-(lm.config.n_ctx - 16):]
            theirs = hf_generate(hf, ids, eos, max_new_tokens=16)
            assert text == cut(tok.decode([t for t in theirs if t != eos]), until)
    assert len(tok.encode(long_context)) > lm.config.n_ctx


def test_beams_in_one_batch_match_transformers_and_the_python_api_offers_them(models):
    """Several prompts' beams decode together over one cache (and a greedy prompt beside them, in the eval's
    batches); `lm.generate(num_beams=...)` gives the same text, cut at the stop."""
    lm, hf, hf_tokenizer = models
    tok, eos = lm.tokenizer, lm.tokenizer.eot_id
    params = SamplingParams(max_new_tokens=10, num_beams=3, length_penalty=0.6, stop=("o",))
    together = lm.engine(len(PROMPTS) * 3).generate([tok.encode(p) for p in PROMPTS], params)
    texts = lm.generate(PROMPTS, max_new_tokens=10, num_beams=3, length_penalty=0.6, stop="o")
    for prompt, ours, text in zip(PROMPTS, together, texts, strict=True):
        theirs = hf_generate(hf, tok.encode(prompt), eos, num_beams=3, length_penalty=0.6, max_new_tokens=10,
                             stop_strings=["o"], tokenizer=hf_tokenizer)
        assert ours.tokens == theirs, prompt
        assert text == cut(tok.decode([t for t in theirs if t != eos]), ["o"])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"until": ["\n"], "max_new_tokens": 5}, "max_new_tokens not supported"),
        ({"until": 3}, "until must be a string or a list of strings"),
        ({"max_gen_toks": 0}, "max_gen_toks must be a positive integer"),
        ({"max_gen_toks": 128}, "max_gen_toks 128 leaves no room"),
        ({"num_beams": 4, "do_sample": True}, r"\(beam sampling\) is not supported"),
        ({"early_stopping": "sometimes"}, "early_stopping must be"),
        ({"do_sample": True, "top_p": [0.9]}, r"top_p must be a number in \(0, 1\]"),
    ],
)
def test_bad_generation_kwargs_are_one_line_errors(models, kwargs, message):
    with pytest.raises(GptlabError, match=message) as info:
        generate_until(models[0], [("O Romeo", kwargs)])
    assert "\n" not in str(info.value)


def test_string_until_and_default_greedy(models):
    """`until` may be one string; `temperature` without do_sample stays greedy, as in transformers."""
    lm = models[0]
    one = generate_until(lm, [("O Romeo", {"until": "e", "max_gen_toks": 8, "temperature": 0.7})])
    assert one == generate_until(lm, [("O Romeo", {"until": ["e"], "max_gen_toks": 8})])


def test_generate_command_beam_search_matches_transformers(models, capsys):
    """`gptlab generate --num-beams 4` prints the best beam, the one transformers picks, cut at the stop."""
    from gptlab.cli.main import main

    lm, hf, hf_tokenizer = models
    tok, eos = lm.tokenizer, lm.tokenizer.eot_id
    main(["generate", str(lm.path), "--prompt", PROMPTS[0], "--num-beams", "4", "--max-new-tokens", "10",
          "--stop", "o", "--device", "cpu"])
    theirs = hf_generate(hf, tok.encode(PROMPTS[0]), eos, num_beams=4, length_penalty=0.6, max_new_tokens=10,
                         stop_strings=["o"], tokenizer=hf_tokenizer)
    assert capsys.readouterr().out == cut(tok.decode([t for t in theirs if t != eos]), ["o"]) + "\n"
