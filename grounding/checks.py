"""Deterministic checks: what a claim states that its sources do not, found without a model.

Each check is cheap (microseconds) and explainable, and together they cover what small learned verifiers
miss. Every one is a single entry of ``CHECKS``: a name, its kind (a ``feature`` of the calibrated score, a
``veto`` that alone makes a claim unsupported and is reported under the check's name, or an ``answer``
requirement that at least one served claim of an answer must meet), the signals it writes, and one function
over the parsed claim and its ``Sources``:

  check                              kind     signals
  number_absent_from_sources         veto     numbers, numbers_missing   (setting: number veto)
  number_conflict                    feature  number_conflict            "3 years" where the evidence says "2 years"
  names_absent_from_evidence         feature  names, names_missing, names_missing_frac   (K2, PPM1D, p53)
  negation_mismatch                  feature  claim_negated, negation_mismatch
  direction_conflict                 feature  direction_conflict         "increases" against "decreases"
  quantity_of_another_kind           veto     unit_mismatch              "weighs 6240 x 4160 pixels" (number veto)
  currency_absent_from_sources       veto     currency_mismatch          "149 euros" from a USD list (number veto)
  number_stated_as_another_quantity  veto     quantity_kind_conflict     "USD 35" from "35 °C" (number veto)
  word_overlap                       feature  overlap_best, overlap_evidence, overlap_context
  term_absent_from_sources           veto     terms_absent_from_sources  needs every retrieved passage (term veto)
  restates_question                  veto     restates_question          needs the question; always on
  incomplete_claim                   veto     incomplete                 "Revenue came in at." (needs the question)
  supplies_what_is_asked             answer   supplies_asked             a who/when/how-much question's answer names one

A text is parsed once (``Parsed``): its content words (stemmed with BM25's stemmer), numbers, quantities as
(value, unit, kind) with one number pattern and one currency vocabulary, names and negation. Which checks run
depends on what the caller has: ``deterministic_signals(claim, evidence, context)`` runs those over the evidence
and its passages (the calibration's inputs: grounding/training/prepare.py); the scorer (grounding/verifier.py)
also passes every retrieved passage, which adds the term check; the decision (grounding/decide.py) runs the
question checks on the claims the scorer supported (``question_vetoes``). ``veto_reasons`` names the vetoes a
claim's signals fire; ``grounding_number_veto`` / ``grounding_term_veto`` turn off a veto's setting family.

Adding a check: write its function, add one ``Check`` to ``CHECKS``, and a test in tests/test_grounding.py. A
veto acts at once. A feature moves the score only once a calibration profile lists it and is refitted
(grounding/calibrate.py ``PROFILE_FEATURES``, benchmarks/grounding.py --write-calibration).
benchmarks/signals_identity.py shows whether a change moved any signal on SciFact and the demo answers.

    signals = deterministic_signals(claim, evidence_sentences, passage_texts)
    veto_reasons(signals)   # ["number_absent_from_sources", ...]
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Callable, Literal, Sequence

from retrieval.bm25 import stem

# ---- vocabularies -------------------------------------------------------------------------------------------
_NUMBER_WORDS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
    "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12", "thirteen": "13", "fourteen": "14",
    "fifteen": "15", "sixteen": "16", "seventeen": "17", "eighteen": "18", "nineteen": "19", "twenty": "20",
    "thirty": "30", "forty": "40", "fifty": "50", "sixty": "60", "seventy": "70", "eighty": "80", "ninety": "90",
    "hundred": "100", "thousand": "1000", "million": "1000000", "half": "0.5", "once": "1", "twice": "2",
    "single": "1", "double": "2", "triple": "3", "dozen": "12",
}
# Grounding's own stop words, not BM25's (retrieval/bm25.py): BM25 also drops direction words the checks
# compare (up, down, above, below) and keeps hedges (may, might, must); the overlap signals were calibrated
# with this list. Only the stemmer is shared.
_STOP = frozenset("""a an the of to in on at for and or is are was were be been being it its this that these those
    with by as from can could do does did has have had how what which when where who why i you your we our they
    their them he she his her than then there here also into about over under after before between during
    such may might will would should must shall any all some more most other only same so very just""".split())
_WORD = re.compile(r"[a-z0-9]+(?:[.'-][a-z0-9]+)*")
_NEGATION = re.compile(
    r"\b(not|no|never|none|nor|neither|without|cannot|can't|won't|don't|doesn't|didn't|isn't|aren't|wasn't|"
    r"weren't|hasn't|haven't|hadn't|shouldn't|wouldn't|couldn't|fails?|failed|lacks?|lacking|absence|absent|"
    r"unable|unaffected|insufficient|neither)\b", re.I)
# Direction words: the claim using one while the evidence uses only its opposite is a contradiction cue.
_OPPOSITES = [
    ("increase", "decrease"), ("increase", "reduce"), ("increase", "lower"), ("higher", "lower"),
    ("more", "less"), ("more", "fewer"), ("greater", "smaller"), ("greater", "less"), ("larger", "smaller"),
    ("positive", "negative"), ("promote", "inhibit"), ("promote", "suppress"), ("activate", "inhibit"),
    ("enhance", "impair"), ("enhance", "reduce"), ("improve", "worsen"), ("gain", "loss"), ("up", "down"),
    ("elevate", "reduce"), ("upregulate", "downregulate"), ("induce", "inhibit"), ("accelerate", "slow"),
    ("before", "after"), ("above", "below"), ("maximum", "minimum"), ("include", "exclude"),
    ("allow", "prevent"), ("supported", "unsupported"), ("compatible", "incompatible"), ("longer", "shorter"),
    ("faster", "slower"), ("early", "late"), ("benefit", "harm"), ("risk", "protect"), ("rise", "fall"),
]
_SALIENT = re.compile(r"\b(?:[A-Z][a-zA-Z0-9]*[A-Z0-9][a-zA-Z0-9-]*|[a-zA-Z]+\d[a-zA-Z0-9-]*|[A-Z][a-z]{2,}"
                      r"|[a-zA-Z]{2,}(?:-[a-zA-Z0-9]+)+)\b")

# One number pattern: digits with thousands commas and a decimal part ("9,999", "1,200.50", "0.5"), signed,
# not glued to a word or a decimal point before it.
_NUMBER = re.compile(r"(?<![\w.])([-+]?)(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)")
# Digits that belong to a name or code, not a quantity: "CTLA-4", "OCT3/4", "A-769662", "3T3", "1.2.3".
_IN_NAME_BEFORE = re.compile(r"(?:[A-Za-z][-/]|[A-Za-z0-9]/)$")
_IN_NAME_AFTER = re.compile(r"[A-Za-z]+\d|[.,]?\d")
# A unit right after a number ("5 kg", "76%", "35 °C", "3 per cent").
_UNIT_AFTER = re.compile(r"\s?(°\s?[CF]\b|%|per cent|[a-zA-Z]{1,12})")
# Number words with a unit ("two years"): common in generated answers.
_SPELLED = re.compile(r"\b(" + "|".join(_NUMBER_WORDS) + r")\s+([a-z]{2,12})\b")

# One currency vocabulary: ISO code -> how texts write it (codes and symbols, names as whole words, any case).
# A bare "dollar" counts as USD; "pound" alone is also a weight, so only "pounds sterling", GBP and £ are GBP.
CURRENCIES = {
    "usd": (r"USD|US\$|dollars?", r"\$"),
    "eur": (r"EUR|euros?", "€"),
    "gbp": (r"GBP|pounds? sterling|sterling", "£"),
    "jpy": (r"JPY|yen", "¥"),
    "chf": (r"CHF|Swiss francs?", ""),
}
_CURRENCY = re.compile("|".join(
    f"(?P<{code}>(?<![A-Za-z])(?:{words})(?![A-Za-z])" + (f"|{signs})" if signs else ")")
    for code, (words, signs) in CURRENCIES.items()), re.I)
_CURRENCY_BEFORE = re.compile(f"(?:{_CURRENCY.pattern})\\s?$", re.I)  # "USD 79", "$49", "EUR 1,200"

# The kinds of quantity, by unit (stemmed). Every currency of CURRENCIES is money too. "in" after a number is
# a unit only sometimes ("2 in stock", "5 in the box"): it has no kind.
_UNIT_KINDS = {
    "mass": {"g", "gram", "kg", "kilogram", "lb", "pound", "oz", "ounc", "mg"},
    "time": {"s", "sec", "second", "min", "minut", "h", "hr", "hour", "day", "week", "month", "year", "ms",
             "millisecond"},
    "money": {"cent"},
    "length": {"mm", "cm", "m", "km", "inch", "ft", "foot", "feet", "metr", "millimetr", "centimetr"},
    "resolution": {"pixel", "px", "dot", "mp", "megapixel"},
    "data": {"kb", "mb", "gb", "tb", "byte", "bit", "mbps", "gbps"},
    "frequency": {"hz", "khz", "mhz", "ghz", "fps"},
    "temperature": {"°c", "°f", "celsius", "fahrenheit", "kelvin"},
}
_KIND_OF_UNIT = {unit: kind for kind, units in _UNIT_KINDS.items() for unit in units}
# A measuring verb and the kinds of quantity it can take ("costs 2 hours of work" is English too).
_MEASURE_VERBS = [
    (re.compile(r"\b(weighs?|weighing|weighed)\b", re.I), {"mass"}),
    (re.compile(r"\b(lasts?|lasted|lasting)\b", re.I), {"time"}),
    (re.compile(r"\b(costs?|costing|priced)\b", re.I), {"money", "time"}),
]
# A question asking for something (not yes/no): a wh-word within its first few words ("In which ...").
_WH_QUESTION = re.compile(r"^\W*(?:\w+\W+){0,3}?(what|which|who|whom|whose|when|where|why|how)\b", re.I)
# What a question asks for, when it asks for something an answer must name: a time, a quantity, a person or
# a place. The first that matches decides ("How many years ..." asks for a number).
_ASKS = [
    ("quantity", re.compile(r"\bhow (?:many|much|long|old|far|big|large|tall|high|fast|heavy|often|deep|wide)\b"
                            r"|\bwhat (?:percentage|percent|number|amount|proportion|fraction|size)\b", re.I)),
    ("time", re.compile(r"^\W*(?:\w+\W+){0,2}?(?:when\b|what (?:year|date|day|month|decade|century)\b"
                        r"|(?:in|on) (?:what|which) (?:year|date|day|month|decade|century)\b)", re.I)),
    ("person", re.compile(r"^\W*(?:\w+\W+){0,2}?(?:who|whom|whose)\b", re.I)),
    ("place", re.compile(r"^\W*(?:\w+\W+){0,2}?where\b", re.I)),
]
# A quantity question about a price ("How much does a spare battery cost?"): the answer is an amount of money,
# not any number ("10 seconds").
_ASKS_MONEY = re.compile(r"\b(?:costs?|price[sd]?|fees?|pay|paid|charged?\s+for)\b", re.I)
# Words that say when without a number: a month or season ("in March"; "may" is left out, a verb too), or a
# time relative to an event ("on the day of purchase", "after registration", "within a week").
_TIME_WORDS = re.compile(r"\b(?:january|february|march|april|june|july|august|september|october|november|"
                         r"december|spring|summer|autumn|winter|monday|tuesday|wednesday|thursday|friday|"
                         r"saturday|sunday|yesterday|today|tomorrow|century|decade|year|month|week|day|hour|"
                         r"minute|morning|evening|night|after|before|until|since|during|once|immediately|upon|"
                         r"within)s?\b", re.I)
# A sentence that stops where its content should be ("Revenue in Q3 2019 came in at."): it ends on an
# article, a preposition that needs an object, a conjunction or a copula. Lower case only ("3 A." is amperes).
_DANGLING_END = re.compile(r"(?<![\w-])(?:a|an|the|at|of|to|from|with|by|than|and|or|is|are|was|were|be|its|"
                           r"their)\s*[.!?]?\s*$")


def _norm_number(raw: str) -> str:
    value = raw.replace(",", "").lstrip("+")
    try:
        number = float(value)
    except ValueError:
        return value
    return str(int(number)) if number == int(number) else repr(number)


def _currency_code(spelling: str) -> str | None:
    """The ISO code a currency spelling stands for ("US$" -> "usd", "euros" -> "eur"), None if none."""
    m = _CURRENCY.fullmatch(spelling)
    return m.lastgroup if m else None


def _unit(word: str) -> str:
    """A unit as the checks compare it: "%" for percent, "°c", else the stem ("years" -> "year")."""
    word = word.lower()
    if word in ("%", "percent", "per cent"):
        return "%"
    if word.startswith("°"):
        return word.replace(" ", "")
    return stem(word)


def _kind(unit: str | None) -> str | None:
    if not unit:
        return None
    return _KIND_OF_UNIT.get(unit) or ("money" if _currency_code(unit) else None)


@dataclass(frozen=True)
class Quantity:
    """A number as the text states it: ``value`` normalised without its sign ("1,000" -> "1000"),
    ``signed`` with it, the ``unit`` written after it and the ``currency`` written before it (ISO code),
    and ``kind`` ("money", "mass", ...; the currency's when both are given, None for bare numbers and units of
    no known kind). ``in_name``: digits of a name or code rather than a quantity."""

    value: str
    signed: str
    unit: str | None = None
    currency: str | None = None
    in_name: bool = False

    @property
    def kind(self) -> str | None:
        if self.currency:
            return "money"
        return _kind(self.unit)


class Parsed:
    """One text, parsed once: everything the checks read of it, each part computed when first read."""

    def __init__(self, text: str):
        self.text = text

    @cached_property
    def lower(self) -> str:
        return self.text.lower()

    @cached_property
    def words(self) -> frozenset[str]:
        """Content words, stemmed."""
        return frozenset(stem(w) for w in _WORD.findall(self.lower) if w not in _STOP and len(w) > 1)

    @cached_property
    def quantities(self) -> tuple[Quantity, ...]:
        """Every number in digits, with what is written around it."""
        out = []
        for m in _NUMBER.finditer(self.text):
            start, end = m.start(2), m.end()
            before = _CURRENCY_BEFORE.search(self.text[max(0, m.start() - 5):m.start()])
            after = _UNIT_AFTER.match(self.text, end)
            out.append(Quantity(
                value=_norm_number(m.group(2)), signed=_norm_number(m.group()),
                unit=_unit(after.group(1)) if after else None,
                currency=before.lastgroup if before else None,
                in_name=bool(_IN_NAME_BEFORE.search(self.text[max(0, start - 2):start])
                             or _IN_NAME_AFTER.match(self.text, end))))
        return tuple(out)

    @cached_property
    def spelled(self) -> tuple[Quantity, ...]:
        """Number words with a unit after them ("two years")."""
        return tuple(Quantity(_NUMBER_WORDS[m.group(1)], _NUMBER_WORDS[m.group(1)], _unit(m.group(2)))
                     for m in _SPELLED.finditer(self.lower))

    @cached_property
    def numbers(self) -> frozenset[str]:
        """Every number the text states, digits or words ("1,000" -> "1000", "two" -> "2", "2.50" -> "2.5")."""
        words = {_NUMBER_WORDS[w] for w in _WORD.findall(self.lower) if w in _NUMBER_WORDS}
        return frozenset({q.signed for q in self.quantities} | words)

    @cached_property
    def stated_numbers(self) -> frozenset[str]:
        """Quantities in digits: number words ("one") are too often not quantities to count them as claims,
        and digits inside names and codes are not quantities."""
        return frozenset(q.value for q in self.quantities if not q.in_name)

    @cached_property
    def units(self) -> dict[str, frozenset[str]]:
        """unit -> the values stated in it ("5 kg" -> {"kg": {"5"}}, "USD 79" -> {"usd": {"79"}}). Degrees
        ("35 °C") are left out, as before the registry: they count only as what the sources state a number as
        (``_quantity_kind_conflict``); making them a claim's unit too is a change to measure on its own."""
        out: dict[str, set[str]] = {}
        for q in self.quantities + self.spelled:
            for unit in (q.unit, q.currency):
                if unit and not unit.startswith("°"):
                    out.setdefault(unit, set()).add(q.value)
        return {unit: frozenset(values) for unit, values in out.items()}

    @cached_property
    def kinds(self) -> frozenset[str]:
        """The kinds of quantity the text states (of ``units``)."""
        return frozenset(kind for kind in map(_kind, self.units) if kind)

    @cached_property
    def currencies(self) -> frozenset[str]:
        """The currencies the text names, with or without an amount."""
        return frozenset(m.lastgroup for m in _CURRENCY.finditer(self.text))

    @cached_property
    def names(self) -> frozenset[str]:
        """Names, acronyms, codes and compound terms (lower-cased): capitalised words not at the start of the
        sentence, words with inner capitals or digits (PPM1D, p53, K2), hyphenated terms (lithium-ion)."""
        out = set()
        for m in _SALIENT.finditer(self.text):
            token = m.group()
            if m.start() == 0 and token[1:].islower() and not any(c.isdigit() for c in token):
                continue  # an ordinary sentence-initial word
            if token.lower() not in _STOP:
                out.add(token.lower())
        return frozenset(out)

    @cached_property
    def negated(self) -> bool:
        return bool(_NEGATION.search(self.text))


@lru_cache(maxsize=4096)
def parse(text: str) -> Parsed:
    """The parse of ``text``, shared: evidence sentences and passages recur across the claims of an answer."""
    return Parsed(text)


@dataclass
class Sources:
    """What a claim is checked against. ``evidence``: its selected sentences (best first or in reading order);
    ``context``: the text they came from (default: the evidence), for presence checks, so that a number stated
    elsewhere in a passage is not taken for fabricated; ``passages``: every retrieved passage (the term check;
    None: not run); ``question``: what was asked (the question checks; None: not run)."""

    evidence: Sequence[str] = ()
    context: str | None = None
    passages: str | None = None
    question: str | None = None

    @cached_property
    def sentences(self) -> list[Parsed]:
        return [parse(s) for s in self.evidence]

    @cached_property
    def joined(self) -> Parsed:
        return Parsed(" ".join(self.evidence))

    @cached_property
    def whole(self) -> Parsed:
        """The context (the evidence when none was given)."""
        return self.joined if self.context is None else parse(self.context)

    @cached_property
    def scope(self) -> Parsed:
        """Evidence and context together: where a stated number or name may be found."""
        return Parsed(f"{self.joined.text} {self.whole.text}")

    def has(self, need: str) -> bool:
        return need == "evidence" or getattr(self, need) is not None


# ---- the checks ---------------------------------------------------------------------------------------------
def _present(number: str, available: frozenset[str]) -> bool:
    """Exact, or the evidence's figure rounds to the claim's whole number ("76%" against "76.3%")."""
    if number in available:
        return True
    try:
        value = float(number)
    except ValueError:
        return False
    if value != int(value):
        return False
    for other in available:
        try:
            if round(float(other)) == value:
                return True
        except ValueError:
            continue
    return False


def _missing_numbers(claim: Parsed, src: Sources) -> set[str]:
    return {n for n in claim.stated_numbers if not _present(n, src.scope.numbers)}


def _numbers_absent(claim: Parsed, src: Sources) -> tuple[float, float]:
    """A number the claim states that neither its evidence nor the passages contain."""
    return float(len(claim.stated_numbers)), float(len(_missing_numbers(claim, src)))


def _number_conflict(claim: Parsed, src: Sources) -> float:
    """A missing number whose unit the evidence gives with other values ("3 years" against "2 years")."""
    missing = _missing_numbers(claim, src)
    if missing:
        stated = src.scope.units
        for unit, values in claim.units.items():
            if values & missing and unit in stated and not (stated[unit] & values):
                return 1.0
    return 0.0


def _names_absent(claim: Parsed, src: Sources) -> tuple[float, float, float]:
    """Names, acronyms and codes the claim uses that its evidence and passages never mention."""
    missing = [t for t in claim.names if t not in src.scope.lower]
    return float(len(claim.names)), float(len(missing)), len(missing) / len(claim.names) if claim.names else 0.0


def _overlap(claim: Parsed, text: Parsed) -> float:
    """Share of the claim's content words present in ``text``."""
    if not claim.words:
        return 1.0
    return len(claim.words & text.words) / len(claim.words)


def _best_sentence(claim: Parsed, src: Sources) -> Parsed | None:
    return max(src.sentences, key=lambda s: _overlap(claim, s)) if src.sentences else None


def _negation(claim: Parsed, src: Sources) -> tuple[float, float]:
    """The claim is negated and its best evidence sentence is not, or the other way round."""
    best = _best_sentence(claim, src)
    return float(claim.negated), float(claim.negated != best.negated) if best else 0.0


@lru_cache(maxsize=1)
def _opposite_stems() -> list[tuple[str, str]]:
    return [(stem(a), stem(b)) for a, b in _OPPOSITES]


def _direction_conflict(claim: Parsed, evidence: Parsed) -> bool:
    """The claim uses a direction word whose opposite the evidence uses, and the evidence never uses it."""
    cw, ew = claim.words, evidence.words
    for sa, sb in _opposite_stems():
        if sa in cw and sb not in cw and sb in ew and sa not in ew:
            return True
        if sb in cw and sa not in cw and sa in ew and sb not in ew:
            return True
    return False


def _direction(claim: Parsed, src: Sources) -> float:
    return float(_direction_conflict(claim, src.joined)) if src.evidence else 0.0


def _unit_kind_mismatch(claim: Parsed, src: Sources | None = None) -> float:
    """The claim measures something with a verb of one kind (weighs, lasts, costs) and gives its quantities
    only in units of other known kinds (pixels, GB, Hz...): true of no document, whatever its numbers."""
    if not claim.kinds:
        return 0.0
    return float(any(verb.search(claim.text) and not (kinds & claim.kinds) for verb, kinds in _MEASURE_VERBS))


def _currency_mismatch(claim: Parsed, sources: Parsed) -> bool:
    """The claim states an amount in a currency the sources never name, while they do name another: a price
    copied from a list in another currency, which no exchange rate in the sources makes true."""
    if not claim.currencies or not claim.stated_numbers:
        return False
    return bool(sources.currencies) and not (claim.currencies & sources.currencies)


def _quantity_kind_conflict(claim: Parsed, sources: Parsed) -> bool:
    """A quantity of one kind in the claim ("USD 35") whose number the sources give only as quantities of
    other kinds ("35 °C"): the number is there, the quantity is not. A bare occurrence (a table cell under
    a "Price (USD)" header) could be anything, so it never counts against the claim."""
    for unit, values in claim.units.items():
        kind = _kind(unit)
        if kind is None:
            continue
        for value in values:
            stated = [q.kind for q in sources.quantities if q.signed == value]
            if stated and all(k is not None and k != kind for k in stated):
                return True
    return False


def _word_overlap(claim: Parsed, src: Sources) -> tuple[float, float, float]:
    """Share of the claim's content words in its best evidence sentence, in all of it, and in the context."""
    best = _best_sentence(claim, src)
    return (_overlap(claim, best) if best else 0.0, _overlap(claim, src.joined) if src.evidence else 0.0,
            _overlap(claim, src.whole) if src.whole.text else 0.0)


def _currency_absent(claim: Parsed, src: Sources) -> float:
    return float(_currency_mismatch(claim, src.scope))


def _another_quantity(claim: Parsed, src: Sources) -> float:
    return float(_quantity_kind_conflict(claim, src.scope))


def _terms_absent(claim: Parsed, src: Sources) -> float:
    """A name, code or compound term (lithium-ion, HK2-100) that no retrieved passage contains: an answer
    built from the passages has no business naming it."""
    passages = parse(src.passages).lower
    return float(sum(1 for t in claim.names if t not in passages))


def _restates(claim: Parsed, question: Parsed) -> bool:
    """Every content word of the claim is one of the question's, and the question asks for something (a
    wh-question that offers no choices): the claim says back what was asked and adds no answer. Yes/no and
    either/or questions are answered by words of the question itself, so they never count."""
    if not _WH_QUESTION.match(question.text) or re.search(r"\bor\b", question.text, re.I):
        return False
    words = claim.words | claim.numbers  # "1 song" answers "how many songs" (one-character words count)
    return bool(words) and words <= question.words | question.numbers


def _restates_question(claim: Parsed, src: Sources) -> float:
    return float(_restates(claim, parse(src.question)))


def _incomplete(claim: Parsed, src: Sources) -> float:
    """The claim stops where its content should be ("came in at."): it states nothing to check."""
    return float(bool(_DANGLING_END.search(claim.text)))


def asked_for(question: str) -> str | None:
    """What the question asks the answer to name: "time", "quantity", "person", "place", or None (a
    yes/no, either/or, why or open question, which any relevant statement may answer)."""
    if not _WH_QUESTION.match(question) or re.search(r"\bor\b", question, re.I):
        return None
    return next((kind for kind, pattern in _ASKS if pattern.search(question)), None)


# A question that asks two things: ", and" then, within its first words, a question word or an auxiliary
# ("..., and how long is total coverage with Care+?", "..., and within how many days must I buy it?").
_SECOND_QUESTION = re.compile(r",\s+and\s+(?=(?:\w+\s+){0,2}?(?:what|which|who|whom|whose|when|where|why|how)\b|"
                              r"(?:is|are|was|were|does|do|did|can|could|will|should)\b)", re.I)

_ASKS_SOMETHING = re.compile(r"^\W*(?:(?:\w+\W+){0,3}?(?:what|which|who|whom|whose|when|where|why|how)|is|are|was|were|"
                             r"does|do|did|can|could|will|should)\b", re.I)


def question_parts(question: str) -> list[str]:
    """The questions a compound question asks, each as a question of its own ("What does E30 indicate, and what
    charge is required?" -> "What does E30 indicate?", "What charge is required?"); [] for a single question.
    A later part can lean on the first ("..., and how many with the grip?"): it is read as written."""
    pieces = [p.strip(" ?") for p in _SECOND_QUESTION.split(question.strip())]
    if len(pieces) < 2 or not all(pieces) or not _ASKS_SOMETHING.match(pieces[0]):
        return []  # "A writer known for a film directed by Yates, and was produced by who?" is one question
    return [p[0].upper() + p[1:] + "?" for p in pieces]


def _any_numbers(text: Parsed) -> frozenset[str]:
    """Every number, counting number words inside compounds too ("a two-year warranty")."""
    return text.numbers | {_NUMBER_WORDS[w] for w in re.findall(r"[a-z]+", text.lower) if w in _NUMBER_WORDS}


def _supplies(claim: Parsed, question: Parsed) -> bool:
    """The claim names something of the kind its question asks for, beyond what the question itself says:
    "When was GPT-3 released?" needs a date, "How much ...?" a number, "Who ...?" a name."""
    kind = asked_for(question.text)
    if kind is None:
        return True
    new_numbers = bool(_any_numbers(claim) - _any_numbers(question))
    if kind == "quantity":
        if _ASKS_MONEY.search(question.text):
            return any(q.kind == "money" and q.value not in question.numbers for q in claim.quantities)
        return new_numbers
    if kind == "time":
        times = {m.lower() for m in _TIME_WORDS.findall(claim.text)}
        return new_numbers or bool(times - {m.lower() for m in _TIME_WORDS.findall(question.text)})
    return any(name not in question.lower for name in claim.names)


def _supplies_asked(claim: Parsed, src: Sources) -> float:
    return float(_supplies(claim, parse(src.question)))


@dataclass(frozen=True)
class Check:
    """One deterministic check. ``run`` returns its signals' values (one number, or a tuple in the order of
    ``signals``). A veto fires when its ``fires_on`` signal (default: its only one) is above 0 and its
    ``setting`` family is on ("number": grounding_number_veto, "term": grounding_term_veto, None: always);
    ``needs`` names the input beyond the evidence it reads ("passages", "question"): without it, it is not run."""

    name: str
    kind: Literal["feature", "veto", "answer"]
    signals: tuple[str, ...]
    run: Callable[[Parsed, Sources], float | tuple[float, ...]]
    setting: Literal["number", "term"] | None = None
    needs: Literal["evidence", "passages", "question"] = "evidence"
    fires_on: str = ""

    @property
    def trigger(self) -> str:
        return self.fires_on or self.signals[0]


CHECKS: list[Check] = [
    Check("number_absent_from_sources", "veto", ("numbers", "numbers_missing"), _numbers_absent,
          setting="number", fires_on="numbers_missing"),
    Check("number_conflict", "feature", ("number_conflict",), _number_conflict),
    Check("names_absent_from_evidence", "feature", ("names", "names_missing", "names_missing_frac"), _names_absent),
    Check("negation_mismatch", "feature", ("claim_negated", "negation_mismatch"), _negation),
    Check("direction_conflict", "feature", ("direction_conflict",), _direction),
    Check("quantity_of_another_kind", "veto", ("unit_mismatch",), _unit_kind_mismatch, setting="number"),
    Check("currency_absent_from_sources", "veto", ("currency_mismatch",), _currency_absent, setting="number"),
    Check("number_stated_as_another_quantity", "veto", ("quantity_kind_conflict",), _another_quantity,
          setting="number"),
    Check("word_overlap", "feature", ("overlap_best", "overlap_evidence", "overlap_context"), _word_overlap),
    Check("term_absent_from_sources", "veto", ("terms_absent_from_sources",), _terms_absent,
          setting="term", needs="passages"),
    Check("restates_question", "veto", ("restates_question",), _restates_question, needs="question"),
    Check("incomplete_claim", "veto", ("incomplete",), _incomplete, needs="question"),
    Check("supplies_what_is_asked", "answer", ("supplies_asked",), _supplies_asked, needs="question"),
]
VETOES = [check for check in CHECKS if check.kind == "veto"]


def run_checks(claim: str, sources: Sources, needs=("evidence", "passages", "question")) -> dict[str, float]:
    """The signals of the checks that need one of ``needs`` and whose inputs ``sources`` has, in registry order."""
    parsed = parse(claim)
    out: dict[str, float] = {}
    for check in CHECKS:
        if check.needs in needs and sources.has(check.needs):
            values = check.run(parsed, sources)
            out.update(zip(check.signals, values if isinstance(values, tuple) else (values,)))
    return out


def deterministic_signals(claim: str, evidence: list[str], context: str | None = None,
                          passages: str | None = None) -> dict[str, float]:
    """Signals for one claim. ``evidence``: its selected sentences (best first or in reading order);
    ``context``: the full text the evidence came from (the passages), used for presence checks so a
    number stated elsewhere in a passage does not count as fabricated; ``passages``: every retrieved
    passage, which adds the term check."""
    return run_checks(claim, Sources(evidence, context, passages))


def veto_reasons(signals: dict, number_veto: bool = True, term_veto: bool = True) -> list[str]:
    """The vetoes a claim's signals fire, in registry order: each one alone makes it unsupported."""
    on = {"number": number_veto, "term": term_veto, None: True}
    return [check.name for check in VETOES if on[check.setting] and signals.get(check.trigger, 0) > 0]


def missing_numbers(claim: str, context: str) -> list[str]:
    """The numbers ``claim`` states that ``context`` does not (what the number veto found, by name: the
    review page says which)."""
    return sorted(_missing_numbers(parse(claim), Sources((), context)))


def missing_terms(claim: str, passages: str) -> list[str]:
    """The names and terms of ``claim`` that no passage contains (what the term veto found, by name)."""
    text = parse(passages).lower
    return sorted(t for t in parse(claim).names if t not in text)


def question_signals(claim: str, question: str) -> dict[str, float]:
    """The signals of the checks that read the question: a claim that only says the question back, one that
    stops where its content should be, and whether it names what the question asks for."""
    return run_checks(claim, Sources(question=question), needs=("question",))


def question_vetoes(claim: str, question: str) -> list[str]:
    """The vetoes among ``question_signals``."""
    return veto_reasons(question_signals(claim, question))


def answers_what_is_asked(question: str, claims: Sequence[str]) -> bool:
    """An answer-level requirement: at least one of the ``claims`` served names what the question asks for
    (a sentence that is true but supplies no who / when / how much is not an answer)."""
    return any(question_signals(claim, question)["supplies_asked"] > 0 for claim in claims)


_YES_OR_NO = re.compile(r"^\W*(?:yes|no)\W*$", re.I)


def yes_or_no(short_answer: str | None) -> bool:
    """A bare "Yes" / "No": it names nothing to check ("Is there a shortcut? Yes." scores 0.01 with the verifier,
    whose question-answer statements name an entity); the sentences carry the answer."""
    return bool(short_answer) and bool(_YES_OR_NO.match(short_answer))


def short_answer_supplies(question: str, short_answer: str) -> bool:
    """A short answer ("Osaka", "24 months", "Dec 2, 2022") is of the kind the question asks for, and names
    something the question does not ("Halden K2" answers nothing about the Halden K2's colours; an either/or
    question's answer repeats one of its options, so it is exempt). It is read inside a carrier sentence: a
    capitalised first word of a sentence is not taken for a name, and a short answer is all first word."""
    short, asked = parse(f"It is {short_answer}."), parse(question)
    names_new = bool(short.words - asked.words) or bool(_any_numbers(short) - _any_numbers(asked))
    if not names_new and not re.search(r"\bor\b", question, re.I):
        return False
    return _supplies(short, asked)


def contained(signals: dict) -> bool:
    """Entailment by containment: every content word of the claim is in one evidence sentence, and nothing
    contradicts it (negation, direction, numbers). On SciFact this fired on 14 of 868 pairs, all supported."""
    return (signals.get("overlap_best", 0.0) >= 0.999 and not signals.get("negation_mismatch")
            and not signals.get("direction_conflict") and not signals.get("numbers_missing")
            and not signals.get("number_conflict"))


# ---- the checks one text at a time (evidence selection, tests) ----------------------------------------------
def content_words(text: str) -> set[str]:
    return set(parse(text).words)


def numbers_in(text: str) -> set[str]:
    """Numbers a text states, normalised ("1,000" -> "1000", "two" -> "2", "2.50" -> "2.5")."""
    return set(parse(text).numbers)


def numbers_with_units(text: str) -> dict[str, set[str]]:
    return {unit: set(values) for unit, values in parse(text).units.items()}


def currencies_in(text: str) -> set[str]:
    return set(parse(text).currencies)


def salient_tokens(text: str) -> set[str]:
    """Names, acronyms, codes and compound terms (lower-cased): see ``Parsed.names``."""
    return set(parse(text).names)


def unit_kind_mismatch(claim: str) -> bool:
    return bool(_unit_kind_mismatch(parse(claim)))


def currency_mismatch(claim: str, sources: str) -> bool:
    return _currency_mismatch(parse(claim), parse(sources))


def quantity_kind_conflict(claim: str, sources: str) -> bool:
    return _quantity_kind_conflict(parse(claim), parse(sources))


def restates_question(claim: str, question: str) -> bool:
    return _restates(parse(claim), parse(question))
