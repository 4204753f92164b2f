"""Versioned prompt templates: ``answer/prompts/<name>@<version>.txt``.

A template file has a ``[system]`` and a ``[user]`` section; lines before the first section that start
with ``#`` are comments. Placeholders are ``{{passages}}`` and ``{{question}}`` (double braces, so the JSON
examples in a prompt need no escaping). Every answer records the ``name@version`` it was built with; a
changed prompt is a new version, never an edit of an old file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from answer.providers.base import Message

PROMPTS_DIR = Path(__file__).resolve().parent
_PROMPT_ID = re.compile(r"^(?P<name>[a-z][a-z0-9-]*)@(?P<version>[0-9]+)$")
_SECTION = re.compile(r"^\[(system|user)\]\s*$", re.MULTILINE)
# Passage text may not open or close a passage element: that is how a document would break out of it.
_PASSAGE_TAG = re.compile(r"<\s*/?\s*passage", re.IGNORECASE)


class PromptError(ValueError):
    pass


@dataclass(frozen=True)
class PassageView:
    """What the model sees of one passage. ``source`` is the document's id (its path relative to the
    corpus root), never the server's file path: answers must not depend on where the corpus sits on
    disk, and a remote provider has no business seeing the server's paths."""

    number: int
    source: str
    page: int | None
    text: str


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    version: int
    system: str
    user: str

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"

    def render(self, question: str, passages: list[PassageView], instruction: str | None = None) -> list[Message]:
        """The messages for one call. ``instruction`` (grounding's stricter retry: which claims failed) goes
        last in the user message, after the question, where a small model still pays attention to it."""
        block = "\n\n".join(format_passage(p) for p in passages) or "(no passages)"
        # Replace the question last, so a question containing "{{passages}}" stays literal.
        user = self.user.replace("{{passages}}", block).replace("{{question}}", " ".join(question.split()))
        if instruction and instruction.strip():
            user = f"{user}\n\n{instruction.strip()}"
        return [Message("system", self.system), Message("user", user)]


def format_passage(passage: PassageView) -> str:
    text = _PASSAGE_TAG.sub("[passage", passage.text.strip())
    page = f' page="{passage.page}"' if passage.page else ""
    source = passage.source.replace('"', "'")
    return f'<passage id="{passage.number}" source="{source}"{page}>\n{text}\n</passage>'


def available_prompts() -> list[str]:
    return sorted(p.stem for p in PROMPTS_DIR.glob("*@*.txt"))


@lru_cache(maxsize=32)
def load_prompt(prompt_id: str, extra_dir: str | None = None) -> PromptTemplate:
    """Load ``name@version`` from ``extra_dir`` (``ATTEST_PROMPTS_DIR``: a user's own prompts, or an
    evaluation's candidate) when it has that file, else from this folder."""
    match = _PROMPT_ID.match(prompt_id)
    if not match:
        raise PromptError(f"invalid prompt id {prompt_id!r}: expected name@version, e.g. answer@1")
    path = PROMPTS_DIR / f"{prompt_id}.txt"
    if extra_dir and (Path(extra_dir) / f"{prompt_id}.txt").is_file():
        path = Path(extra_dir) / f"{prompt_id}.txt"
    if not path.is_file():
        raise PromptError(f"no prompt {prompt_id!r}: available prompts are {', '.join(available_prompts())}")
    text = path.read_text(encoding="utf-8")
    pieces = _SECTION.split(text)
    sections = {pieces[i]: pieces[i + 1].strip() for i in range(1, len(pieces) - 1, 2)}
    if set(sections) != {"system", "user"}:
        raise PromptError(f"{path} needs exactly one [system] and one [user] section")
    if "{{question}}" not in sections["user"] or "{{passages}}" not in sections["user"]:
        raise PromptError(f"{path}: the [user] section must contain {{{{passages}}}} and {{{{question}}}}")
    return PromptTemplate(match["name"], int(match["version"]), sections["system"], sections["user"])
