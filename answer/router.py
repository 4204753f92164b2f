"""The router: classify a question as simple, complex or out-of-scope from rule-based features.

- out_of_scope: nothing was retrieved, the request is not a question about documents (write a poem,
  chit-chat), or no content word of the question appears in any passage. Answered with a decline and no
  model call.
- complex: several questions in one ("..., and when was it released?"), comparisons, "why"/"explain",
  or a long question. Served by the strong tier.
- simple: the rest. Served by the fast tier.

Rules first (the issue's order): a small-model classifier is only worth its seconds on 2 cores if it
measurably beats these on the golden set (benchmarks/answer.py prints the router's accuracy there).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum

from answer.providers.base import Tier


class Route(str, Enum):
    SIMPLE = "simple"
    COMPLEX = "complex"
    OUT_OF_SCOPE = "out_of_scope"

    @classmethod
    def parse(cls, value: "str | Route") -> "Route":
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown route {value!r}: valid routes are {', '.join(r.value for r in cls)}") from None


ROUTE_TIER: dict[Route, Tier | None] = {Route.SIMPLE: "fast", Route.COMPLEX: "strong", Route.OUT_OF_SCOPE: None}


@dataclass
class RouteDecision:
    route: Route
    reasons: list[str] = field(default_factory=list)
    # The tier that answers, where it is not the route's own (ATTEST_ANSWER_COMPLEX_TIER=fast).
    tier_override: Tier | None = None

    @property
    def tier(self) -> Tier | None:
        return self.tier_override or ROUTE_TIER[self.route]


_INTERROGATIVE = r"(what|which|how|when|where|who|whom|whose|why|whether|does|do|did|is|are|was|were|can|could|will)"
# "..., and how long does a full charge take?" / "and within how many days" / "and on what date"
_SECOND_QUESTION = re.compile(rf"\b(and|or|also|plus)\s+(?:\w+\s+){{0,2}}?{_INTERROGATIVE}\b", re.IGNORECASE)
_COMPARISON = re.compile(r"\b(compare|comparison|difference|differ|versus|vs\.?|better|worse|pros and cons|"
                         r"trade-?offs?)\b", re.IGNORECASE)
_EXPLAIN = re.compile(r"^\s*(why|explain|describe how|walk me through)\b|\bstep[- ]by[- ]step\b", re.IGNORECASE)
_OFF_TASK = re.compile(
    r"^\s*(hi|hello|hey|thanks|thank you|good (morning|afternoon|evening))\b[\s!.,?]*$"
    r"|\b(write|compose|generate|make up|tell me)\b.{0,30}\b(poem|story|essay|joke|song|haiku|limerick|code|"
    r"script|program|function)\b"
    r"|\btranslate\b.{0,40}\b(into|to)\b\s+\w+",
    re.IGNORECASE)
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset("""a an the of to in on at for and or is are was were be been being it its this that these those
    with by as from can could do does did how what which when where who whom whose why will would should shall
    may might must not no yes you your i me my we our there their they them he she his her have has had get
    any some many much more most about into than then so if also just only tell please""".split())
LONG_QUESTION_WORDS = 28


def content_words(text: str) -> set[str]:
    # Five-letter prefixes: a crude stemmer, enough to match "charging" with "charge" or "updated" with "update".
    return {w[:5] for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 1}


def classify(question: str, passages: list[str]) -> RouteDecision:
    """Route ``question`` given the retrieved passage texts."""
    if not passages:
        return RouteDecision(Route.OUT_OF_SCOPE, ["no passages were retrieved"])
    if _OFF_TASK.search(question):
        return RouteDecision(Route.OUT_OF_SCOPE, ["not a question about the documents"])
    words = content_words(question)
    corpus = set().union(*(content_words(p) for p in passages))
    if words and not (words & corpus):
        return RouteDecision(Route.OUT_OF_SCOPE, ["no word of the question appears in the retrieved passages"])

    reasons = []
    if question.count("?") > 1:
        reasons.append("several question marks")
    if _SECOND_QUESTION.search(question):
        reasons.append("a second question joined by a conjunction")
    if _COMPARISON.search(question):
        reasons.append("a comparison")
    if _EXPLAIN.search(question):
        reasons.append("asks for an explanation")
    if len(question.split()) > LONG_QUESTION_WORDS:
        reasons.append(f"longer than {LONG_QUESTION_WORDS} words")
    if reasons:
        return RouteDecision(Route.COMPLEX, reasons)
    return RouteDecision(Route.SIMPLE, ["one short factual question"])
