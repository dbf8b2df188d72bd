"""The OpenAI wire format: request bodies as pydantic models, errors as OpenAI's `{"error": {...}}`.

Request models are strict (a string is never taken for a number, nor a number for a boolean), so a
malformed request fails validation with a 400 that names the field instead of being guessed at.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator

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


Prompt = Annotated[str | list[str] | list[int] | list[list[int]], PlainValidator(_prompt)]
Stop = Annotated[tuple[str, ...], PlainValidator(_stop)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True)  # unknown fields (user, ...) are ignored, as OpenAI's own clients send some


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
    content: str | list[dict[str, Any]]

    def text(self) -> str:
        """The content's text: a string, or the text parts of a list of content parts."""
        if isinstance(self.content, str):
            return self.content
        if any(part.get("type") != "text" or not isinstance(part.get("text"), str) for part in self.content):
            raise ApiError(400, "only text content parts are supported", param="messages")
        return "".join(part["text"] for part in self.content)


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
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    if not loc:
        return ApiError(400, f"request body: {message}")
    return ApiError(400, f"{'.'.join(loc)}: {message}", param=loc[0])
