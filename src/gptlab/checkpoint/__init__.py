"""Checkpoint directories and conversion to and from Hugging Face."""

from gptlab.lazy import lazy_exports

# Imported on first use, like every package that needs PyTorch (`gptlab --help` must not).
_EXPORTS = {"export_hf": "hf", "import_hf": "hf", "Checkpoint": "io", "load_checkpoint": "io", "save": "io"}

__all__ = list(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
