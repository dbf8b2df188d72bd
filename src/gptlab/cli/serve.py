"""`gptlab serve`: an OpenAI-compatible HTTP server for a checkpoint, with a playground page."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gptlab.cli.options import add_settings, given
from gptlab.serve.config import ServeConfig


def register(verbs: argparse._SubParsersAction) -> None:
    parser = verbs.add_parser(
        "serve",
        help="serve a checkpoint over OpenAI's completions API (continuous batching, streaming, playground)",
        description=(
            "Serve a checkpoint over HTTP as OpenAI's API does: POST /v1/completions (and a minimal "
            "/v1/chat/completions), GET /v1/models, /tokenize and /detokenize, GET /health and Prometheus "
            "/metrics, and a playground page at /. Requests share the engine's batch; when it and the queue "
            "are full, new ones get 429 with Retry-After."
        ),
    )
    parser.add_argument("checkpoint", type=Path, help="gptlab checkpoint directory")
    add_settings(parser, ServeConfig)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    import gptlab

    def announce(server) -> None:
        print(f"gptlab: serving {server.model_name} at {server.url} (playground at /; Ctrl-C stops)", file=sys.stderr)

    gptlab.serve(args.checkpoint, ServeConfig(**given(args, ServeConfig)), ready=announce)
