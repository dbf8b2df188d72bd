"""Checkpoint directories and conversion to and from Hugging Face."""

from gptlab.checkpoint.hf import export_hf, import_hf
from gptlab.checkpoint.io import LanguageModel, load, save

__all__ = ["LanguageModel", "export_hf", "import_hf", "load", "save"]
