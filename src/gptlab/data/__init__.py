"""Training data: documents from files, token shards, train/validation corpora, window sampling;
`gptlab.data.curate` prepares corpora the way GPT-3 did."""

from gptlab.lazy import lazy_exports
from gptlab.sources import Document, iter_documents  # the reader below data and tokenizer training alike

# Imported on first use: the curation workers need shards and sources, not PyTorch (sampler).
_EXPORTS = {
    "Corpus": "corpus", "Split": "corpus", "build_corpus": "corpus", "split_documents": "corpus",
    "ExampleSampler": "sampler", "WindowSampler": "sampler", "batch_from_starts": "sampler", "eval_starts": "sampler",
    "TokenView": "shards", "read_shards": "shards", "write_shards": "shards",
}

__all__ = ["Document", "iter_documents", *_EXPORTS]


__getattr__ = lazy_exports(__name__, _EXPORTS)
