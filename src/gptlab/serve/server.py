"""A running server: the port bound first (a bad address fails before the model loads), then the model, the app,
and uvicorn serving until stopped."""

from __future__ import annotations

import os
from pathlib import Path

import uvicorn

from gptlab.serve.app import create_app
from gptlab.serve.config import ServeConfig
from gptlab.serve.listen import listen


class Server:
    """`checkpoint` served with `config`: bound and loaded when made, answering requests while `run` blocks."""

    def __init__(self, checkpoint: str | os.PathLike, config: ServeConfig) -> None:
        self.config = config
        self._socket = listen(config.host, config.port)
        try:
            lm = config.load(checkpoint)
        except BaseException:
            self._socket.close()
            raise
        self.model_name = config.model_name or Path(checkpoint).resolve().name
        app = create_app(lm, model_name=self.model_name, max_batch=config.max_batch, max_queue=config.max_queue,
                         api_key=config.api_key, max_body_bytes=config.max_body_bytes)
        self._uvicorn = uvicorn.Server(uvicorn.Config(app, log_level="info", timeout_graceful_shutdown=5))

    @property
    def url(self) -> str:
        """The API's base URL."""
        return f"http://{self.config.host}:{self.config.port}/v1"

    @property
    def started(self) -> bool:
        """Whether it answers requests yet (`run` has started uvicorn)."""
        return self._uvicorn.started

    def run(self) -> None:
        """Serve until `stop()` (from another thread) or Ctrl-C."""
        self._uvicorn.run(sockets=[self._socket])

    def stop(self) -> None:
        """Finish the requests in flight and make `run` return."""
        self._uvicorn.should_exit = True
