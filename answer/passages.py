"""The passages one answer is written from, numbered once.

The model reads passages [1]..[n] in this order. Its citations, the grounding stage's checks and citation
corrections, and the API's chunk ids all go through this one object, so a number means the same chunk
everywhere and no claim is checked against, or re-cited to, a passage the model did not read.

    passages = NumberedPassages(hits)        # retrieval Hits, best first: all of them are shown to the model
    passages.hit(2).id                       # the chunk behind [2]
    passages.chunk_ids([1, 7])               # ids of the numbers that exist: [hits[0].id]
    3 in passages                            # is [3] a passage the model read?
"""

from __future__ import annotations

from typing import Iterable, Iterator


class NumberedPassages:
    """Retrieval hits as the numbered passages of one prompt (1-based, in the order given)."""

    def __init__(self, hits: Iterable):
        self._hits = tuple(hits)

    @classmethod
    def of(cls, passages: "NumberedPassages | Iterable") -> "NumberedPassages":
        return passages if isinstance(passages, NumberedPassages) else cls(passages)

    def __len__(self) -> int:
        return len(self._hits)

    def __iter__(self) -> Iterator:
        """The hits, in passage order."""
        return iter(self._hits)

    def __contains__(self, number) -> bool:
        """Whether ``number`` names a passage the model was given."""
        return isinstance(number, int) and 1 <= number <= len(self._hits)

    def numbered(self) -> Iterator[tuple[int, object]]:
        """(passage number, hit) pairs."""
        return enumerate(self._hits, start=1)

    def hit(self, number: int):
        if number not in self:
            raise IndexError(f"passage {number} does not exist: only passages 1..{len(self._hits)} were given")
        return self._hits[number - 1]

    def chunk_ids(self, numbers: Iterable[int]) -> list[str]:
        """The chunk ids of ``numbers``, in order, leaving out numbers that name no passage."""
        return [self._hits[n - 1].id for n in numbers if n in self]
