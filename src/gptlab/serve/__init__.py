"""`gptlab serve`: an OpenAI-compatible HTTP server over the inference engine, with a playground page."""

from gptlab.lazy import lazy_exports

_EXPORTS = {"create_app": "app"}

__all__ = list(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
