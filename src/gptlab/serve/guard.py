"""What every request passes before a route sees it: the API key, when the server has one, and a limit on
the size of its body.

Both are checked on the headers first, so an unauthenticated request or one whose Content-Length is over
the limit is refused before a byte of its body is read; a body sent without a length (chunked) is counted
as it arrives and refused as soon as it runs over.
"""

from __future__ import annotations

import hmac

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gptlab.serve.protocol import ApiError


class BodyTooLarge(HTTPException):
    """A body over the limit. An HTTPException, because FastAPI lets only those through when reading a
    body fails; the app answers it with `error()`."""

    def __init__(self, limit: int):
        super().__init__(413, f"the request body is larger than this server's limit of {limit} bytes")

    def error(self) -> ApiError:
        return ApiError(413, self.detail, code="request_too_large", headers={"Connection": "close"})


class Guard:
    """Requires `Authorization: Bearer API_KEY` on every path but `open_paths` (when `api_key` is set), and
    answers 413 to a body larger than `max_body_bytes`."""

    def __init__(self, app: ASGIApp, *, api_key: str | None, max_body_bytes: int, open_paths: tuple[str, ...]):
        self.app = app
        self.expected = f"Bearer {api_key}".encode() if api_key else None  # "" (an empty $GPTLAB_API_KEY): open
        self.max_body_bytes = max_body_bytes
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        refusal = self._refusal(scope["path"], headers)
        if refusal is not None:
            return await refusal.response()(scope, receive, send)
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
            return message

        await self.app(scope, limited, send)

    def _refusal(self, path: str, headers: Headers) -> ApiError | None:
        if self.expected is not None and path not in self.open_paths:
            given = headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, self.expected):
                return ApiError(401, "missing or incorrect API key: send it as 'Authorization: Bearer KEY'",
                                code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body_bytes:
            return BodyTooLarge(self.max_body_bytes).error()
        return None
