"""The answer's readable text, pulled out of the model's JSON while it streams.

The model writes ``{"answerable": ..., "sentences": [{"text": "...", "passages": [1]}]}`` (answer/output.py).
A reader wants the sentences, each followed by its ``[n]`` markers, as they are written:

    stream = AnswerTextStream()
    stream.feed('{"answerable": true, "sentences": [{"text": "It la')   # -> 'It la'
    stream.feed('sts two years.", "passages": [1]}]}')                    # -> 'sts two years. [1]'

Parsing is pydantic-core's partial JSON (``allow_partial="trailing-strings"``) over the text received so
far; a sentence's markers are shown once its passage list is complete (the next sentence has begun, or the
whole object has arrived), so a number is never shown half-written ("[1" of "[12]"). What has been shown is
never taken back: each piece extends the text before it. ``complete`` lists the sentences whose text and
passage list are final, as ``(text, passages)``: the question path verifies the first one while the model is
still writing the rest.
"""

from __future__ import annotations

from pydantic_core import from_json


class AnswerTextStream:
    def __init__(self):
        self._raw: list[str] = []
        self.text = ""  # everything returned so far
        self.complete: list[tuple[str, list[int]]] = []  # sentences whose text and passages are final
        self.finished = False  # the whole object has arrived

    def feed(self, delta: str) -> str:
        self._raw.append(delta)
        readable = self._readable("".join(self._raw))
        if readable is None or not readable.startswith(self.text):
            return ""
        piece, self.text = readable[len(self.text):], readable
        return piece

    def _readable(self, raw: str) -> str | None:
        start = raw.find("{")
        if start < 0:
            return None
        body = raw[start:]
        try:
            parsed, whole = from_json(body), True
        except ValueError:
            try:
                parsed, whole = from_json(body, allow_partial="trailing-strings"), False
            except ValueError:  # mid-escape, or text after the object (a code fence): wait for more
                return None
        sentences = parsed.get("sentences") if isinstance(parsed, dict) else None
        if not isinstance(sentences, list):
            return None
        parts = []
        complete = []
        for index, sentence in enumerate(sentences):
            if not isinstance(sentence, dict):
                continue
            text = sentence.get("text")
            if not isinstance(text, str):
                break
            final = whole or index < len(sentences) - 1
            passages = sentence.get("passages") if final else None
            marks = "".join(f"[{n}]" for n in passages if isinstance(n, int)) if isinstance(passages, list) else ""
            parts.append(f"{text} {marks}" if marks else text)
            if final and isinstance(passages, list):
                complete.append((text, [n for n in passages if isinstance(n, int)]))
        if len(complete) >= len(self.complete):
            self.complete = complete
        self.finished = whole
        return " ".join(parts)
