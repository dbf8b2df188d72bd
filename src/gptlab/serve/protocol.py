"""The OpenAI wire format: request bodies as pydantic models, errors as OpenAI's `{"error": {...}}`.

Request models are strict (a string is never taken for a number, nor a number for a boolean, nor
Infinity or NaN for a number), and a field this server does not implement is refused rather than
ignored, so a malformed request fails validation with a 400 that names the field instead of being
guessed at. Only metadata that changes nothing (`user`) is accepted and ignored.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator
from starlette.responses import JSONResponse

MAX_LOGPROBS = 20
"""Most alternatives per token a request may ask for (OpenAI allows 5, vLLM 20)."""


class ApiError(Exception):
    """An error answered with its HTTP status and an OpenAI-style body."""

    def __init__(
        self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
        code: str | None = None, headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def _prompt(value: Any) -> str | list[str] | list[int] | list[list[int]]:
    def ints(v: Any) -> bool:
        return isinstance(v, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in v)

    if isinstance(value, str) or ints(value):
        return value
    if isinstance(value, list) and (all(isinstance(v, str) for v in value) or all(ints(v) for v in value)):
        return value
    raise ValueError("must be a string, a list of strings, a list of token ids or a list of token-id lists")


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError("must be a string or a list of strings")


def _logit_bias(value: Any) -> dict[int, float]:
    """OpenAI's logit_bias: {"token id": bias in [-100, 100]} as {id: bias}."""
    if not isinstance(value, dict):
        raise ValueError("must be an object mapping token ids to biases")
    bias = {}
    for key, number in value.items():
        if not re.fullmatch("[0-9]+", key):
            raise ValueError(f"keys must be token ids (non-negative integers), got {key!r}")
        if isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number):
            raise ValueError(f"the bias of token {key} must be a finite number, got {number!r}")
        if not -100 <= number <= 100:
            raise ValueError(f"the bias of token {key} must be in [-100, 100], got {number}")
        bias[int(key)] = float(number)
    return bias


def _content(value: Any) -> str:
    """A message's text: a string, or a list of text parts ({"type": "text", "text": ...}) joined."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(
        isinstance(part, dict) and part.keys() == {"type", "text"} and part["type"] == "text"
        and isinstance(part["text"], str) for part in value
    ):
        return "".join(part["text"] for part in value)
    raise ValueError('must be a string or a list of text parts ({"type": "text", "text": "..."}): only text is '
                     "supported")


Prompt = Annotated[str | list[str] | list[int] | list[list[int]], PlainValidator(_prompt)]
Stop = Annotated[tuple[str, ...], PlainValidator(_stop)]
LogitBias = Annotated[dict[int, float], PlainValidator(_logit_bias)]
Content = Annotated[str, PlainValidator(_content)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


class StreamOptions(_Strict):
    include_usage: bool = False


class _Sampling(_Strict):
    """The sampling fields chat and text completions share (plus vLLM's top_k and repetition_penalty)."""

    model: str | None = None
    """None: the served model (lm-evaluation-harness sends null when not told a name)."""
    temperature: float = Field(1.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int | None = Field(None, ge=1)
    repetition_penalty: float = Field(1.0, gt=0)
    n: int = Field(1, ge=1, le=128)
    stop: Stop = ()
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: LogitBias | None = None
    num_beams: int = Field(1, ge=1)
    """Beam search with this many beams (each takes a slot of the engine), as transformers' `num_beams`."""
    length_penalty: float = 1.0
    """Beam search: a finished beam scores its log-probability / length ** this."""
    user: str | None = None
    """Metadata: accepted and ignored."""


class CompletionRequest(_Sampling):
    prompt: Prompt
    max_tokens: int | None = Field(16, ge=0)
    """None: as many as fit in the context. 0 only with echo (score the prompt, generate nothing)."""
    logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    echo: bool = False
    best_of: int | None = Field(None, ge=1)
    suffix: str | None = None


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: Content


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False


class TokenizeRequest(_Strict):
    prompt: str
    add_special_tokens: bool = True
    """Accepted for vLLM compatibility; GPT-2's tokenizers add no special tokens either way."""


class DetokenizeRequest(_Strict):
    tokens: list[int]


def validation_error(errors: list[dict[str, Any]]) -> ApiError:
    """FastAPI's validation errors as one OpenAI-style 400 naming the first bad field."""
    error = errors[0]
    loc = [str(part) for part in error.get("loc", ())[1:]]  # drop "body"
    if error.get("type") == "json_invalid":
        reason = error.get("ctx", {}).get("error", "")
        return ApiError(400, f"request body is not valid JSON: {reason}".rstrip(": "))
    if error.get("type") == "extra_forbidden":
        field = ".".join(loc)
        return ApiError(400, f"unrecognized request argument supplied: {field} (this server does not implement it)",
                        param=loc[0])
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    if not loc:
        return ApiError(400, f"request body: {message}")
    return ApiError(400, f"{'.'.join(loc)}: {message}", param=loc[0])
