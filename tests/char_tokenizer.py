"""A character-level stand-in tokenizer for task tests."""

from __future__ import annotations


class CharTokenizer:
    """One token per character, with ``decode``: fast, and lengths easy to reason about by hand."""

    class _Encoding:
        def __init__(self, ids):
            self.input_ids = ids

    def __call__(self, text):
        return self._Encoding([ord(c) for c in text])

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(i) for i in ids)
