"""Checkpoint directories and conversion to and from Hugging Face."""

from gptlab.checkpoint.io import LanguageModel, load, save

__all__ = ["LanguageModel", "load", "save"]
