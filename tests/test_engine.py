"""The engine against the plain model: continuous batching, slots, seeds, log-probabilities, cancellation."""

import pytest
import torch

from gptlab.engine import Engine
from gptlab.errors import GptlabError
from gptlab.generation import SamplingParams
from gptlab.model import GPT, GPTConfig, KVCache, preset
from gptlab.tokenizer import byte_tokenizer

VOCAB = 97
PROMPTS = [[5, 17, 3, 88], [50, 60, 70, 80, 90, 11, 12, 13, 14, 15, 16, 17], [7], [1, 2, 3, 4, 5, 6], [42] * 20]
SHAPES = [{}, {"attention": ("global", "local"), "window_size": 8}, {"norm": "post"}]


def make_model(**overrides) -> GPT:
    torch.manual_seed(0)
    return GPT(preset("tiny", **{"vocab_size": VOCAB, "n_ctx": 64, "init_std": 0.2, **overrides})).eval()


@torch.no_grad()
def reference(model: GPT, prompt: list[int], n: int) -> tuple[list[int], list[torch.Tensor]]:
    """Greedy tokens and each step's log-softmax, from full forward passes with no cache."""
    ids, logprobs = list(prompt), []
    for _ in range(n):
        step = torch.log_softmax(model(torch.tensor([ids]))[0, -1], dim=-1)
        logprobs.append(step)
        ids.append(int(step.argmax()))
    return ids[len(prompt):], logprobs


def drive(engine: Engine, arrivals: dict[int, list[tuple[list[int], SamplingParams]]]) -> dict[int, list[int]]:
    """Step the engine, adding requests at the steps given; tokens per request id."""
    tokens: dict[int, list[int]] = {}
    step = 0
    while engine.has_work or any(s >= step for s in arrivals):
        for prompt, params in arrivals.get(step, []):
            tokens[engine.add(prompt, params)] = []
        for out in engine.step():
            tokens[out.request_id].append(out.token)
        step += 1
    return tokens


@pytest.mark.parametrize("overrides", SHAPES)
def test_requests_joining_a_running_batch_decode_as_they_would_alone(overrides):
    model = make_model(**overrides)
    greedy = SamplingParams(max_new_tokens=15, temperature=0)
    engine = Engine(model, max_batch=3)  # fewer slots than requests: some wait, and reuse freed slots
    arrivals = {0: [(PROMPTS[0], greedy), (PROMPTS[1], greedy)], 3: [(PROMPTS[2], greedy)],
                4: [(PROMPTS[3], greedy), (PROMPTS[4], SamplingParams(max_new_tokens=9, temperature=0))]}
    got = drive(engine, arrivals)
    assert [len(t) for t in got.values()] == [15, 15, 15, 15, 9]
    for (request_id, tokens), prompt in zip(got.items(), PROMPTS):
        assert tokens == reference(model, prompt, len(tokens))[0], request_id
    assert engine.num_running == 0 and engine.cache.lengths.shape == (3,)


def test_a_seeded_request_gives_the_same_tokens_alone_or_in_any_batch():
    model = make_model()
    seeded = SamplingParams(max_new_tokens=20, temperature=1.0, top_k=40, seed=11)
    alone = drive(Engine(model, max_batch=1), {0: [(PROMPTS[0], seeded)]})[0]
    others = SamplingParams(max_new_tokens=20, temperature=1.3, top_p=0.9, repetition_penalty=1.2)
    batched = drive(Engine(model, max_batch=4), {0: [(PROMPTS[1], others), (PROMPTS[0], seeded)],
                                                 2: [(PROMPTS[2], others)]})
    late = drive(Engine(model, max_batch=4), {0: [(PROMPTS[3], others)], 5: [(PROMPTS[0], seeded)]})
    assert batched[1] == alone and late[1] == alone
    unseeded = drive(Engine(model, max_batch=2), {0: [(PROMPTS[0], SamplingParams(max_new_tokens=20))] * 2})
    assert unseeded[0] != unseeded[1]


def test_log_probabilities_are_the_models_own():
    model = make_model(attention=("global", "local"), window_size=8)
    engine = Engine(model, max_batch=2)
    [done, other] = engine.generate([PROMPTS[1], PROMPTS[0]], [
        SamplingParams(max_new_tokens=12, temperature=0, logprobs=3), SamplingParams(max_new_tokens=5)])
    tokens, steps = reference(model, PROMPTS[1], 12)
    assert done.tokens == tokens and other.logprobs == [None] * 5
    for token, logprob, top, step in zip(tokens, done.logprobs, done.top_logprobs, steps, strict=True):
        assert logprob == pytest.approx(step[token].item(), abs=1e-5)
        values, ids = step.topk(3)
        assert [i for i, _ in top] == ids.tolist() and top[0][0] == token
        assert [v for _, v in top] == pytest.approx(values.tolist(), abs=1e-5)


def test_score_is_the_log_softmax_of_each_prompt_token():
    model = make_model()
    prompt = PROMPTS[1]
    scored = Engine(model).score(prompt, top_n=2)
    expected = torch.log_softmax(model(torch.tensor([prompt]))[0], dim=-1)
    assert scored[0] is None and len(scored) == len(prompt)
    for i, (value, top) in enumerate(scored[1:]):
        assert value == pytest.approx(expected[i, prompt[i + 1]].item(), abs=1e-5)
        assert [t for t, _ in top] == expected[i].topk(2).indices.tolist()


def test_finish_reasons_stop_strings_and_end_of_text():
    model = make_model(vocab_size=257)
    tokenizer = byte_tokenizer()
    engine = Engine(model, tokenizer, max_batch=4)
    prompt = list(b"hello")
    free = engine.generate([prompt], SamplingParams(max_new_tokens=30, temperature=0))[0]
    text = tokenizer.decode(free.tokens) if tokenizer.eot_id not in free.tokens else ""
    assert free.finish_reason == ("stop" if tokenizer.eot_id in free.tokens else "length")
    assert len(text) > 10
    stop = text[-4:-2]  # a string the free run produced: the stopped run's text ends before it
    stopped = engine.generate([prompt], SamplingParams(max_new_tokens=30, temperature=0, stop=(stop,)))[0]
    assert stopped.finish_reason == "stop" and stopped.text == text[: text.index(stop)] and len(stopped.text) > 5
    with torch.no_grad():  # a model that always predicts end of text: constant final state along its row
        model.ln_f.weight.zero_()
        model.ln_f.bias.copy_(torch.nn.functional.normalize(torch.ones(model.config.d_model), dim=0))
        model.wte.weight[tokenizer.eot_id] = 100 * model.ln_f.bias
    ended = Engine(model, tokenizer).generate([prompt], SamplingParams(max_new_tokens=30, temperature=0))[0]
    assert ended.tokens == [tokenizer.eot_id] and ended.finish_reason == "stop" and ended.text == ""


def test_cancel_frees_the_slot_at_once_and_leaves_the_others_alone():
    model = make_model()
    greedy = SamplingParams(max_new_tokens=20, temperature=0)
    engine = Engine(model, max_batch=2)
    first, second, third = (engine.add(p, greedy) for p in PROMPTS[:3])
    tokens = {first: [], second: [], third: []}
    for _ in range(4):
        for out in engine.step():
            tokens[out.request_id].append(out.token)
    assert engine.num_running == 2 and engine.num_waiting == 1
    assert engine.cancel(first) and not engine.cancel(first)
    assert engine.num_running == 1  # the waiting request takes the slot at the next step
    while engine.has_work:
        for out in engine.step():
            tokens[out.request_id].append(out.token)
    assert len(tokens[first]) == 4
    assert tokens[second] == reference(model, PROMPTS[1], 20)[0]
    assert tokens[third] == reference(model, PROMPTS[2], 20)[0]
    waiting = engine.add(PROMPTS[3], greedy)
    assert engine.cancel(waiting) and not engine.has_work


def test_beam_requests_batch_with_others_and_give_what_they_give_alone():
    """A beam request holds one slot per beam of the shared cache: it waits for enough free slots, decodes
    beside sampled requests (whose rows move into freed slots around it) and ends as it would alone."""
    model = make_model()
    greedy = SamplingParams(max_new_tokens=15, temperature=0)
    beams = SamplingParams(max_new_tokens=10, num_beams=3, length_penalty=0.6)
    alone = Engine(model, max_batch=3).generate([PROMPTS[1]], beams)[0]
    assert len(alone.tokens) == 10 and alone.finish_reason == "length"
    engine = Engine(model, max_batch=5)  # the beams take slots 2-4; one moves into slot 1 when it frees
    arrivals = {0: [(PROMPTS[0], greedy), (PROMPTS[2], SamplingParams(max_new_tokens=4, temperature=0))],
                1: [(PROMPTS[1], beams), (PROMPTS[3], greedy)]}  # the last waits for a free slot
    got = drive(engine, arrivals)
    ids = list(got)
    assert got[ids[2]] == alone.tokens
    for request_id, prompt in zip([ids[0], ids[1], ids[3]], [PROMPTS[0], PROMPTS[2], PROMPTS[3]], strict=True):
        assert got[request_id] == reference(model, prompt, len(got[request_id]))[0]
    assert not engine.has_work and engine.cache.lengths.shape == (5,)


def test_a_beam_needs_a_slot_of_its_own():
    with pytest.raises(GptlabError, match="num_beams 3 needs as many cache slots; this engine has 2"):
        Engine(make_model(), max_batch=2).add(PROMPTS[0], SamplingParams(num_beams=3))
    with pytest.raises(GptlabError, match="samples nothing: drop top_k, logprobs"):
        SamplingParams(num_beams=2, top_k=5, logprobs=1)


def test_cache_copy_moves_rows_in_place():
    """Beams picked, packing after a freed slot and a shared context handed out are all row copies."""
    cache = KVCache(GPTConfig(vocab_size=8, n_ctx=8, n_layer=1, n_head=1, d_model=2), slots=3, max_len=4)
    cache.keys[0][:, 0, :2, 0] = torch.arange(3.0)[:, None]
    cache.lengths[:] = torch.tensor([2, 1, 2])
    buffer = cache.keys[0]
    cache.copy([0, 1, 2], [2, 2, 0])
    assert cache.keys[0] is buffer
    assert cache.keys[0][:, 0, :2, 0].tolist() == [[2, 2], [2, 2], [0, 0]]
    assert cache.lengths.tolist() == [2, 2, 2]


def test_bad_requests_are_one_line_errors():
    engine = Engine(make_model())
    for prompt, params, message in [
        ([], SamplingParams(), "at least one token"),
        ([VOCAB], SamplingParams(), "token ids must be in"),
        ([1], SamplingParams(stop=("x",)), "need a tokenizer"),
        (list(range(60)), SamplingParams(max_new_tokens=10), "context is 64 tokens"),
    ]:
        with pytest.raises(GptlabError, match=message):
            engine.add(prompt, params)
    with pytest.raises(GptlabError, match="max_batch"):
        Engine(make_model(), max_batch=0)


def test_linear_layers_give_the_same_result_on_the_decode_path(monkeypatch):
    """Column-major weights (as the engine stores them) and a few rows take the split matmul; the result is
    nn.Linear's up to float rounding, with or without bias, for 2-D and 3-D inputs."""
    from gptlab.model.linear import Linear

    calls = []
    bmm = torch.bmm
    monkeypatch.setattr(torch, "bmm", lambda *a: calls.append(1) or bmm(*a))
    torch.manual_seed(0)
    for bias in (True, False):
        layer = Linear(64, 96, bias=bias)
        inputs = {shape: torch.randn(*shape, 64) for shape in [(1, 1), (3, 2), (5,)]}
        plain = {shape: torch.nn.functional.linear(x, layer.weight, layer.bias) for shape, x in inputs.items()}
        layer.weight.data = layer.weight.data.t().contiguous().t()
        with torch.no_grad():
            for shape, x in inputs.items():
                assert torch.allclose(layer(x), plain[shape], atol=1e-5), shape
        assert len(calls) == 3  # each took the split path
        assert torch.allclose(layer(inputs[(5,)]), plain[(5,)], atol=1e-5)  # with gradients: nn.Linear's path
        assert len(calls) == 3
        calls.clear()


def test_any_integer_seed_is_taken_modulo_the_generators_range():
    """OpenAI accepts seeds past 64 bits; torch's generator does not: they map into its range, deterministically."""
    engine = Engine(make_model(), max_batch=2)

    def sample(seed: int) -> list[int]:
        return engine.generate([PROMPTS[0]], SamplingParams(max_new_tokens=12, temperature=1.0, seed=seed))[0].tokens

    huge = 10**30
    assert sample(huge) == sample(huge) == sample(huge % 2**64)
    assert sample(2**64) == sample(0) and sample(-1) == sample(2**64 - 1)


def test_a_request_that_fails_ends_alone_and_the_batch_runs_on(monkeypatch):
    """One request whose token cannot be picked finishes with an error; the others decode as they would alone,
    and the engine serves the next request. `run` (the CLI and the Python API) raises the error."""
    import gptlab.engine.engine as engine_module

    picked = engine_module.next_tokens

    def failing(logits, params, generator):
        if params.seed == 666:
            raise RuntimeError("injected failure")
        return picked(logits, params, generator)

    monkeypatch.setattr(engine_module, "next_tokens", failing)
    model = make_model()
    engine = Engine(model, max_batch=3)
    greedy = SamplingParams(max_new_tokens=12, temperature=0)
    poisoned = SamplingParams(max_new_tokens=12, temperature=1.0, seed=666)
    arrivals = {0: [(PROMPTS[0], greedy)], 2: [(PROMPTS[1], poisoned)], 3: [(PROMPTS[2], greedy)]}
    outputs: dict[int, list] = {}
    step = 0
    while engine.has_work or step <= 3:
        for prompt, params in arrivals.get(step, []):
            outputs[engine.add(prompt, params)] = []
        for out in engine.step():
            outputs[out.request_id].append(out)
        step += 1
    first, bad, third = outputs.values()
    assert [(o.token, o.finish_reason, str(o.error)) for o in bad] == [(-1, "error", "injected failure")]
    for prompt, outs in ((PROMPTS[0], first), (PROMPTS[2], third)):
        assert [o.token for o in outs] == reference(model, prompt, 12)[0] and outs[-1].finish_reason == "length"
        assert all(o.error is None for o in outs)
    assert engine.num_running == 0
    with pytest.raises(RuntimeError, match="injected failure"):
        engine.generate([PROMPTS[0]], poisoned)
    assert engine.generate([PROMPTS[3]], greedy)[0].tokens == reference(model, PROMPTS[3], 12)[0]


def test_logit_bias_is_added_to_the_logits_before_picking():
    model = make_model()
    engine = Engine(model, max_batch=2)
    plain = reference(model, PROMPTS[0], 6)[0]
    forced = SamplingParams(max_new_tokens=6, temperature=1.0, logit_bias={33: 100})
    assert engine.generate([PROMPTS[0]], forced)[0].tokens == [33] * 6
    banned = SamplingParams(max_new_tokens=6, temperature=0, logit_bias={plain[0]: -100})
    assert engine.generate([PROMPTS[0]], banned)[0].tokens[0] != plain[0]
    with pytest.raises(GptlabError, match=r"logit_bias: token ids must be in \[0, 97\)"):
        engine.add(PROMPTS[0], SamplingParams(logit_bias={VOCAB: 1}))
    for bias, message in [({1: 100.5}, r"must be in \[-100, 100\]"), ({1: float("nan")}, "must be in"),
                          ({-1: 1}, "integers >= 0")]:
        with pytest.raises(GptlabError, match=message):
            SamplingParams(logit_bias=bias)
