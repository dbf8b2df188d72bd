"""A model's shape and parameter counts, from its config alone: the model is built on PyTorch's meta
device, so describing GPT-3 175B allocates nothing."""

from __future__ import annotations

from typing import Any

from gptlab.model.config import PRESETS, GPTConfig, non_embedding_params


def describe(config: GPTConfig) -> dict[str, Any]:
    """Shape and unique parameter count of `config`'s model."""
    import torch

    from gptlab.model.gpt import GPT

    with torch.device("meta"):
        params = GPT(config).num_params()
    layers = [config.layer_attention(i) for i in range(config.n_layer)]
    return {
        "params": params,
        "non_embedding_params": non_embedding_params(config),
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "d_model": config.d_model,
        "d_head": config.d_head,
        "d_ff": config.ffn_dim,
        "n_ctx": config.n_ctx,
        "vocab_size": config.vocab_size,
        "norm": config.norm,
        "activation": config.activation,
        "local_layers": layers.count("local"),
        "window_size": config.window_size if "local" in layers else None,
    }


def describe_presets() -> list[dict[str, Any]]:
    """Every preset, described, with its name and description."""
    return [{"name": name, **describe(p.config), "description": p.description} for name, p in PRESETS.items()]


def presets_table(rows: list[dict[str, Any]]) -> str:
    """`describe_presets()` as a table, with a note on what the counts include."""
    lines = [f"{'preset':<12} {'params':>10} {'vocab':>6} {'non-emb':>10} {'layers':>6} {'d_model':>7} {'heads':>5} "
             f"{'ctx':>5}  description"]
    for r in rows:
        lines.append(f"{r['name']:<12} {r['params'] / 1e6:>9.2f}M {r['vocab_size']:>6} "
                     f"{r['non_embedding_params'] / 1e6:>9.2f}M {r['n_layer']:>6} {r['d_model']:>7} {r['n_head']:>5} "
                     f"{r['n_ctx']:>5}  {r['description']}")
    lines.append("params: with the token embedding of the vocab shown (GPT-2's BPE; GPT-1's for gpt1), so a run with "
                 "another tokenizer has another total.\nnon-emb: without the token and position embeddings, the same "
                 "at any vocab.")
    return "\n".join(lines)


def table(info: dict[str, Any]) -> str:
    """A description as aligned `key  value` lines, leaving out what does not apply."""
    width = max(map(len, info))
    return "\n".join(
        f"{key:>{width}}  {f'{value:,}' if isinstance(value, int) and not isinstance(value, bool) else value}"
        for key, value in info.items()
        if value is not None
    )
