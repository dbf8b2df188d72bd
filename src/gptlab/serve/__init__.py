"""`gptlab serve`: an OpenAI-compatible HTTP server over the inference engine, with a playground page."""

from gptlab.lazy import lazy_exports
from gptlab.serve.config import DEFAULT_MAX_BODY_BYTES, ServeConfig

_EXPORTS = {"create_app": "app", "listen": "listen", "Server": "server", "serve": "server"}

__all__ = ["DEFAULT_MAX_BODY_BYTES", "ServeConfig", *_EXPORTS]

__getattr__ = lazy_exports(__name__, _EXPORTS)
