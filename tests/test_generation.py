"""Text generation through gptlab.load: cached decoding equals the plain model, batching, seeds, sampling filters,
prompts that do not fit, streamed UTF-8, and the one engine a LanguageModel keeps."""

import itertools

import pytest
import torch

from gptlab.errors import GptlabError
from gptlab.engine import Engine, fit_prompt
from gptlab.generation import DEFAULT_MAX_NEW_TOKENS, SamplingParams, TextStream, next_tokens
from gptlab.language_model import LanguageModel, generate
from gptlab.model import GPT, preset
from gptlab.tokenizer import byte_tokenizer

VOCAB = 97


def make_model(**overrides) -> GPT:
    torch.manual_seed(0)
    model = GPT(preset("tiny", **{"vocab_size": VOCAB, "n_ctx": 64, "init_std": 0.2, **overrides})).eval()
    return model


def uncached_greedy(model: GPT, prompt: list[int], n: int) -> list[int]:
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            ids.append(model(torch.tensor([ids]))[0, -1].argmax().item())
    return ids[len(prompt):]


def decode_all(model: GPT, prompts: list[list[int]], tokenizer=None, **params) -> list[list[int]]:
    engine = Engine(model, tokenizer, max_batch=len(prompts))
    return [c.tokens for c in engine.generate(prompts, SamplingParams(**params))]


@pytest.mark.parametrize("overrides", [{}, {"attention": ("global", "local"), "window_size": 8}, {"norm": "post"}])
def test_cached_greedy_equals_uncached(overrides):
    model = make_model(**overrides)
    prompt = [5, 17, 3, 88, 42, 1, 9, 9, 30, 2, 11]
    assert decode_all(model, [prompt], max_new_tokens=30, temperature=0)[0] == uncached_greedy(model, prompt, 30)


def test_batched_prompts_of_different_lengths_equal_single_runs():
    model = make_model(attention=("global", "local"), window_size=8)
    prompts = [[1, 2, 3], [50, 60, 70, 80, 90, 11, 12, 13, 14, 15, 16, 17], [7]]
    batched = decode_all(model, prompts, max_new_tokens=20, temperature=0)
    for prompt, got in zip(prompts, batched):
        assert got == uncached_greedy(model, prompt, 20)


def test_sampling_is_reproducible_with_a_seed_and_varies_without():
    model = make_model()
    a = decode_all(model, [[1, 2, 3]], max_new_tokens=25, temperature=1.0, seed=7)
    b = decode_all(model, [[1, 2, 3]], max_new_tokens=25, temperature=1.0, seed=7)
    c = decode_all(model, [[1, 2, 3]], max_new_tokens=25, temperature=1.0, seed=8)
    assert a == b and a != c


def test_top_k_and_top_p_filter_the_distribution():
    torch.manual_seed(0)
    logits = torch.randn(4, 50)
    greedy = logits.argmax(-1)
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(next_tokens(logits, SamplingParams(top_k=1), gen), greedy)
    assert torch.equal(next_tokens(logits, SamplingParams(top_p=1e-6), gen), greedy)
    allowed = torch.topk(logits, 5).indices
    samples = torch.stack([next_tokens(logits, SamplingParams(top_k=5), gen) for _ in range(200)], 1)
    assert all(set(samples[r].tolist()) <= set(allowed[r].tolist()) for r in range(4))
    probs = logits.softmax(-1)
    sorted_p, order = probs.sort(-1, descending=True)
    nucleus = [set(order[r, : int((sorted_p[r].cumsum(0) < 0.5).sum()) + 1].tolist()) for r in range(4)]
    samples = torch.stack([next_tokens(logits, SamplingParams(top_p=0.5), gen) for _ in range(200)], 1)
    assert all(set(samples[r].tolist()) == nucleus[r] for r in range(4))


def test_repetition_penalty_discourages_seen_tokens():
    model = make_model()
    plain = decode_all(model, [[1, 2, 3]], max_new_tokens=30, temperature=0)[0]
    penalised = decode_all(model, [[1, 2, 3]], max_new_tokens=30, temperature=0, repetition_penalty=100.0)[0]
    assert len(set(penalised)) > len(set(plain))
    assert len(set(penalised)) == len(penalised)  # a huge penalty never repeats while unseen tokens remain


def test_prompt_that_does_not_fit_is_an_error_or_explicitly_truncated():
    params = SamplingParams(max_new_tokens=10)
    with pytest.raises(GptlabError, match="context is 64 tokens"):
        fit_prompt(list(range(60)), 64, params)
    truncated = SamplingParams(max_new_tokens=10, truncate=True)
    assert fit_prompt(list(range(60)), 64, truncated) == list(range(6, 60))
    with pytest.raises(GptlabError, match="no room"):
        fit_prompt([1], 64, SamplingParams(max_new_tokens=64))
    with pytest.raises(GptlabError, match="max_new_tokens"):
        SamplingParams(max_new_tokens=0)
    with pytest.raises(GptlabError, match="top_p"):
        SamplingParams(top_p=1.5)


def test_defaults_generate_up_to_the_end_of_any_context():
    """No max_new_tokens: up to DEFAULT_MAX_NEW_TOKENS, fewer where the context ends first."""
    short = make_model()  # n_ctx 64, less than the default number of new tokens
    assert DEFAULT_MAX_NEW_TOKENS > 64
    assert decode_all(short, [[1, 2, 3]], temperature=0)[0] == uncached_greedy(short, [1, 2, 3], 61)
    batch = decode_all(short, [[1, 2, 3], list(range(10, 30))], temperature=0)
    assert [len(row) for row in batch] == [61, 44]  # each request's own room
    long = make_model(n_ctx=DEFAULT_MAX_NEW_TOKENS + 8)
    assert len(decode_all(long, [[1, 2, 3]], temperature=0)[0]) == DEFAULT_MAX_NEW_TOKENS


def test_default_max_new_tokens_fits_or_truncates_the_prompt():
    assert fit_prompt(list(range(63)), 64, SamplingParams()) == list(range(63))  # room for one new token
    with pytest.raises(GptlabError, match="context is 64 tokens"):
        fit_prompt(list(range(64)), 64, SamplingParams())
    # truncation keeps half the context for the prompt when the default would not fit beside it
    assert fit_prompt(list(range(100)), 64, SamplingParams(truncate=True)) == list(range(68, 100))


def test_ids_beyond_the_tokenizer_vocabulary_are_never_sampled():
    """A model vocabulary padded past the tokenizer's (e.g. 50304 for 50257) must not emit the padding ids."""
    torch.manual_seed(0)
    model = GPT(preset("tiny", vocab_size=384, n_ctx=64)).eval()
    hot = dict(max_new_tokens=60, temperature=100.0, seed=0)  # nearly uniform over the vocabulary
    assert max(decode_all(model, [[1, 2, 3]], **hot)[0]) >= 257
    tokenizer = byte_tokenizer()
    assert tokenizer.vocab_size == 257
    assert max(decode_all(model, [[1, 2, 3]], tokenizer, **hot)[0]) < 257
    assert isinstance(generate(model, byte_tokenizer(), "ab", **hot), str)


def test_text_stream_holds_back_split_utf8_and_stop_prefixes():
    stream = TextStream(("\n\n", "END"))
    snowman = "☃".encode()
    assert stream.push(b"hi " + snowman[:1]) == "hi "
    assert stream.push(snowman[1:]) == "☃"
    assert stream.push(b" E") == " "  # "E" could start "END"
    assert stream.push(b"x") == "Ex"
    assert stream.push(b"\n") == ""
    assert stream.push(b"\nmore") == ""
    assert stream.stopped and stream.close() == ""


def test_text_stream_flushes_held_text_at_the_end():
    stream = TextStream(("END",))
    assert stream.push(b"abc EN") == "abc "
    assert stream.close() == "EN"


def test_a_tiny_temperature_is_greedy_not_a_crash():
    """Dividing the logits by a temperature near 0 overflows float32 (inf - inf = NaN); it must pick the best."""
    torch.manual_seed(0)
    logits = torch.randn(4, 50) * 5
    gen = torch.Generator().manual_seed(0)
    for temperature in (1e-40, 1e-300, 5e-324):
        assert torch.equal(next_tokens(logits, SamplingParams(temperature=temperature), gen), logits.argmax(-1))
    for name in ("temperature", "top_p", "repetition_penalty"):
        with pytest.raises(GptlabError, match=f"{name} must be a finite number"):
            SamplingParams(**{name: float("inf")})


def test_a_language_model_keeps_one_engine_and_rebuilds_it_only_when_it_must():
    lm = LanguageModel(make_model(vocab_size=257), byte_tokenizer())
    first = lm.generate("ab", max_new_tokens=4, temperature=0)
    engine = lm.engine()
    assert lm.generate("ab", max_new_tokens=4, temperature=0) == first and lm.engine() is engine
    pair = lm.generate(["ab", "cd"], max_new_tokens=4, temperature=0)  # more slots than it had: rebuilt
    assert pair[0] == first and lm.engine() is not engine and lm.engine().max_batch == 2
    engine = lm.engine()
    assert lm.generate("ab", max_new_tokens=4, num_beams=2) and lm.engine() is engine  # beams reuse it
    lm.model.to(torch.float64)
    assert lm.generate("ab", max_new_tokens=4, temperature=0) == first and lm.engine() is not engine


def test_streams_share_the_engine_and_one_left_early_frees_its_slot():
    lm = LanguageModel(make_model(vocab_size=257), byte_tokenizer())
    alone = [lm.generate(p, max_new_tokens=12, temperature=0) for p in ("ab", "xyz")]
    lm.engine(2)
    first, second = (lm.stream(p, max_new_tokens=12, temperature=0) for p in ("ab", "xyz"))
    texts = ["", ""]
    for pieces in itertools.zip_longest(first, second, fillvalue=""):  # each advances the other's requests
        texts = [t + p for t, p in zip(texts, pieces, strict=True)]
    assert texts == alone
    left = lm.stream("ab", max_new_tokens=30, temperature=1.0)
    next(left)
    assert lm.engine().has_work
    left.close()
    assert not lm.engine().has_work


def test_sampling_mid_training_leaves_the_parameters_where_and_as_they_are():
    """The trainer samples from the model it trains: the engine shares its parameters, re-laying none."""
    model = make_model(vocab_size=257).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = torch.randint(0, 257, (2, 16))
    model(batch).logsumexp(-1).mean().backward()
    optimizer.step()
    before = {name: (p.data_ptr(), p.stride(), p.detach().clone()) for name, p in model.named_parameters()}
    model.eval()
    assert isinstance(generate(model, byte_tokenizer(), "ab", max_new_tokens=5, num_beams=2), str)
    assert isinstance(generate(model, byte_tokenizer(), "ab", max_new_tokens=5, temperature=0.8), str)
    for name, p in model.named_parameters():
        ptr, stride, value = before[name]
        assert (p.data_ptr(), p.stride()) == (ptr, stride) and torch.equal(p.detach(), value), name
