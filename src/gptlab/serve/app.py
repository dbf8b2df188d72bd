"""The FastAPI app: OpenAI's completions API, tokenizer endpoints (as vLLM names them, which
lm-evaluation-harness's remote tokenizer reads), health, Prometheus metrics and the playground page.

Every error, FastAPI's own validation errors included, is answered as OpenAI's `{"error": {...}}`. With an
API key, every route but /health and the playground page needs it; every route has a body-size limit.
"""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gptlab.errors import GptlabError
from gptlab.language_model import LanguageModel
from gptlab.serve import DEFAULT_MAX_BODY_BYTES, chat
from gptlab.serve.completions import Served, chat_completion, completion
from gptlab.serve.guard import BodyTooLarge, Guard
from gptlab.serve.metrics import Metrics
from gptlab.serve.protocol import (
    ApiError, ChatCompletionRequest, CompletionRequest, DetokenizeRequest, TokenizeRequest, validation_error,
)
from gptlab.serve.tokens import TokenText
from gptlab.serve.worker import Worker
from gptlab.tokenizer import Tokenizer

log = logging.getLogger("gptlab.serve")

GENERATION_PATHS = ("/v1/completions", "/v1/chat/completions")
OPEN_PATHS = ("/health", "/")
"""What answers without the API key: a health check, and the playground page (which asks for the key)."""


def create_app(
    lm: LanguageModel, *, model_name: str, max_batch: int = 16, max_queue: int = 64, api_key: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> FastAPI:
    """An app serving `lm` under `model_name`: at most `max_batch` sequences decode together and
    `max_queue` more wait for a slot; past that, requests get 429. With `api_key`, every route but
    OPEN_PATHS needs it as a Bearer token. A request body over `max_body_bytes` gets 413. The engine
    thread runs while the app does (its lifespan)."""
    if max_queue < 0:
        raise GptlabError(f"max_queue must be >= 0, got {max_queue}")
    if max_body_bytes < 1:
        raise GptlabError(f"max_body_bytes must be at least 1, got {max_body_bytes}")
    tokenizer = lm.require_tokenizer()
    metrics = Metrics()
    worker = Worker(lm.engine(max_batch), max_queue, metrics)
    served = Served(model_name, TokenText(tokenizer), lm.config.n_ctx, worker, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        worker.start()
        try:
            yield
        finally:
            worker.stop()

    app = FastAPI(title="gptlab", lifespan=lifespan, docs_url=None, redoc_url=None)
    _add_error_handlers(app)
    app.include_router(_openai_routes(served))
    app.include_router(_tokenizer_routes(served, tokenizer))
    app.include_router(_service_routes(worker, metrics))
    app.add_middleware(Guard, api_key=api_key, max_body_bytes=max_body_bytes, open_paths=OPEN_PATHS)
    app.add_middleware(_Measured, metrics=metrics)
    return app


def _openai_routes(served: Served) -> APIRouter:
    """OpenAI's API: completions, chat completions and the model list."""
    v1 = APIRouter(prefix="/v1")

    @v1.post("/completions")
    async def completions(req: CompletionRequest, request: Request) -> Response:
        return await completion(served, req, request)

    @v1.post("/chat/completions")
    async def chat_completions(req: ChatCompletionRequest, request: Request) -> Response:
        return await chat_completion(served, req, request)

    @v1.get("/models")
    async def models() -> dict:
        return {"object": "list", "data": [_model_card(served)]}

    @v1.get("/models/{model:path}")
    async def model(model: str) -> dict:
        served.check_model(model)
        return _model_card(served)

    return v1


def _tokenizer_routes(served: Served, tokenizer: Tokenizer) -> APIRouter:
    """The tokenizer endpoints as vLLM names them (lm-evaluation-harness's remote tokenizer reads them)."""
    router = APIRouter()

    @router.post("/tokenize")
    async def tokenize(req: TokenizeRequest) -> dict:
        ids = served.text.encode(req.prompt)
        return {"tokens": ids, "count": len(ids), "max_model_len": served.n_ctx}

    @router.post("/detokenize")
    async def detokenize(req: DetokenizeRequest) -> dict:
        vocab = tokenizer.vocab_size
        if req.tokens and not 0 <= min(req.tokens) <= max(req.tokens) < vocab:
            raise ApiError(400, f"token ids must be in [0, {vocab})", param="tokens")
        return {"prompt": served.text.decode(req.tokens)}

    @router.get("/tokenizer_info")
    async def tokenizer_info() -> dict:
        eot = "<|endoftext|>" if tokenizer.eot_id is not None else None
        return {
            "tokenizer_class": type(tokenizer).__name__, "vocab_size": tokenizer.vocab_size,
            "model_max_length": served.n_ctx, "eos_token": eot, "bos_token": eot, "pad_token": None,
            "chat_template": chat.TEMPLATE,
        }

    return router


def _service_routes(worker: Worker, metrics: Metrics) -> APIRouter:
    """Health, Prometheus metrics and the playground page."""
    router = APIRouter()

    @router.get("/health")
    async def health() -> Response:
        if not worker.alive:
            return JSONResponse({"status": "error", "reason": str(worker.failure or "engine stopped")}, status_code=503)
        return JSONResponse({"status": "ok"})

    @router.get("/metrics")
    async def prometheus() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    page = resources.files("gptlab.serve").joinpath("static/playground.html").read_text(encoding="utf-8")

    @router.get("/", response_class=HTMLResponse)
    async def playground() -> str:
        return page

    return router


def _model_card(served: Served) -> dict:
    return {"id": served.name, "object": "model", "created": served.created, "owned_by": "gptlab",
            "max_model_len": served.n_ctx}


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError) -> JSONResponse:
        return e.response()

    @app.exception_handler(GptlabError)
    async def gptlab_error(request: Request, e: GptlabError) -> JSONResponse:
        return ApiError(400, str(e)).response()

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        return validation_error(list(e.errors())).response()

    @app.exception_handler(BodyTooLarge)
    async def too_large(request: Request, e: BodyTooLarge) -> JSONResponse:
        return e.error().response()

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> JSONResponse:
        kind = "not_found_error" if e.status_code == 404 else "invalid_request_error"
        return ApiError(e.status_code, f"{request.method} {request.url.path}: {e.detail}", type=kind).response()

    @app.exception_handler(Exception)
    async def crash(request: Request, e: Exception) -> JSONResponse:
        log.exception("unhandled error in %s %s", request.method, request.url.path)
        return ApiError(500, f"internal error: {type(e).__name__}: {e}", type="server_error").response()


class _Measured:
    """Counts answers by status and times successful ones to their last byte, streams included."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path")
        if scope["type"] != "http" or path not in GENERATION_PATHS:
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), 500

        async def watch(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            self.metrics.requests.labels(path, str(status)).inc()
            if status == 200:
                self.metrics.latency.labels(path).observe(time.perf_counter() - started)
