"""Token bytes to text that is safe to show while generating.

Streaming must never emit half a UTF-8 character nor text that later turns out to begin a stop
string, so each request keeps an incremental UTF-8 decoder and holds back any tail that could still
grow into a stop string.
"""

from __future__ import annotations

import codecs


class TextStream:
    """Turns one row's token bytes into safe-to-show text pieces."""

    def __init__(self, stop: tuple[str, ...]):
        self.stop = stop
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.held = ""
        self.stopped = False

    def push(self, data: bytes) -> str:
        self.held += self.decoder.decode(data)
        hits = [i for i in (self.held.find(s) for s in self.stop) if i >= 0]
        if hits:
            self.stopped = True
            piece, self.held = self.held[: min(hits)], ""
            return piece
        keep = max((_overlap(self.held, s) for s in self.stop), default=0)
        piece, self.held = self.held[: len(self.held) - keep], self.held[len(self.held) - keep :]
        return piece

    def close(self) -> str:
        if self.stopped:
            return ""
        piece, self.held = self.held + self.decoder.decode(b"", final=True), ""
        return piece


def _overlap(text: str, stop: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `stop`."""
    for n in range(min(len(text), len(stop) - 1), 0, -1):
        if text.endswith(stop[:n]):
            return n
    return 0
