"""The server's listening socket, bound before the server announces its address."""

from __future__ import annotations

import socket

from gptlab.errors import GptlabError


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to `host`:`port` (the server starts listening on it): a port out of range, a host
    that does not resolve or an address already in use is one clear error, before any work starts."""
    if not 1 <= port <= 65535:
        raise GptlabError(f"port must be in 1..65535, got {port}")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as e:
        raise GptlabError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    # the protocol given explicitly: asyncio sets TCP_NODELAY only on sockets that say they are TCP
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a restart need not wait
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise GptlabError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return sock
