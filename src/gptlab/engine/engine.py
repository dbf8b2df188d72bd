"""The inference engine under the CLI, the Python API, the evaluator and the server.

Requests join and leave a running batch at any step (continuous batching). Each holds a slot of one
preallocated KV cache for as long as it runs; a new request's prompt is prefilled on its own, then it
decodes one token per step together with every other running request. Each request brings its own
sampling parameters and its own seeded random generator, so a seeded request gives the same tokens
alone or in any batch. The engine is synchronous and not thread-safe: one thread drives `step()`.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import torch

from gptlab import threads
from gptlab.errors import GptlabError
from gptlab.generation.beam import EarlyStopping, beam_search
from gptlab.generation.params import SamplingParams
from gptlab.generation.pieces import TextStream
from gptlab.generation.sampling import apply_repetition_penalty, next_tokens
from gptlab.model import GPT, SlotCache
from gptlab.tokenizer import Tokenizer

FinishReason = Literal["stop", "length", "error"]
SEED_RANGE = 2**64
"""A torch generator's seeds: any integer seed is taken modulo this."""


@dataclass(frozen=True)
class TokenOutput:
    """One generated token of one request."""

    request_id: int
    token: int
    text: str
    """Text this token makes safe to show: "" while a character or a possible stop string is incomplete;
    at a stop string, the text before it."""
    logprob: float | None
    """log p(token) under the model's distribution (before temperature and penalties), when asked for."""
    top_logprobs: list[tuple[int, float]]
    """The `params.logprobs` most likely tokens at this step and their log-probabilities."""
    finish_reason: FinishReason | None
    """None while the request runs; "stop" at end of text or a stop string; "length" at its token budget;
    "error" when picking its token failed (`error` says why; `token` is -1): it alone ends, the batch runs on."""
    error: Exception | None = None


@dataclass
class Completion:
    """Everything a finished request produced, for callers that do not stream."""

    tokens: list[int] = field(default_factory=list)
    text: str = ""
    logprobs: list[float | None] = field(default_factory=list)
    top_logprobs: list[list[tuple[int, float]]] = field(default_factory=list)
    finish_reason: FinishReason | None = None


def fit_prompt(prompt: list[int], n_ctx: int, params: SamplingParams) -> list[int]:
    """The prompt as it will be fed, or a clear error when it cannot fit with the requested tokens."""
    new = params.max_new_tokens or 1  # the default generates as many tokens as fit, at least one
    room = n_ctx - new
    if room < 1:
        raise GptlabError(f"max_new_tokens {new} leaves no room for a prompt in the model's context of {n_ctx}")
    if len(prompt) <= room:
        return prompt
    keep = n_ctx - params.reserved(n_ctx)
    if params.truncate:
        return prompt[-keep:]
    fewer = ", lower max_new_tokens," if params.max_new_tokens else ""
    raise GptlabError(
        f"prompt is {len(prompt)} tokens, but the model's context is {n_ctx} tokens and holds at most {room} beside "
        f"{new} new {'token' if new == 1 else 'tokens'}; shorten the prompt{fewer} or truncate (--truncate) to keep "
        f"the last {keep}"
    )


def _column_major_weights(model: GPT) -> None:
    """Store each linear layer's weight column-major: the same tensor values and shape (a transposed view of
    an [in, out] copy), but a matmul with few rows then reads the weights the way CPU BLAS streams them
    fastest; GPT-2's output head at batch 1 takes half the time. Training and saving see no difference."""
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if isinstance(module, torch.nn.Linear) and weight.device.type == "cpu" and weight.is_contiguous():
            weight.data = weight.data.t().contiguous().t()


class _Request:
    def __init__(self, request_id: int, prompt: list[int], params: SamplingParams, budget: int, engine: Engine):
        self.id = request_id
        self.prompt = prompt
        self.params = params
        self.budget = budget
        self.generated = 0
        self.pending = -1  # last sampled token, fed to the model at the next decode step
        self.generator = torch.Generator(device=engine.device)
        if params.seed is not None:
            self.generator.manual_seed(params.seed % SEED_RANGE)
        else:
            self.generator.seed()
        self.bias: tuple[torch.Tensor, torch.Tensor] | None = None  # logit_bias as (token ids, [1, n] biases)
        if params.logit_bias:
            ids, values = zip(*params.logit_bias.items(), strict=True)
            self.bias = (torch.tensor(ids, device=engine.device),
                         torch.tensor([values], dtype=torch.float32, device=engine.device))
        self.text = TextStream(params.stop)
        self.seen: torch.Tensor | None = None  # tokens present so far, for the repetition penalty
        if params.repetition_penalty != 1.0:
            self.seen = torch.zeros(engine.vocab_size, dtype=torch.bool, device=engine.device)
            self.seen[torch.tensor(prompt, device=engine.device)] = True


class Engine:
    """`add()` requests, then call `step()` until `has_work` is False; `cancel()` at any time between steps."""

    def __init__(self, model: GPT, tokenizer: Tokenizer | None = None, *, max_batch: int = 16):
        """`tokenizer` turns tokens into text, ends requests at `<|endoftext|>` and finds stop strings; without
        one the engine works on ids only. `max_batch`: KV-cache slots, the most requests decoding at once."""
        if max_batch < 1:
            raise GptlabError(f"max_batch must be at least 1, got {max_batch}")
        self.model = model.eval()
        _column_major_weights(model)
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        self.n_ctx = model.config.n_ctx
        # ids past the tokenizer's vocabulary (a model padded to a multiple of 128) are never sampled
        self.vocab_size = tokenizer.vocab_size if tokenizer is not None else model.config.vocab_size
        self.eot_id = tokenizer.eot_id if tokenizer is not None else None
        self.max_batch = max_batch
        self.cache = SlotCache(model.config, max_batch, self.n_ctx, device=self.device, dtype=model.wte.weight.dtype)
        self.running: list[_Request] = []  # running[i] holds cache slot i
        self.waiting: deque[_Request] = deque()
        self._ids = itertools.count()

    @property
    def has_work(self) -> bool:
        return bool(self.running or self.waiting)

    @property
    def num_running(self) -> int:
        return len(self.running)

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    def add(self, prompt: list[int], params: SamplingParams) -> int:
        """Queue a request; it starts at the next step with a free slot. Returns its id."""
        if not prompt:
            raise GptlabError("a prompt needs at least one token")
        if params.stop and self.tokenizer is None:
            raise GptlabError("stop strings need a tokenizer to read the generated text")
        if min(prompt) < 0 or max(prompt) >= self.vocab_size:
            raise GptlabError(f"prompt token ids must be in [0, {self.vocab_size}), got {min(prompt)}..{max(prompt)}")
        if params.logit_bias and max(params.logit_bias) >= self.vocab_size:
            raise GptlabError(f"logit_bias: token ids must be in [0, {self.vocab_size}), got {max(params.logit_bias)}")
        prompt = fit_prompt(prompt, self.n_ctx, params)
        request = _Request(next(self._ids), prompt, params, params.new_tokens(len(prompt), self.n_ctx), self)
        self.waiting.append(request)
        return request.id

    def cancel(self, request_id: int) -> bool:
        """Drop a request, freeing its slot at once. False when it is not (or no longer) here."""
        for request in self.waiting:
            if request.id == request_id:
                self.waiting.remove(request)
                return True
        for slot, request in enumerate(self.running):
            if request.id == request_id:
                self._release([slot])
                return True
        return False

    @torch.inference_mode()
    def step(self) -> list[TokenOutput]:
        """Decode one token for every running request, then prefill waiting ones into free slots (their
        first token). Finished requests leave the batch and free their slots."""
        threads.tick(self.device)
        outputs: list[TokenOutput] = []
        if self.running:
            self.cache.decode(len(self.running))
            ids = torch.tensor([[r.pending] for r in self.running], device=self.device)
            outputs += self._sample(self.running, self.model(ids, cache=self.cache)[:, -1])
        start = len(self.running)
        admitted = [self.waiting.popleft() for _ in range(min(self.max_batch - start, len(self.waiting)))]
        if admitted:
            self.running += admitted
            outputs += self._sample(admitted, self._prefill(admitted, start))
        self._release([slot for slot, r in enumerate(self.running) if r.pending < 0])
        return outputs

    def _prefill(self, requests: list[_Request], start: int) -> torch.Tensor:
        """Run new prompts into slots [start, start + len(requests)), right-padded (the padding's keys lie
        past each row's length, where decoding overwrites them); the logits after each last prompt token."""
        lengths = [len(r.prompt) for r in requests]
        ids = torch.zeros(len(requests), max(lengths), dtype=torch.long, device=self.device)
        for row, request in enumerate(requests):
            ids[row, : lengths[row]] = torch.tensor(request.prompt, device=self.device)
        self.cache.prefill(start, start + len(requests))
        hidden = self.model(ids, cache=self.cache, return_hidden=True)
        last = torch.tensor(lengths, device=self.device) - 1
        self.cache.lengths[start : start + len(requests)] = last + 1
        return self.model.lm_head(hidden[torch.arange(len(requests), device=self.device), last])

    def _sample(self, requests: list[_Request], logits: torch.Tensor) -> list[TokenOutput]:
        """Each request's next token; a request whose token cannot be had fails alone (finish_reason "error")."""
        logits = logits[:, : self.vocab_size]
        plain = all(r.params.temperature == 0 and r.seen is None and r.bias is None for r in requests)
        greedy = logits.argmax(dim=-1).tolist() if plain else None
        want = [r.params.logprobs is not None for r in requests]
        logprobs = torch.log_softmax(logits.float(), dim=-1) if any(want) else None
        outputs = []
        for i, request in enumerate(requests):
            try:
                token = greedy[i] if greedy is not None else self._pick(request, logits[i : i + 1])
                logprob, top = None, []
                if want[i]:
                    logprob = logprobs[i, token].item()
                    if request.params.logprobs:
                        values, ids = logprobs[i].topk(request.params.logprobs)
                        top = list(zip(ids.tolist(), values.tolist(), strict=True))
                outputs.append(self._advance(request, token, logprob, top))
            except Exception as e:  # noqa: BLE001 - one request's failure must not end the others'
                request.pending = -1
                outputs.append(TokenOutput(request.id, -1, "", None, [], "error", e))
        return outputs

    def _pick(self, request: _Request, logits: torch.Tensor) -> int:
        if request.bias is not None:
            logits = logits.float().index_add(1, *request.bias)
        if request.seen is not None:
            logits = apply_repetition_penalty(logits, request.seen[None], request.params.repetition_penalty)
        return int(next_tokens(logits, request.params, request.generator)[0])

    def _advance(self, request: _Request, token: int, logprob: float | None, top: list[tuple[int, float]]) -> TokenOutput:
        """Record a request's new token; a finished request is marked (pending < 0) for release."""
        request.generated += 1
        if request.seen is not None:
            request.seen[token] = True
        finish: FinishReason | None = None
        text = ""
        if token == self.eot_id:
            finish = "stop"
        elif self.tokenizer is not None:
            text = request.text.push(self.tokenizer.decode_bytes([token]))
            if request.text.stopped:
                finish = "stop"
        if finish is None and request.generated >= request.budget:
            finish = "length"
        if finish is not None:
            text += request.text.close()
        request.pending = -1 if finish else token
        return TokenOutput(request.id, token, text, logprob, top, finish)

    def _release(self, slots: Iterable[int]) -> None:
        """Free slots, keeping the running rows packed: the last row moves into each freed slot."""
        for slot in sorted(slots, reverse=True):
            last = len(self.running) - 1
            if slot != last:
                self.cache.move(last, slot)
                self.running[slot] = self.running[last]
            self.running.pop()

    def run(self, prompts: list[list[int]], params: SamplingParams | list[SamplingParams]) -> Iterator[tuple[int, TokenOutput]]:
        """Generate for a batch of prompts: (prompt index, output) as tokens arrive."""
        each = params if isinstance(params, list) else [params] * len(prompts)
        index = {self.add(prompt, p): i for i, (prompt, p) in enumerate(zip(prompts, each, strict=True))}
        remaining = set(index)
        while remaining:
            for output in self.step():
                if output.request_id in remaining:
                    if output.error is not None:
                        raise output.error
                    yield index[output.request_id], output
                    if output.finish_reason:
                        remaining.discard(output.request_id)

    def generate(self, prompts: list[list[int]], params: SamplingParams | list[SamplingParams]) -> list[Completion]:
        """Complete a batch of prompts, returning each one's tokens, text, log-probabilities and finish reason."""
        completions = [Completion() for _ in prompts]
        for i, output in self.run(prompts, params):
            done = completions[i]
            done.tokens.append(output.token)
            done.text += output.text
            done.logprobs.append(output.logprob)
            done.top_logprobs.append(output.top_logprobs)
            done.finish_reason = output.finish_reason
        return completions

    @torch.inference_mode()
    def score(self, prompt: list[int], top_n: int = 0) -> list[tuple[float, list[tuple[int, float]]] | None]:
        """Each prompt token's log-probability given the ones before it, with the `top_n` most likely
        alternatives there; None for the first token, which nothing predicts (OpenAI's `echo`)."""
        if not prompt:
            raise GptlabError("a prompt needs at least one token")
        if len(prompt) > self.n_ctx:
            raise GptlabError(f"prompt is {len(prompt)} tokens, more than the model's context of {self.n_ctx}")
        ids = torch.tensor([prompt], device=self.device)
        logprobs = torch.log_softmax(self.model(ids)[0, :-1, : self.vocab_size].float(), dim=-1)
        chosen = logprobs.gather(1, ids[0, 1:, None])[:, 0].tolist()
        scored: list[tuple[float, list[tuple[int, float]]] | None] = [None]
        for i, value in enumerate(chosen):
            top = []
            if top_n:
                values, top_ids = logprobs[i].topk(top_n)
                top = list(zip(top_ids.tolist(), values.tolist(), strict=True))
            scored.append((value, top))
        return scored

    def beam_search(
        self, prompt: list[int], max_new_tokens: int, *, num_beams: int = 4, length_penalty: float = 0.6,
        stop: tuple[str, ...] = (), early_stopping: EarlyStopping = False,
    ) -> Completion:
        """The best of `num_beams` beams (GPT-3 decoded with 4 and a length penalty of 0.6), ending at
        `<|endoftext|>` or a stop string; its text is cut before the first stop string."""
        if stop and self.tokenizer is None:
            raise GptlabError("stop strings need a tokenizer to read the generated text")
        tokenizer = self.tokenizer

        def ends(tokens: list[int]) -> bool:
            return _stop_at(tokenizer.decode(tokens), stop) is not None

        best = beam_search(
            self.model, prompt, max_new_tokens, num_beams=num_beams, length_penalty=length_penalty,
            eos_id=self.eot_id, ends=ends if stop else None, early_stopping=early_stopping, vocab_size=self.vocab_size,
        )
        ended = best.tokens[-1] == self.eot_id
        text = "" if tokenizer is None else tokenizer.decode(best.tokens[:-1] if ended else best.tokens)
        cut = _stop_at(text, stop)
        return Completion(
            tokens=best.tokens, text=text if cut is None else text[:cut],
            finish_reason="stop" if ended or cut is not None else "length",
        )


def _stop_at(text: str, stop: tuple[str, ...]) -> int | None:
    """Where the first stop string in `text` begins, if any."""
    return min((i for i in (text.find(s) for s in stop) if i >= 0), default=None)
