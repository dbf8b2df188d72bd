"""The engine thread and its bridge to asyncio.

The engine is synchronous and not thread-safe, so one thread owns it: it runs the commands the event
loop posts (add, cancel, score), steps the engine while it has work, and hands each step's outputs back
to the event loop in one `call_soon_threadsafe`. The event loop side admits work against a fixed
capacity (KV-cache slots plus a bounded queue), so overload is a prompt 429 rather than a growing
backlog, and a request that ends early, however it ends, cancels what it still has in the engine.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from gptlab.engine import Engine, TokenOutput
from gptlab.errors import GptlabError
from gptlab.generation.params import SamplingParams
from gptlab.serve.metrics import Metrics
from gptlab.serve.protocol import ApiError

log = logging.getLogger("gptlab.serve")

RETRY_AFTER_S = 1


class _Sequence:
    """One engine request of a job; `rid` is the engine's id, set by the engine thread when it is added."""

    def __init__(self, job: Job, index: int):
        self.job = job
        self.index = index
        self.rid: int | None = None


class Job:
    """One HTTP request's work: its sequences' outputs arrive on one queue as (index, output).

    Holds its share of the worker's capacity until `close()`, which also cancels whatever is still
    running: call it however the request ends (finished, failed, client gone).
    """

    def __init__(self, worker: Worker, size: int):
        self.worker = worker
        self.size = size
        self.queue: asyncio.Queue[tuple[int, TokenOutput | BaseException]] = asyncio.Queue()
        self.sequences: list[_Sequence] = []
        self.closed = False

    def generate(self, index: int, prompt: list[int], params: SamplingParams) -> None:
        sequence = _Sequence(self, index)
        self.sequences.append(sequence)
        self.worker.post(lambda: self.worker.add(sequence, prompt, params))

    async def score(self, prompt: list[int], top_n: int) -> list[tuple[float, list[tuple[int, float]]] | None]:
        """The engine's `score` (echo), run on the engine thread between steps."""
        future = asyncio.get_running_loop().create_future()
        self.worker.post(lambda: self.worker.score(future, prompt, top_n))
        return await future

    async def outputs(self) -> AsyncIterator[tuple[int, TokenOutput]]:
        """Every generated token of every sequence, as it arrives, until all have finished."""
        running = len(self.sequences)
        while running:
            index, output = await self.queue.get()
            if isinstance(output, BaseException):
                raise output
            running -= output.finish_reason is not None
            yield index, output

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.worker.outstanding -= self.size
        if self.sequences:
            self.worker.post(lambda: self.worker.cancel(self.sequences))


class Worker:
    """Owns the engine and the thread that drives it."""

    def __init__(self, engine: Engine, max_queue: int, metrics: Metrics):
        self.engine = engine
        self.capacity = engine.max_batch + max_queue
        self.metrics = metrics
        metrics.capacity.set(self.capacity)
        self.outstanding = 0  # sequences admitted and not yet closed; event-loop side only
        self.failure: BaseException | None = None  # why the engine thread died, if it did
        self._commands: list[Callable[[], None]] = []
        self._wake = threading.Condition()
        self._stopping = False
        self._live: dict[int, _Sequence] = {}  # engine thread only: engine id -> running sequence
        self._deliveries: list[tuple[Any, Any]] = []  # engine thread only: what goes back after this round
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # event-loop side

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="gptlab-engine", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout=30)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def job(self, size: int) -> Job:
        """Admit a request needing `size` sequences, or refuse it: 429 (with Retry-After) while full."""
        if not self.alive:
            raise ApiError(503, f"the engine is not running ({self.failure or 'stopped'})", type="server_error")
        if size > self.capacity:
            raise ApiError(400, f"the request needs {size} sequences (prompts x n); this server runs at most "
                                f"{self.capacity} at once", param="n")
        if self.outstanding + size > self.capacity:
            raise ApiError(429, f"the server is at capacity ({self.capacity} sequences running or queued); retry shortly",
                           type="rate_limit_error", code="queue_full", headers={"Retry-After": str(RETRY_AFTER_S)})
        self.outstanding += size
        return Job(self, size)

    def post(self, command: Callable[[], None]) -> None:
        with self._wake:
            self._commands.append(command)
            self._wake.notify()

    # engine-thread side

    def add(self, sequence: _Sequence, prompt: list[int], params: SamplingParams) -> None:
        try:
            sequence.rid = self.engine.add(prompt, params)
        except GptlabError as e:
            self._deliveries.append((sequence, ApiError(400, str(e), param="prompt")))
            return
        except Exception as e:  # noqa: BLE001 - reported to the request; the server keeps serving
            log.exception("adding a request failed")
            self._deliveries.append((sequence, _failed(e)))
            return
        self._live[sequence.rid] = sequence

    def cancel(self, sequences: list[_Sequence]) -> None:
        for sequence in sequences:
            if self._live.pop(sequence.rid, None) is not None:
                self.engine.cancel(sequence.rid)

    def score(self, future: asyncio.Future, prompt: list[int], top_n: int) -> None:
        try:
            result: Any = self.engine.score(prompt, top_n)
        except GptlabError as e:
            result = ApiError(400, str(e), param="prompt")
        except Exception as e:  # noqa: BLE001 - reported to the request; the server keeps serving
            log.exception("scoring failed")
            result = ApiError(500, f"scoring failed: {e}", type="server_error")
        self._deliveries.append((future, result))

    def _run(self) -> None:
        try:
            while True:
                with self._wake:
                    if not (self._commands or self._stopping or self.engine.has_work):
                        self.metrics.idle()
                    while not (self._commands or self._stopping or self.engine.has_work):
                        self._wake.wait()
                    if self._stopping:
                        return
                    commands, self._commands = self._commands, []
                for command in commands:
                    try:
                        command()
                    except Exception:  # noqa: BLE001 - add and score answer their own requests; keep serving
                        log.exception("an engine command failed")
                if self.engine.has_work:
                    self._step()
                self.metrics.waiting.set(self.engine.num_waiting)
                self.metrics.running.set(self.engine.num_running)
                if self._deliveries:
                    self._loop.call_soon_threadsafe(_deliver, self._deliveries)
                    self._deliveries = []
        except BaseException as e:
            self.failure = e
            log.exception("the engine thread stopped")
            raise

    def _step(self) -> None:
        try:
            outputs = self.engine.step()
        except Exception as e:  # noqa: BLE001 - the batch's forward pass failed: fail the requests in flight,
            log.exception("engine step failed")  # keep serving the next ones
            for rid, sequence in self._live.items():
                self.engine.cancel(rid)
                self._deliveries.append((sequence, _failed(e)))
            self._live.clear()
            return
        for output in outputs:
            sequence = self._live[output.request_id]
            if output.finish_reason is not None:
                del self._live[output.request_id]
            if output.error is not None:
                log.error("a request failed", exc_info=output.error)
                self._deliveries.append((sequence, _failed(output.error)))
            else:
                self._deliveries.append((sequence, output))
        self.metrics.generated(sum(output.error is None for output in outputs))


def _failed(error: Exception) -> ApiError:
    """A request the server could not complete: OpenAI's 500."""
    return ApiError(500, f"generation failed: {type(error).__name__}: {error}", type="server_error")


def _deliver(deliveries: list[tuple[Any, Any]]) -> None:
    """On the event loop: outputs to their jobs' queues, score results to their futures."""
    for target, item in deliveries:
        if isinstance(target, asyncio.Future):
            if target.done():  # the request went away while it was being scored
                continue
            if isinstance(item, BaseException):
                target.set_exception(item)
            else:
                target.set_result(item)
        elif not target.job.closed:
            target.job.queue.put_nowait((target.index, item))
