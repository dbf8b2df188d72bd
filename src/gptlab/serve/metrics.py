"""Prometheus metrics at GET /metrics: load (queue depth, running requests), throughput, latency.

Each app has its own registry, so several servers can live in one process (the tests start a few).
"""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.waiting = Gauge("gptlab_requests_waiting", "Sequences queued for a KV-cache slot", registry=r)
        self.running = Gauge("gptlab_requests_running", "Sequences decoding in the batch", registry=r)
        self.capacity = Gauge("gptlab_queue_capacity", "Sequences accepted at once (max batch + max queue)", registry=r)
        self.prompt_tokens = Counter("gptlab_prompt_tokens", "Prompt tokens received", registry=r)
        self.generated_tokens = Counter("gptlab_generated_tokens", "Tokens generated", registry=r)
        self.tokens_per_second = Gauge(
            "gptlab_generation_tokens_per_second", "Tokens generated per second over the last second or so", registry=r
        )
        self.requests = Counter("gptlab_requests", "Requests answered", ["endpoint", "status"], registry=r)
        self.latency = Histogram(
            "gptlab_request_latency_seconds", "Time from request to the last byte of the answer", ["endpoint"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.first_token = Histogram(
            "gptlab_time_to_first_token_seconds", "Time from request to its first generated token", ["endpoint"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self._window_start = time.perf_counter()
        self._window_tokens = 0

    def generated(self, tokens: int) -> None:
        """Count tokens from the engine thread, refreshing the tokens-per-second gauge about once a second."""
        self.generated_tokens.inc(tokens)
        self._window_tokens += tokens
        now = time.perf_counter()
        if now - self._window_start >= 1.0:
            self.tokens_per_second.set(self._window_tokens / (now - self._window_start))
            self._window_start, self._window_tokens = now, 0

    def idle(self) -> None:
        self.tokens_per_second.set(0)
        self._window_start, self._window_tokens = time.perf_counter(), 0

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
