"""The server's settings: where it listens, who may call it, how much it takes on, and how the model is loaded."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Annotated

from gptlab.loading import LoadConfig
from gptlab.settings import AT_LEAST_1, NOT_NEGATIVE, Check

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
"""The largest request body a server accepts by default: room for a batch of long token-id prompts (as
lm-evaluation-harness sends), not for abuse."""


@dataclass
class ServeConfig(LoadConfig):
    host: str = "127.0.0.1"
    """Address to listen on (127.0.0.1: this machine only)."""
    port: Annotated[int, Check("in 1..65535", lambda v: 1 <= v <= 65535)] = 8000
    """Port to listen on."""
    api_key: str | None = None
    """Require this Bearer token on every route but /health and the playground page; default: $GPTLAB_API_KEY, and
    without it the server is open."""
    model_name: str | None = None
    """The model's id in the API; default: the checkpoint directory's name."""
    max_batch: Annotated[int, AT_LEAST_1] = 16
    """Sequences decoding together (KV-cache slots)."""
    max_queue: Annotated[int, NOT_NEGATIVE] = 64
    """Sequences waiting for a slot before new requests get 429."""
    max_body_bytes: Annotated[int, AT_LEAST_1] = DEFAULT_MAX_BODY_BYTES
    """Largest request body accepted, in bytes (4 MiB by default); larger ones get 413."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.api_key is None:
            self.api_key = os.environ.get("GPTLAB_API_KEY")
