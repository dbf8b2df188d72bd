"""`gptlab serve`: an OpenAI-compatible HTTP server over the inference engine, with a playground page."""

from gptlab.lazy import lazy_exports

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
"""The largest request body a server accepts by default: room for a batch of long token-id prompts (as
lm-evaluation-harness sends), not for abuse. Here, free of the web stack, for `gptlab serve --help`."""

_EXPORTS = {"create_app": "app", "listen": "listen"}

__all__ = ["DEFAULT_MAX_BODY_BYTES", *_EXPORTS]

__getattr__ = lazy_exports(__name__, _EXPORTS)
