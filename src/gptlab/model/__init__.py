"""The GPT model family: one module, variants as configuration."""

from gptlab.model.config import PRESETS, GPTConfig, Preset, preset
from gptlab.model.gpt import GPT
from gptlab.model.kv_cache import KVCache
from gptlab.model.local_attention import band_mask, local_attention

__all__ = ["GPT", "GPTConfig", "KVCache", "PRESETS", "Preset", "band_mask", "local_attention", "preset"]
