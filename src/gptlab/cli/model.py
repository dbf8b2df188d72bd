"""`gptlab model`: inspect presets and checkpoints without allocating their weights."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gptlab.model.config import PRESETS, GPTConfig, preset


def register(verbs: argparse._SubParsersAction) -> None:
    parser = verbs.add_parser("model", help="list presets, show a model's shape and parameter count")
    sub = parser.add_subparsers(metavar="ACTION", required=True)
    info = sub.add_parser(
        "info",
        help="shape and parameter count of a preset or checkpoint (built on the meta device: no memory)",
        description="Build the model on PyTorch's meta device and report its shape and unique parameter count.",
    )
    info.add_argument("name", help=f"a preset ({', '.join(PRESETS)}) or a checkpoint directory")
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")
    info.set_defaults(run=run_info)
    listing = sub.add_parser("list", help="list the presets")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(run=run_list)


def resolve(name: str) -> GPTConfig:
    from gptlab.checkpoint.io import read_config

    if name in PRESETS or not Path(name).exists():
        return preset(name)
    return GPTConfig.from_dict(read_config(name).get("model", {}))


def describe(config: GPTConfig) -> dict:
    import torch

    from gptlab.model import GPT
    from gptlab.scale.shapes import non_embedding_params

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


def run_info(args: argparse.Namespace) -> None:
    info = describe(resolve(args.name))
    if args.name in PRESETS:
        p = PRESETS[args.name]
        info.update(description=p.description, batch_tokens=p.batch_tokens, lr=p.lr)
    if args.json:
        print(json.dumps(info, indent=2))
        return
    width = max(map(len, info))
    for key, value in info.items():
        if value is not None:
            print(f"{key:>{width}}  {f'{value:,}' if isinstance(value, int) and not isinstance(value, bool) else value}")


def run_list(args: argparse.Namespace) -> None:
    rows = [{"name": name, **describe(p.config), "description": p.description} for name, p in PRESETS.items()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'preset':<12} {'params':>10} {'vocab':>6} {'non-emb':>10} {'layers':>6} {'d_model':>7} {'heads':>5} {'ctx':>5}  description")
    for r in rows:
        print(f"{r['name']:<12} {r['params'] / 1e6:>9.2f}M {r['vocab_size']:>6} {r['non_embedding_params'] / 1e6:>9.2f}M "
              f"{r['n_layer']:>6} {r['d_model']:>7} {r['n_head']:>5} {r['n_ctx']:>5}  {r['description']}")
    print("params: with the token embedding of the vocab shown (GPT-2's BPE; GPT-1's for gpt1), so a run with another "
          "tokenizer has another total.\nnon-emb: without the token and position embeddings, the same at any vocab.")
