"""Training data: documents from files, token shards, train/validation corpora, window sampling."""

from gptlab.data.corpus import Corpus, Split, build_corpus, split_documents
from gptlab.data.sampler import WindowSampler, batch_from_starts, eval_starts
from gptlab.data.shards import read_shards, write_shards
from gptlab.data.sources import Document, iter_documents

__all__ = [
    "Corpus",
    "Document",
    "Split",
    "WindowSampler",
    "batch_from_starts",
    "build_corpus",
    "eval_starts",
    "iter_documents",
    "read_shards",
    "split_documents",
    "write_shards",
]
