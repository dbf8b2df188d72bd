"""GPT-2's reversible byte <-> unicode table.

Byte-level BPE files (vocab.json, merges.txt, encoder.json, vocab.bpe) store tokens as text, so
GPT-2 gives every byte a visible, non-whitespace character: printable bytes stand for themselves
and the other 68 bytes borrow chr(256 + n), n counting them in byte order. Space becomes "Ġ".
"""

from __future__ import annotations

_PRINTABLE = (*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), 256))
_OTHERS = tuple(b for b in range(256) if b not in set(_PRINTABLE))

# The order GPT-2's encoder.json gives the 256 byte tokens ids 0..255: printable bytes first.
BYTE_ORDER: tuple[int, ...] = _PRINTABLE + _OTHERS

BYTE_TO_UNICODE: dict[int, str] = {
    **{b: chr(b) for b in _PRINTABLE},
    **{b: chr(256 + n) for n, b in enumerate(_OTHERS)},
}

# str.translate table taking a token's characters to latin-1 code points (one per byte). Code
# points below 256 that are not table characters map to U+FFFF so that latin-1 encoding fails on
# them, exactly like any other character outside the table.
_TO_LATIN1: dict[int, int] = {
    **{c: 0xFFFF for c in range(256)},
    **{ord(u): b for b, u in BYTE_TO_UNICODE.items()},
}


def token_to_bytes(token: str) -> bytes:
    """The bytes a byte-level token string stands for; ValueError if it has a foreign character."""
    try:
        return token.translate(_TO_LATIN1).encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"{token!r} is not a byte-level token string") from None
