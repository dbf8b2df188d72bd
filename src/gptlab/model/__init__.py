"""The GPT model family: one module, variants as configuration."""

from gptlab.lazy import lazy_exports
from gptlab.model.config import PRESETS, GPTConfig, Preset, preset

# The configs are plain dataclasses; the modules needing PyTorch load on first use (`gptlab --help`).
_EXPORTS = {"GPT": "gpt", "KVCache": "kv_cache", "band_mask": "local_attention", "local_attention": "local_attention"}

__all__ = ["PRESETS", "GPTConfig", "Preset", "preset", *_EXPORTS]

__getattr__ = lazy_exports(__name__, _EXPORTS)
