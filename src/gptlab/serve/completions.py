"""POST /v1/completions and /v1/chat/completions: a request is checked and planned up front (a bad one
is a 4xx before any work starts), runs as one job on the engine, and is answered whole or streamed as
server-sent events. A client that leaves, streaming or not, cancels its job at once."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from gptlab.engine import TokenOutput
from gptlab.generation.params import SamplingParams
from gptlab.serve import chat
from gptlab.serve.metrics import Metrics
from gptlab.serve.protocol import ApiError, ChatCompletionRequest, CompletionRequest
from gptlab.serve.tokens import TokenText
from gptlab.serve.worker import Job, Worker

log = logging.getLogger("gptlab.serve")
T = TypeVar("T")
CLIENT_GONE = 499  # nginx's status for a request whose client closed the connection


@dataclass
class Served:
    """What the routes share: the model's name and context, its tokenizer, the engine worker, metrics."""

    name: str
    text: TokenText
    n_ctx: int
    worker: Worker
    metrics: Metrics
    created: int = field(default_factory=lambda: int(time.time()))

    def check_model(self, model: str | None) -> None:
        if model is not None and model != self.name:
            raise ApiError(404, f"the model {model!r} does not exist; this server serves {self.name!r}",
                           param="model", code="model_not_found")

    def prompts(self, prompt: str | list[str] | list[int] | list[list[int]], echo: bool) -> list[tuple[str, list[int]]]:
        """Each prompt of a request as (its text, for echo; its token ids)."""
        single = isinstance(prompt, str) or bool(prompt) and isinstance(prompt[0], int)
        items = [prompt] if single else prompt
        if not items:
            raise ApiError(400, "prompt is empty", param="prompt")
        vocab = self.text.tokenizer.vocab_size
        out = []
        for item in items:
            ids = self.text.encode(item) if isinstance(item, str) else item
            if not ids:
                raise ApiError(400, 'prompt is empty; "<|endoftext|>" starts an unconditional sample', param="prompt")
            if min(ids) < 0 or max(ids) >= vocab:
                raise ApiError(400, f"prompt token ids must be in [0, {vocab}), got {min(ids)}..{max(ids)}", param="prompt")
            shown = item if isinstance(item, str) else self.text.decode(ids) if echo else ""
            out.append((shown, ids))
        return out

    def budget(self, prompt: list[int], max_tokens: int | None, echo: bool = False) -> int:
        """Tokens to generate after `prompt`: `max_tokens`, or all that fit when None; 0 only with echo."""
        new = self.n_ctx - len(prompt) if max_tokens is None else max_tokens
        if max_tokens == 0 and not echo:
            raise ApiError(400, "max_tokens must be at least 1 (0 is allowed with echo, to score the prompt)",
                           param="max_tokens")
        if max_tokens is None and new < 1:
            raise ApiError(400, f"the prompt is {len(prompt)} tokens, which leaves no room to generate in this model's "
                                f"context of {self.n_ctx} tokens", param="prompt", code="context_length_exceeded")
        if len(prompt) + new > self.n_ctx:
            raise ApiError(400, f"this model's maximum context length is {self.n_ctx} tokens, but {len(prompt) + new} "
                                f"were requested ({len(prompt)} in the prompt, {new} for the completion); shorten the "
                                "prompt or lower max_tokens", param="max_tokens", code="context_length_exceeded")
        return new


def _check_sampling(served: Served, req: CompletionRequest | ChatCompletionRequest) -> None:
    """What the request models alone cannot check: values this server does not implement, token ids
    against the vocabulary, the model's name."""
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(req, name):
            raise ApiError(400, f"{name} is not supported; use repetition_penalty", param=name)
    if req.stream_options is not None and not req.stream:
        raise ApiError(400, "stream_options is only allowed with stream: true", param="stream_options")
    if req.num_beams > 1 and req.n > 1:
        raise ApiError(400, "n > 1 with num_beams > 1 is not supported: beam search gives its one best completion",
                       param="n")
    vocab = served.text.tokenizer.vocab_size
    if req.logit_bias and max(req.logit_bias) >= vocab:
        raise ApiError(400, f"logit_bias: token id {max(req.logit_bias)} is not in the vocabulary [0, {vocab})",
                       param="logit_bias")
    served.check_model(req.model)


def _sampling(req: CompletionRequest | ChatCompletionRequest, budget: int, choice: int, stop: tuple[str, ...],
              logprobs: int | None) -> SamplingParams:
    """Choice `choice` of n samples with seed + choice, so a seeded request is reproducible and its n differ."""
    return SamplingParams(
        max_new_tokens=budget, temperature=req.temperature, top_p=None if req.top_p == 1 else req.top_p,
        top_k=req.top_k, repetition_penalty=req.repetition_penalty, stop=stop, logprobs=logprobs,
        seed=None if req.seed is None else req.seed + choice, logit_bias=req.logit_bias,
        num_beams=req.num_beams, length_penalty=req.length_penalty,
    )


class _Logprobs:
    """OpenAI's legacy `logprobs` object, built token by token; `take()` empties it (a stream's chunks)."""

    def __init__(self, text: TokenText):
        self.text = text
        self.offsets = text.offsets()
        self.tokens: list[str] = []
        self.token_logprobs: list[float | None] = []
        self.top_logprobs: list[dict[str, float] | None] = []
        self.text_offset: list[int] = []

    def add(self, token: int, logprob: float | None, alternatives: list[tuple[int, float]]) -> None:
        """A token and its log-probability (None: the first prompt token, which nothing predicts); its
        top dict holds the alternatives and, as OpenAI's does, the token itself."""
        piece = self.text.piece(token)
        self.tokens.append(piece)
        self.token_logprobs.append(logprob)
        top = None
        if logprob is not None:
            top = {self.text.piece(i): value for i, value in alternatives}
            top.setdefault(piece, logprob)
        self.top_logprobs.append(top)
        self.text_offset.append(self.offsets(token))

    def take(self) -> dict[str, list]:
        out = {"tokens": self.tokens, "token_logprobs": self.token_logprobs, "top_logprobs": self.top_logprobs,
               "text_offset": self.text_offset}
        self.tokens, self.token_logprobs, self.top_logprobs, self.text_offset = [], [], [], []
        return out


@dataclass
class _Choice:
    text: str = ""
    logprobs: _Logprobs | None = None
    finish_reason: str | None = None


class _JobStream(StreamingResponse):
    """Server-sent events that close their job however the stream ends: done, failed or disconnected
    (Starlette stops the stream when the client goes; this frees the engine's slots)."""

    def __init__(self, job: Job, events: AsyncIterator[str]):
        super().__init__(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        self.job = job

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.job.close()


class _ClientGone(Exception):
    pass


async def _unless_gone(request: Request, work: Awaitable[T]) -> T:
    """`work`'s result, or _ClientGone as soon as the client disconnects (its work is then cancelled)."""

    async def gone() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    task, watch = asyncio.ensure_future(work), asyncio.ensure_future(gone())
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        task.cancel()
    if not task.done() or task.cancelled():
        raise _ClientGone
    return task.result()


async def _answer(request: Request, job: Job, stream: bool, reply: _TextCompletion | _ChatCompletion) -> Response:
    if stream:
        return _JobStream(job, _events(reply))
    try:
        return JSONResponse(await _unless_gone(request, reply.body()))
    except _ClientGone:
        return Response(status_code=CLIENT_GONE)
    finally:
        job.close()


def _event(data: dict[str, Any] | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


async def _events(reply: _TextCompletion | _ChatCompletion) -> AsyncIterator[str]:
    """SSE framing of a reply's chunks, then its usage when asked for: an error mid-stream becomes an
    error event (OpenAI's error body); [DONE] ends the stream."""
    try:
        async for chunk in reply.chunks():
            yield _event(chunk)
        if reply.run.include_usage:
            yield _event({**reply.head(), "choices": [], "usage": reply.run.usage()})
    except ApiError as e:
        yield _event(e.body())
    except Exception as e:  # noqa: BLE001 - the status line is sent: the error can only be an event
        log.exception("a stream failed")
        yield _event(ApiError(500, f"internal error: {type(e).__name__}: {e}", type="server_error").body())
    yield _event("[DONE]")


class _Run:
    """One request's generation: counts tokens and times the first one, for usage and metrics."""

    def __init__(self, served: Served, job: Job, endpoint: str, prompt_tokens: int, include_usage: bool):
        self.served = served
        self.job = job
        self.endpoint = endpoint
        self.started = time.perf_counter()
        self.prompt_tokens = prompt_tokens
        self.generated = 0
        self.include_usage = include_usage
        served.metrics.prompt_tokens.inc(prompt_tokens)

    async def outputs(self) -> AsyncIterator[tuple[int, TokenOutput]]:
        async for index, output in self.job.outputs():
            if not self.generated:
                self.served.metrics.first_token.labels(self.endpoint).observe(time.perf_counter() - self.started)
            self.generated += 1
            yield index, output

    def usage(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.generated,
                "total_tokens": self.prompt_tokens + self.generated}


async def completion(served: Served, req: CompletionRequest, request: Request) -> Response:
    _check_sampling(served, req)
    if req.best_of not in (None, req.n):
        raise ApiError(400, "best_of other than n is not supported", param="best_of")
    if req.suffix:
        raise ApiError(400, "suffix is not supported", param="suffix")
    prompts = served.prompts(req.prompt, req.echo)
    budgets = [served.budget(ids, req.max_tokens, req.echo) for _, ids in prompts]
    params = [_sampling(req, budget, j, req.stop, req.logprobs) if budget else None
              for budget in budgets for j in range(req.n)]
    job = served.worker.job(len(params) * req.num_beams)
    include_usage = req.stream_options is not None and req.stream_options.include_usage
    return await _answer(request, job, req.stream, _TextCompletion(served, req, prompts, params, job, include_usage))


class _TextCompletion:
    def __init__(self, served: Served, req: CompletionRequest, prompts: list[tuple[str, list[int]]],
                 params: list[SamplingParams | None], job: Job, include_usage: bool):
        self.served = served
        self.req = req
        self.prompts = prompts
        self.params = params
        self.id = f"cmpl-{uuid.uuid4().hex}"
        self.run = _Run(served, job, "/v1/completions", sum(len(ids) for _, ids in prompts), include_usage)

    def head(self) -> dict[str, Any]:
        head = {"id": self.id, "object": "text_completion", "created": int(time.time()), "model": self.served.name}
        if self.run.include_usage:
            head["usage"] = None
        return head

    async def _start(self) -> list[_Choice]:
        """Send the work to the engine; the choices, holding the echoed prompts (scored when logprobs are asked)."""
        req, n = self.req, self.req.n
        for index, params in enumerate(self.params):
            if params is not None:
                self.run.job.generate(index, self.prompts[index // n][1], params)
        scores: list[Any] = [None] * len(self.prompts)
        if req.echo and req.logprobs is not None:
            scores = await asyncio.gather(*(self.run.job.score(ids, req.logprobs) for _, ids in self.prompts))
        choices = []
        for index, params in enumerate(self.params):
            shown, ids = self.prompts[index // n]
            choice = _Choice(text=shown if req.echo else "", finish_reason=None if params else "length")
            if req.logprobs is not None:
                choice.logprobs = _Logprobs(self.served.text)
                for token, score in zip(ids, scores[index // n] or [], strict=False):
                    choice.logprobs.add(token, *(score or (None, [])))
            choices.append(choice)
        return choices

    async def body(self) -> dict[str, Any]:
        choices = await self._start()
        async for index, output in self.run.outputs():
            choice = choices[index]
            choice.text += output.text
            choice.finish_reason = output.finish_reason
            if choice.logprobs is not None:
                choice.logprobs.add(output.token, output.logprob, output.top_logprobs)
        return {
            **self.head(),
            "choices": [
                {"index": i, "text": c.text, "logprobs": c.logprobs and c.logprobs.take(), "finish_reason": c.finish_reason}
                for i, c in enumerate(choices)
            ],
            "usage": self.run.usage(),
        }

    async def chunks(self) -> AsyncIterator[dict[str, Any]]:
        choices = await self._start()
        for index, choice in enumerate(choices):
            if choice.text or choice.finish_reason or choice.logprobs and choice.logprobs.tokens:
                yield self._chunk(index, choice.text, choice.logprobs, choice.finish_reason)
        async for index, output in self.run.outputs():
            logprobs = choices[index].logprobs
            if logprobs is not None:
                logprobs.add(output.token, output.logprob, output.top_logprobs)
            if output.text or output.finish_reason or logprobs is not None:
                yield self._chunk(index, output.text, logprobs, output.finish_reason)

    def _chunk(self, index: int, text: str, logprobs: _Logprobs | None, finish_reason: str | None) -> dict[str, Any]:
        choice = {"index": index, "text": text, "logprobs": logprobs and logprobs.take(), "finish_reason": finish_reason}
        return {**self.head(), "choices": [choice]}


async def chat_completion(served: Served, req: ChatCompletionRequest, request: Request) -> Response:
    _check_sampling(served, req)
    if req.logprobs:
        raise ApiError(400, "logprobs are not supported on chat completions; use /v1/completions", param="logprobs")
    prompt = chat.render([{"role": m.role, "content": m.content} for m in req.messages])
    ids = served.text.tokenizer.encode(prompt)  # message text is text: a special token's name in it stays text
    budget = served.budget(ids, req.max_completion_tokens or req.max_tokens)
    params = [_sampling(req, budget, j, (chat.STOP, *req.stop), None) for j in range(req.n)]
    job = served.worker.job(req.n * req.num_beams)
    for index, p in enumerate(params):
        job.generate(index, ids, p)
    include_usage = req.stream_options is not None and req.stream_options.include_usage
    run = _Run(served, job, "/v1/chat/completions", len(ids), include_usage)
    return await _answer(request, job, req.stream, _ChatCompletion(served, run, req.n, req.stream))


class _ChatCompletion:
    """The assistant's replies, without the space the template leaves after `Assistant:`."""

    def __init__(self, served: Served, run: _Run, n: int, stream: bool):
        self.served = served
        self.run = run
        self.n = n
        self.object = "chat.completion.chunk" if stream else "chat.completion"
        self.id = f"chatcmpl-{uuid.uuid4().hex}"

    def head(self) -> dict[str, Any]:
        head = {"id": self.id, "object": self.object, "created": int(time.time()), "model": self.served.name}
        if self.run.include_usage:
            head["usage"] = None
        return head

    async def body(self) -> dict[str, Any]:
        choices = [_Choice() for _ in range(self.n)]
        async for index, output in self.run.outputs():
            choices[index].text += output.text
            choices[index].finish_reason = output.finish_reason
        return {
            **self.head(),
            "choices": [
                {"index": i, "message": {"role": "assistant", "content": c.text.lstrip()}, "logprobs": None,
                 "finish_reason": c.finish_reason}
                for i, c in enumerate(choices)
            ],
            "usage": self.run.usage(),
        }

    async def chunks(self) -> AsyncIterator[dict[str, Any]]:
        head = self.head()
        for index in range(self.n):
            yield {**head, "choices": [{"index": index, "delta": {"role": "assistant", "content": ""},
                                        "logprobs": None, "finish_reason": None}]}
        started = [False] * self.n
        async for index, output in self.run.outputs():
            text = output.text if started[index] else output.text.lstrip()
            started[index] = started[index] or bool(text)
            if text or output.finish_reason:
                delta = {"content": text} if text else {}
                yield {**head, "choices": [{"index": index, "delta": delta, "logprobs": None,
                                            "finish_reason": output.finish_reason}]}
