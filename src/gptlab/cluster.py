"""Joining the Ray cluster that the data stages and the scale sweep run on, or starting a local one.

Ray itself retries an address that does not answer for many minutes, printing only its own lines.
Here an address gets TIMEOUT_ENV seconds (DEFAULT_TIMEOUT unless set), to accept a connection and
then to let Ray join it; past that it is one error line naming the address.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from gptlab.errors import GptlabError

ADDRESS_ENV = "RAY_ADDRESS"
TIMEOUT_ENV = "GPTLAB_RAY_TIMEOUT"
DEFAULT_TIMEOUT = 30.0
"""Seconds: a cluster that answers at all answers within a few; a local start is not bounded by it."""
BACKENDS = ("local", "ray")
"""Where work runs: on this machine, or on Ray (the cluster at RAY_ADDRESS, else a local one)."""


def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise GptlabError(f"the executor must be {' or '.join(BACKENDS)}, got {backend!r}")


def connect_ray() -> Any:
    """The `ray` module, joined to the cluster at RAY_ADDRESS, or to a local one started now when that is
    unset; once per process (later calls return at once)."""
    try:
        import ray
    except ImportError:
        raise GptlabError("the ray executor needs Ray: pip install 'gptlab[ray]' (or pip install ray)") from None
    if ray.is_initialized():
        return ray
    # Ray's own lines (joining, a thread without a SIGTERM handler) would stand beside gptlab's one-line errors
    options = {"log_to_driver": False, "include_dashboard": False, "logging_level": logging.ERROR}
    address = os.environ.get(ADDRESS_ENV) or None
    if address is None:
        ray.init(**options)  # a local cluster: Ray's own start-up limits apply
        return ray
    deadline = time.monotonic() + timeout()
    _reach(ray, address, deadline)
    _within(lambda: ray.init(address=address, **options), address, deadline)
    return ray


def timeout() -> float:
    """Seconds an address gets to answer: TIMEOUT_ENV, else DEFAULT_TIMEOUT."""
    text = os.environ.get(TIMEOUT_ENV)
    if text is None:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise GptlabError(f"{TIMEOUT_ENV} must be a positive number of seconds, got {text!r}")
    return seconds


def _reach(ray: Any, address: str, deadline: float) -> None:
    """Open and close a TCP connection to the host and port Ray will connect to (an address without them,
    such as `auto`, is left to Ray), so that a wrong or dead address fails at once, or at the deadline."""
    scheme, _, rest = address.rpartition("://")
    try:
        where = urlsplit("//" + rest)
        host, port = where.hostname, where.port
    except ValueError:  # a port that is not a number
        raise GptlabError(f"{ADDRESS_ENV}={address} is not an address (HOST:PORT or ray://HOST:PORT)") from None
    if not host or port is None:
        return
    if not scheme and host in ("localhost", "127.0.0.1", "::1"):
        host = ray.util.get_node_ip_address()  # Ray joins a cluster on this machine at its network address
    try:
        socket.create_connection((host, port), timeout=max(deadline - time.monotonic(), 0.1)).close()
    except TimeoutError:
        raise GptlabError(
            f"cannot reach the Ray cluster at {address} ({ADDRESS_ENV}): no answer within {timeout():g} s; "
            f"start it, fix {ADDRESS_ENV}, or set {TIMEOUT_ENV} to wait longer"
        ) from None
    except OSError as e:
        raise GptlabError(
            f"cannot reach the Ray cluster at {address} ({ADDRESS_ENV}): {e.strerror or e}; start it or fix {ADDRESS_ENV}"
        ) from None


def _within(join: Callable[[], object], address: str, deadline: float) -> None:
    """Run `join` until the deadline. It runs in a daemon thread that is left behind when the deadline
    passes: Ray's connection loop cannot be interrupted, and the process ends on the error anyway. (Ray,
    joined from a thread, says so once and leaves the process's SIGTERM handler as it was.)"""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            join()
        except BaseException as e:  # reported below, in the caller's thread
            failure.append(e)

    thread = threading.Thread(target=run, name="gptlab-ray-join", daemon=True)
    thread.start()
    thread.join(max(deadline - time.monotonic(), 0.1))
    if thread.is_alive():
        raise GptlabError(
            f"the Ray cluster at {address} ({ADDRESS_ENV}) accepts connections but did not let this process join "
            f"within {timeout():g} s; check that it is a Ray cluster's address, or set {TIMEOUT_ENV} to wait longer"
        )
    if failure:
        message = " ".join(str(failure[0]).split()) or type(failure[0]).__name__
        raise GptlabError(f"cannot join the Ray cluster at {address} ({ADDRESS_ENV}): {message}")
