"""`gptlab serve`: an OpenAI-compatible HTTP server for a checkpoint, with a playground page."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from gptlab.cli.options import add_threads, positive_int
from gptlab.serve import DEFAULT_MAX_BODY_BYTES


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
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument(
        "--api-key", default=os.environ.get("GPTLAB_API_KEY"),
        help="require this Bearer token on every route but /health and the playground page "
             "(default: $GPTLAB_API_KEY; none: open)",
    )
    parser.add_argument("--model-name", help="the model's id in the API (default: the checkpoint directory's name)")
    parser.add_argument("--max-batch", type=int, default=16,
                        help="sequences decoding together (KV-cache slots, default 16)")
    parser.add_argument("--max-queue", type=int, default=64,
                        help="sequences waiting for a slot before new requests get 429 (default 64)")
    parser.add_argument("--max-body-bytes", type=positive_int, default=DEFAULT_MAX_BODY_BYTES,
                        help=f"largest request body accepted; larger ones get 413 (default {DEFAULT_MAX_BODY_BYTES}, "
                             f"{DEFAULT_MAX_BODY_BYTES // 2**20} MiB)")
    parser.add_argument("--precision", choices=("fp32", "bf16", "int8"), default="fp32", help="weights (default fp32)")
    parser.add_argument("--device", default="auto", help="torch device: auto (GPU if present), cpu, cuda, ...")
    add_threads(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    import uvicorn

    import gptlab
    from gptlab.serve import create_app, listen
    from gptlab.threads import use_threads

    sock = listen(args.host, args.port)
    use_threads(args.threads)
    lm = gptlab.load(args.checkpoint, device=args.device, precision=args.precision)
    name = args.model_name or args.checkpoint.resolve().name
    app = create_app(lm, model_name=name, max_batch=args.max_batch, max_queue=args.max_queue, api_key=args.api_key,
                     max_body_bytes=args.max_body_bytes)
    print(f"gptlab: serving {name} at http://{args.host}:{args.port}/v1 (playground at /; Ctrl-C stops)", file=sys.stderr)
    server = uvicorn.Server(uvicorn.Config(app, log_level="info", timeout_graceful_shutdown=5))
    server.run(sockets=[sock])
