"""The inference engine under the CLI, the Python API, the evaluator and the server.

Requests join and leave a running batch at any step (continuous batching). Each holds a slot of one
preallocated KV cache for as long as it runs (a beam request one per beam); a new request's prompt is
prefilled on its own, then it decodes one token per step together with every other running request. Each
request brings its own sampling parameters and its own seeded random generator, so a seeded request gives
the same tokens alone or in any batch; a beam request keeps the best of its beams at each step and moves
their cache rows to the slots it holds (gptlab.generation.beam). The engine is synchronous and not
thread-safe: one thread drives `step()`.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import torch

from gptlab import threads
from gptlab.errors import GptlabError
from gptlab.engine.scoring import score_pairs
from gptlab.generation.beam import BeamSearch
from gptlab.generation.params import SamplingParams
from gptlab.generation.pieces import TextStream
from gptlab.generation.sampling import apply_repetition_penalty, next_tokens
from gptlab.model import GPT, KVCache
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
    fastest; GPT-2's output head at batch 1 takes half the time. Saving sees no difference."""
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
        self.finished = False
        self.beams: BeamSearch | None = None  # a beam request holds `params.num_beams` slots, one per beam
        if params.beam_search:
            self.beams = BeamSearch(
                params.num_beams, budget, length_penalty=params.length_penalty, eos_id=engine.eot_id,
                ends=engine.stop_check(params.stop), early_stopping=params.early_stopping,
            )
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

    @property
    def slots(self) -> int:
        return self.params.num_beams

    def next_input(self, beam: int) -> int:
        return self.pending if self.beams is None else self.beams.beams[beam][-1]


class Engine:
    """`add()` requests, then call `step()` until `has_work` is False; `cancel()` at any time between steps."""

    def __init__(
        self, model: GPT, tokenizer: Tokenizer | None = None, *, max_batch: int = 16, inference_layout: bool = False
    ):
        """`tokenizer` turns tokens into text, ends requests at `<|endoftext|>` and finds stop strings; without
        one the engine works on ids only. `max_batch`: KV-cache slots, the most sequences decoding at once (a
        beam request takes one per beam). The engine shares the model's parameters; `inference_layout` lets
        it re-lay them for faster decoding (values unchanged, storage not): only for a model no one trains."""
        if max_batch < 1:
            raise GptlabError(f"max_batch must be at least 1, got {max_batch}")
        self.model = model.eval()
        if inference_layout:
            _column_major_weights(model)
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        self.dtype = model.wte.weight.dtype
        self.n_ctx = model.config.n_ctx
        # ids past the tokenizer's vocabulary (a model padded to a multiple of 128) are never sampled
        self.vocab_size = tokenizer.vocab_size if tokenizer is not None else model.config.vocab_size
        self.eot_id = tokenizer.eot_id if tokenizer is not None else None
        self.max_batch = max_batch
        self.cache = KVCache(model.config, max_batch, self.n_ctx, device=self.device, dtype=self.dtype)
        self.rows: list[tuple[_Request, int]] = []  # rows[i]: the request holding cache slot i, and its beam there
        self.waiting: deque[_Request] = deque()
        self._ids = itertools.count()
        self._inboxes: dict[int, deque[TokenOutput]] = {}  # request id -> where `run` collects its outputs

    @property
    def has_work(self) -> bool:
        return bool(self.rows or self.waiting)

    @property
    def num_running(self) -> int:
        return len({request.id for request, _ in self.rows})

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    def add(self, prompt: list[int], params: SamplingParams) -> int:
        """Queue a request; it starts at the next step with enough free slots. Returns its id."""
        if not prompt:
            raise GptlabError("a prompt needs at least one token")
        if params.stop and self.tokenizer is None:
            raise GptlabError("stop strings need a tokenizer to read the generated text")
        if min(prompt) < 0 or max(prompt) >= self.vocab_size:
            raise GptlabError(f"prompt token ids must be in [0, {self.vocab_size}), got {min(prompt)}..{max(prompt)}")
        if params.logit_bias and max(params.logit_bias) >= self.vocab_size:
            raise GptlabError(f"logit_bias: token ids must be in [0, {self.vocab_size}), got {max(params.logit_bias)}")
        if params.num_beams > self.max_batch:
            raise GptlabError(
                f"num_beams {params.num_beams} needs as many cache slots; this engine has {self.max_batch}"
            )
        if params.num_beams > self.vocab_size:
            raise GptlabError(f"num_beams {params.num_beams} exceeds the vocabulary of {self.vocab_size} tokens")
        prompt = fit_prompt(prompt, self.n_ctx, params)
        request = _Request(next(self._ids), prompt, params, params.new_tokens(len(prompt), self.n_ctx), self)
        self.waiting.append(request)
        return request.id

    def stop_check(self, stop: tuple[str, ...]) -> Callable[[list[int]], bool] | None:
        """Whether generated tokens' text holds a stop string (for beams, which have no running text)."""
        if not stop:
            return None
        tokenizer = self.tokenizer
        return lambda tokens: _stop_at(tokenizer.decode(tokens), stop) is not None

    def cancel(self, request_id: int) -> bool:
        """Drop a request, freeing its slots at once. False when it is not (or no longer) here."""
        for request in self.waiting:
            if request.id == request_id:
                self.waiting.remove(request)
                return True
        slots = [slot for slot, (request, _) in enumerate(self.rows) if request.id == request_id]
        self._release(slots)
        return bool(slots)

    @torch.inference_mode()
    def step(self) -> list[TokenOutput]:
        """Decode one token for every running sequence, then prefill waiting requests into free slots (their
        first token). Finished requests leave the batch and free their slots."""
        threads.tick(self.device)
        outputs: list[TokenOutput] = []
        if self.rows:
            self.cache.decode(len(self.rows))
            ids = torch.tensor([[request.next_input(beam)] for request, beam in self.rows], device=self.device)
            logits = self.model(ids, cache=self.cache)[:, -1]
            outputs += self._next(list(range(len(self.rows))), logits)
        admitted: list[_Request] = []
        free = self.max_batch - len(self.rows)
        while self.waiting and self.waiting[0].slots <= free:  # first come, first served
            admitted.append(self.waiting.popleft())
            free -= admitted[-1].slots
        if admitted:
            firsts = []
            for request in admitted:
                firsts.append(len(self.rows))
                self.rows += [(request, beam) for beam in range(request.slots)]
            outputs += self._next(firsts, self._prefill(admitted, firsts))
        self._release([slot for slot, (request, _) in enumerate(self.rows) if request.finished])
        return outputs

    def _prefill(self, requests: list[_Request], slots: list[int]) -> torch.Tensor:
        """Run new prompts into their first slots, right-padded (the padding's keys lie past each row's
        length, where decoding overwrites them); the logits after each last prompt token. A beam request's
        other slots are filled from its first when its first step picks the beams."""
        lengths = [len(r.prompt) for r in requests]
        ids = torch.zeros(len(requests), max(lengths), dtype=torch.long, device=self.device)
        for row, request in enumerate(requests):
            ids[row, : lengths[row]] = torch.tensor(request.prompt, device=self.device)
        together = slots == list(range(slots[0], slots[0] + len(slots)))  # no beam request among them
        rows = slice(slots[0], slots[0] + len(slots)) if together else torch.tensor(slots, device=self.device)
        self.cache.prefill(rows)
        hidden = self.model(ids, cache=self.cache, return_hidden=True)
        last = torch.tensor(lengths, device=self.device) - 1
        self.cache.lengths[rows] = last + 1
        return self.model.lm_head(hidden[torch.arange(len(requests), device=self.device), last])

    def _next(self, slots: list[int], logits: torch.Tensor) -> list[TokenOutput]:
        """The next step of the requests holding `slots` (`logits` row i from slot i): sampled requests get
        their next token, beam requests their next beams."""
        logits = logits[:, : self.vocab_size]
        sampled = [i for i, slot in enumerate(slots) if self.rows[slot][0].beams is None]
        outputs = self._sample([self.rows[slots[i]][0] for i in sampled], logits[sampled]) if sampled else []
        beams: dict[int, dict[int, int]] = {}  # request id -> beam -> logits row
        for i, slot in enumerate(slots):
            request, beam = self.rows[slot]
            if request.beams is not None:
                beams.setdefault(request.id, {})[beam] = i
        for rows in beams.values():
            request = self.rows[slots[rows[0]]][0]
            live = [rows[beam] for beam in range(len(request.beams.beams))]
            outputs += self._beam_step(request, logits[live])
        return outputs

    def _beam_step(self, request: _Request, logits: torch.Tensor) -> list[TokenOutput]:
        """Advance a beam request: its slots take the beams kept, copied from the slots of those they continue.
        Finished, it gives its best hypothesis as its tokens, the whole text with the last."""
        search = request.beams
        sources = search.step(logits)
        if search.done:
            request.finished = True
            return self._best(request)
        held = {beam: slot for slot, (r, beam) in enumerate(self.rows) if r is request}
        slots = sorted(held.values())
        self.cache.copy(slots, [held[source] for source in sources])
        for beam, slot in enumerate(slots):
            self.rows[slot] = (request, beam)
        return []

    def _best(self, request: _Request) -> list[TokenOutput]:
        tokens = request.beams.best.tokens
        ended = tokens[-1] == self.eot_id
        text = "" if self.tokenizer is None else self.tokenizer.decode(tokens[:-1] if ended else tokens)
        cut = _stop_at(text, request.params.stop)
        finish: FinishReason = "stop" if ended or cut is not None else "length"
        last = len(tokens) - 1
        return [
            TokenOutput(request.id, token, "" if i < last else text[:cut], None, [], None if i < last else finish)
            for i, token in enumerate(tokens)
        ]

    def _sample(self, requests: list[_Request], logits: torch.Tensor) -> list[TokenOutput]:
        """Each request's next token; a request whose token cannot be had fails alone (finish_reason "error")."""
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
                request.finished = True
                outputs.append(TokenOutput(request.id, -1, "", None, [], "error", e))
        return outputs

    def _pick(self, request: _Request, logits: torch.Tensor) -> int:
        if request.bias is not None:
            logits = logits.float().index_add(1, *request.bias)
        if request.seen is not None:
            logits = apply_repetition_penalty(logits, request.seen[None], request.params.repetition_penalty)
        return int(next_tokens(logits, request.params, request.generator)[0])

    def _advance(self, request: _Request, token: int, logprob: float | None, top: list[tuple[int, float]]) -> TokenOutput:
        """Record a request's new token; a finished request is marked for release."""
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
        request.pending, request.finished = token, finish is not None
        return TokenOutput(request.id, token, text, logprob, top, finish)

    def _release(self, slots: Iterable[int]) -> None:
        """Free slots, keeping the rows in use packed: the last row moves into each freed slot."""
        for slot in sorted(slots, reverse=True):
            last = len(self.rows) - 1
            if slot != last:
                self.cache.copy([slot], [last])
                self.rows[slot] = self.rows[last]
            self.rows.pop()

    def run(self, prompts: list[list[int]], params: SamplingParams | list[SamplingParams]) -> Iterator[tuple[int, TokenOutput]]:
        """Generate for a batch of prompts: (prompt index, output) as tokens arrive. Other runs may share the
        engine (each gets its own outputs); closing the iterator early cancels what is left of this one."""
        each = params if isinstance(params, list) else [params] * len(prompts)
        index: dict[int, int] = {}
        remaining: set[int] = set()
        inbox: deque[TokenOutput] = deque()
        try:
            for i, (prompt, p) in enumerate(zip(prompts, each, strict=True)):
                request_id = self.add(prompt, p)
                index[request_id] = i
                remaining.add(request_id)
                self._inboxes[request_id] = inbox
            while remaining:
                if not inbox:
                    for output in self.step():
                        if output.request_id in self._inboxes:
                            self._inboxes[output.request_id].append(output)
                while inbox:
                    output = inbox.popleft()
                    if output.error is not None:
                        raise output.error
                    yield index[output.request_id], output
                    if output.finish_reason:
                        remaining.discard(output.request_id)
        finally:
            for request_id in index:
                del self._inboxes[request_id]
            for request_id in remaining:
                self.cancel(request_id)

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

    def score(self, prompt: list[int], top_n: int = 0) -> list[tuple[float, list[tuple[int, float]]] | None]:
        """Each prompt token's log-probability given the ones before it, with the `top_n` most likely
        alternatives there; None for the first token, which nothing predicts (OpenAI's `echo`)."""
        if not prompt:
            raise GptlabError("a prompt needs at least one token")
        if len(prompt) > self.n_ctx:
            raise GptlabError(f"prompt is {len(prompt)} tokens, more than the model's context of {self.n_ctx}")
        if len(prompt) == 1:
            return [None]
        [scored] = score_pairs(self.model, [(prompt[:1], prompt[1:])], top_n=top_n, vocab_size=self.vocab_size)
        return [None, *zip(scored.logprobs, scored.top_logprobs, strict=True)]


def _stop_at(text: str, stop: tuple[str, ...]) -> int | None:
    """Where the first stop string in `text` begins, if any."""
    return min((i for i in (text.find(s) for s in stop) if i >= 0), default=None)
