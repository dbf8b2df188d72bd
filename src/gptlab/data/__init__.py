"""Training data: documents from files, token shards, train/validation corpora, window sampling;
`gptlab.data.curate` prepares corpora the way GPT-3 did."""

import importlib

# Imported on first use: the curation workers need shards and sources, not PyTorch (sampler).
_EXPORTS = {
    "Corpus": "corpus", "Split": "corpus", "build_corpus": "corpus", "split_documents": "corpus",
    "WindowSampler": "sampler", "batch_from_starts": "sampler", "eval_starts": "sampler",
    "read_shards": "shards", "write_shards": "shards",
    "Document": "sources", "iter_documents": "sources",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"gptlab.data.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'gptlab.data' has no attribute {name!r}")
