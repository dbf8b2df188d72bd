"""Serving under load: `gptlab serve` throughput and latency at 1, 4, 16 and 64 concurrent clients.

A random-weight model (GPT-2 small's shape by default, with an 8,192-token BPE trained here on the
standard library, so nothing is downloaded) is served by `gptlab serve` in its own process on loopback;
each client sends non-streaming completions (token-id prompts, sampled at temperature 1, seeded) one
after another. Per level: generated tokens per second, requests per second, p50/p99 latency and 429s.
The peer is the same server decoding one request at a time (--max-batch 1) under 16 clients; the
figure is the ratio of the two throughputs at 16 clients (goal: at least 3x).

    python benchmarks/serve_load.py [--model gpt2] [--prompt-tokens 32] [--max-tokens 32] [--device cpu]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from eval_speed import corpus  # noqa: E402  (the benchmarks' shared stdlib corpus)

LEVELS = (1, 4, 16, 64)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(ckpt: Path, max_batch: int, max_queue: int, device: str) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gptlab", "serve", str(ckpt), "--port", str(port), "--max-batch", str(max_batch),
         "--max-queue", str(max_queue), "--device", device],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        if process.poll() is not None:
            raise SystemExit(f"gptlab serve exited with status {process.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise SystemExit("gptlab serve did not start within 120 s")
        time.sleep(0.2)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


async def load(url: str, clients: int, requests: int, prompts: list[list[int]], max_tokens: int) -> dict:
    """`clients` concurrent clients working through `requests` completions; each sends its next as soon as
    its last is answered (a 429 counts and moves on)."""
    import httpx

    latencies: list[float] = []
    tokens = refused = 0
    work = iter(range(requests))
    async with httpx.AsyncClient(base_url=url, timeout=3600, limits=httpx.Limits(max_connections=clients)) as http:

        async def client() -> None:
            nonlocal tokens, refused
            for i in work:
                body = {"prompt": prompts[i % len(prompts)], "max_tokens": max_tokens, "temperature": 1.0, "seed": i}
                start = time.perf_counter()
                answer = await http.post("/v1/completions", json=body)
                if answer.status_code == 429:
                    refused += 1
                    continue
                answer.raise_for_status()
                latencies.append(time.perf_counter() - start)
                tokens += answer.json()["usage"]["completion_tokens"]

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        wall = time.perf_counter() - start
    return {
        "clients": clients, "requests": requests, "refused_429": refused, "generated_tokens": tokens,
        "seconds": round(wall, 2), "tokens_per_s": round(tokens / wall, 1),
        "requests_per_s": round(len(latencies) / wall, 2),
        "p50_latency_s": round(percentile(latencies, 50), 3), "p99_latency_s": round(percentile(latencies, 99), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gpt2", help="gptlab preset for the model's shape (default gpt2)")
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=32, help="tokens generated per request (default 32)")
    parser.add_argument("--max-batch", type=int, default=16, help="the batched server's --max-batch (default 16)")
    parser.add_argument("--requests", type=int, default=16,
                        help="requests per level at least; 2 per client where there are more clients (default 16)")
    parser.add_argument("--device", default="cpu", help="the server's --device (default cpu)")
    args = parser.parse_args()

    import torch

    import gptlab
    from gptlab.model import GPT, preset
    from gptlab.tokenizer import train_tokenizer_on_texts

    tokenizer = train_tokenizer_on_texts(corpus(), 8192, progress=False)
    torch.manual_seed(0)
    model = GPT(preset(args.model, vocab_size=tokenizer.vocab_size))
    rng = random.Random(0)
    ordinary = [i for i in range(tokenizer.vocab_size) if i != tokenizer.eot_id]
    prompts = [[rng.choice(ordinary) for _ in range(args.prompt_tokens)] for _ in range(64)]
    queue = 4 * max(LEVELS)  # every client's request is accepted: the figures are throughput, not refusals

    def run(max_batch: int, levels: tuple[int, ...]) -> list[dict]:
        process, url = serve(ckpt, max_batch, queue, args.device)
        try:
            asyncio.run(load(url, 4, 8, prompts, 8))  # warm-up
            return [asyncio.run(load(url, n, max(args.requests, 2 * n), prompts, args.max_tokens)) for n in levels]
        finally:
            process.terminate()
            process.wait(timeout=60)

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = gptlab.save(Path(tmp) / "ckpt", model, tokenizer)
        batched = run(args.max_batch, LEVELS)
        [one_at_a_time] = run(1, (16,))
    at_16 = next(level for level in batched if level["clients"] == 16)
    speedup = at_16["tokens_per_s"] / one_at_a_time["tokens_per_s"]
    print(json.dumps({
        "model": f"{args.model} shape, random weights, {tokenizer.vocab_size}-token BPE", "params": model.num_params(),
        "device": args.device, "prompt_tokens": args.prompt_tokens, "max_tokens": args.max_tokens,
        "max_batch": args.max_batch, "levels": batched,
        "one_at_a_time_16_clients": one_at_a_time,
        "throughput_ratio_at_16_clients": round(speedup, 2), "goal": ">= 3x", "met": speedup >= 3,
    }, indent=2))


if __name__ == "__main__":
    main()
