"""Text and token ids as the server's clients see them."""

from __future__ import annotations

import codecs
import re

from gptlab.tokenizer import Tokenizer


class TokenText:
    """Encodes as Hugging Face tokenizers and vLLM's endpoints do: a special token's name in text
    (`<|endoftext|>`) stands for the special token, so lm-evaluation-harness's remote tokenizer finds
    the end-of-text id by encoding its name, and a prompt can start from it."""

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.special = tokenizer.special_tokens
        names = sorted(self.special, key=len, reverse=True)
        self._split = re.compile("(" + "|".join(map(re.escape, names)) + ")") if names else None

    def encode(self, text: str) -> list[int]:
        if self._split is None:
            return self.tokenizer.encode(text)
        ids: list[int] = []
        for i, part in enumerate(self._split.split(text)):
            if i % 2:
                ids.append(self.special[part])
            elif part:
                ids += self.tokenizer.encode(part)
        return ids

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)

    def piece(self, token: int) -> str:
        """One token as OpenAI's `tokens` and `top_logprobs` name it: its text, or for a token holding part
        of a character, its bytes as `bytes:\\xe2\\x80`, so that no two such tokens share a name."""
        data = self.tokenizer.decode_bytes([token])
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return "bytes:" + "".join(f"\\x{b:02x}" for b in data)

    def offsets(self) -> TextOffsets:
        return TextOffsets(self.tokenizer)


class TextOffsets:
    """OpenAI's `text_offset`: call with each token in turn for where its text begins, in characters.
    A character split across tokens counts where its last byte arrives."""

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.position = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def __call__(self, token: int) -> int:
        offset = self.position
        self.position += len(self._decoder.decode(self.tokenizer.decode_bytes([token])))
        return offset
