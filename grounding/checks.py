"""Deterministic signals: what a claim states that its evidence does not, found without a model.

Each signal is cheap (microseconds) and explainable, and they cover what small learned verifiers miss:
- numbers, dates and units: a number in the claim that appears nowhere in the evidence, a *conflict*
  when the evidence gives a different number with the same unit ("3 years" against "2 years"), and a
  measuring verb whose quantity has a unit of another kind ("weighs 6240 x 4160 pixels"), and an amount in
  a currency the sources never name while they name another ("149 euros" from a price list in USD), and a
  quantity whose number the sources state only as quantities of other kinds ("USD 35" from "35 °C");
- negation: the claim is negated and its best evidence sentence is not, or the other way round;
- direction words: the claim says "increases" where the evidence says "decreases" (and similar pairs);
- named entities: capitalised names, acronyms and codes (K2, PPM1D, p53) the evidence never mentions;
- word overlap: the share of the claim's content words (stemmed) found in the evidence;
- a claim that only restates its question ("Which company makes the sensor?" -> "The company makes the
  sensor."): true as it may be, it answers nothing.

    signals = deterministic_signals(claim, evidence_sentences, passage_texts)
"""

from __future__ import annotations

import re
from functools import lru_cache

_NUMBER_WORDS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
    "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12", "thirteen": "13", "fourteen": "14",
    "fifteen": "15", "sixteen": "16", "seventeen": "17", "eighteen": "18", "nineteen": "19", "twenty": "20",
    "thirty": "30", "forty": "40", "fifty": "50", "sixty": "60", "seventy": "70", "eighty": "80", "ninety": "90",
    "hundred": "100", "thousand": "1000", "million": "1000000", "half": "0.5", "once": "1", "twice": "2",
    "single": "1", "double": "2", "triple": "3", "dozen": "12",
}
_NUM = re.compile(r"(?<![\w.])[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?|(?<![\w.])[-+]?\d+(?:\.\d+)?")
_NUM_WITH_UNIT = re.compile(
    r"(?<![\w.])(\d+(?:[.,]\d+)*)\s*(%|percent|per cent|[a-zA-Z]{1,12})")
_WORD = re.compile(r"[a-z0-9]+(?:[.'-][a-z0-9]+)*")
_NEGATION = re.compile(
    r"\b(not|no|never|none|nor|neither|without|cannot|can't|won't|don't|doesn't|didn't|isn't|aren't|wasn't|"
    r"weren't|hasn't|haven't|hadn't|shouldn't|wouldn't|couldn't|fails?|failed|lacks?|lacking|absence|absent|"
    r"unable|unaffected|insufficient|neither)\b", re.I)
_STOP = frozenset("""a an the of to in on at for and or is are was were be been being it its this that these those
    with by as from can could do does did has have had how what which when where who why i you your we our they
    their them he she his her than then there here also into about over under after before between during
    such may might will would should must shall any all some more most other only same so very just""".split())
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


@lru_cache(maxsize=1)
def _stemmer():
    import snowballstemmer

    return snowballstemmer.stemmer("english")


@lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    return _stemmer().stemWord(word)


def content_words(text: str) -> set[str]:
    return {_stem(w) for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 1}


def _norm_number(raw: str) -> str:
    value = raw.replace(",", "").lstrip("+")
    try:
        number = float(value)
    except ValueError:
        return value
    return str(int(number)) if number == int(number) else repr(number)


def numbers_in(text: str) -> set[str]:
    """Numbers a text states, normalised ("1,000" -> "1000", "two" -> "2", "2.50" -> "2.5")."""
    found = {_norm_number(m.group()) for m in _NUM.finditer(text)}
    for word in _WORD.findall(text.lower()):
        if word in _NUMBER_WORDS:
            found.add(_NUMBER_WORDS[word])
    return found


# A quantity, not part of a name or code: "CTLA-4", "A-769662", "OCT3/4", "3T3", "H2A", "fox0" are names.
_QUANTITY = re.compile(
    r"(?<![\w.])(?<![A-Za-z][-/])(?<![A-Za-z0-9]/)"
    r"(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)(?![A-Za-z]+\d)(?![.,]?\d)")


def _numbers_strict(text: str) -> set[str]:
    """Quantities in digits (number words like "one" are too often not quantities to count them as claims;
    digits inside names and codes are not quantities)."""
    return {_norm_number(m.group()) for m in _QUANTITY.finditer(text)}


def _present(number: str, available: set[str]) -> bool:
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


def _unit_of(word: str) -> str:
    word = word.lower()
    if word in ("%", "percent", "per cent"):
        return "%"
    return _stem(word)


# A currency written before its amount ("USD 79", "$49", "EUR 1,200").
_CURRENCY_CODE = r"(USD|EUR|GBP|CHF|JPY|US\$|\$|€|£)"
_CURRENCY_BEFORE_NUMBER = re.compile(_CURRENCY_CODE + r"\s?(\d+(?:[.,]\d+)*)")
_CURRENCY_BEFORE = re.compile(_CURRENCY_CODE + r"\s?$")


def _currency_unit(code: str) -> str:
    return code.lower().replace("us$", "usd").replace("$", "usd")


def numbers_with_units(text: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for m in _NUM_WITH_UNIT.finditer(text):
        out.setdefault(_unit_of(m.group(2)), set()).add(_norm_number(m.group(1)))
    for m in _CURRENCY_BEFORE_NUMBER.finditer(text):
        out.setdefault(_currency_unit(m.group(1)), set()).add(_norm_number(m.group(2)))
    # Number words with a unit ("two years"): common in generated answers.
    for m in re.finditer(r"\b(" + "|".join(_NUMBER_WORDS) + r")\s+([a-z]{2,12})\b", text.lower()):
        out.setdefault(_unit_of(m.group(2)), set()).add(_NUMBER_WORDS[m.group(1)])
    return out


# What a measuring verb says a number is, and the units of each kind: "weighs 6240 x 4160 pixels" states a
# number the passages do contain, as a quantity they never give it as.
_UNIT_KINDS = {
    "mass": {"g", "gram", "kg", "kilogram", "lb", "pound", "oz", "ounc", "mg"},
    "time": {"s", "sec", "second", "min", "minut", "h", "hr", "hour", "day", "week", "month", "year", "ms",
             "millisecond"},
    "money": {"usd", "eur", "gbp", "chf", "jpy", "dollar", "euro", "cent"},
    "length": {"mm", "cm", "m", "km", "inch", "in", "ft", "foot", "feet", "metr", "millimetr", "centimetr"},
    "resolution": {"pixel", "px", "dot", "mp", "megapixel"},
    "data": {"kb", "mb", "gb", "tb", "byte", "bit", "mbps", "gbps"},
    "frequency": {"hz", "khz", "mhz", "ghz", "fps"},
    "temperature": {"°c", "°f", "celsius", "fahrenheit", "kelvin"},
}
# A measuring verb and the kinds of quantity it can take ("costs 2 hours of work" is English too).
_MEASURE_VERBS = [
    (re.compile(r"\b(weighs?|weighing|weighed)\b", re.I), {"mass"}),
    (re.compile(r"\b(lasts?|lasted|lasting)\b", re.I), {"time"}),
    (re.compile(r"\b(costs?|costing|priced)\b", re.I), {"money", "time"}),
]


_KIND_OF_UNIT = {unit: kind for kind, units in _UNIT_KINDS.items() for unit in units}
_UNIT_AFTER = re.compile(r"\s?(°\s?[CF]\b|%|[a-zA-Z]{1,12})")


# Words after a number that are units only sometimes ("2 in stock", "5 in the box"): no kind.
_AMBIGUOUS_UNITS = {"in"}


def _kind_of(unit: str) -> str | None:
    unit = unit.lower().replace(" ", "")
    if unit in _AMBIGUOUS_UNITS:
        return None
    unit = _currency_unit(unit) if unit in ("us$", "$") else unit if unit.startswith("°") else _unit_of(unit)
    return _KIND_OF_UNIT.get(unit)


def _kinds_stated_for(number: str, text: str) -> list[str | None]:
    """The kind of quantity each occurrence of ``number`` in ``text`` is given as (None: bare or unknown)."""
    kinds = []
    for m in _NUM.finditer(text):
        if _norm_number(m.group()) != number:
            continue
        before = _CURRENCY_BEFORE.search(text[max(0, m.start() - 5):m.start()])
        after = _UNIT_AFTER.match(text, m.end())
        kinds.append(_kind_of(before.group(1)) if before else _kind_of(after.group(1)) if after else None)
    return kinds


def quantity_kind_conflict(claim: str, sources: str) -> bool:
    """A quantity of one kind in the claim ("USD 35") whose number the sources give only as quantities of
    other kinds ("35 °C"): the number is there, the quantity is not. A bare occurrence (a table cell under
    a "Price (USD)" header) could be anything, so it never counts against the claim."""
    for unit, values in numbers_with_units(claim).items():
        kind = _kind_of(unit)
        if kind is None:
            continue
        for value in values:
            stated = _kinds_stated_for(value, sources)
            if stated and all(k is not None and k != kind for k in stated):
                return True
    return False


def unit_kind_mismatch(claim: str) -> bool:
    """The claim measures something with a verb of one kind (weighs, lasts, costs) and gives its quantities
    only in units of other known kinds (pixels, GB, Hz...): true of no document, whatever its numbers."""
    kinds_stated = {_KIND_OF_UNIT[unit] for unit in numbers_with_units(claim) if unit in _KIND_OF_UNIT}
    if not kinds_stated:
        return False
    return any(verb.search(claim) and not (kinds & kinds_stated) for verb, kinds in _MEASURE_VERBS)


# Currencies by their codes, symbols and names. A bare "dollar" counts as USD; "pound" alone is also a
# weight, so only "pounds sterling", GBP and the symbol count as GBP.
_CURRENCIES = {
    "usd": re.compile(r"(?<![A-Za-z])(?:USD|US\$|dollars?)(?![A-Za-z])|\$", re.I),
    "eur": re.compile(r"(?<![A-Za-z])(?:EUR|euros?)(?![A-Za-z])|€", re.I),
    "gbp": re.compile(r"(?<![A-Za-z])(?:GBP|pounds? sterling|sterling)(?![A-Za-z])|£", re.I),
    "jpy": re.compile(r"(?<![A-Za-z])(?:JPY|yen)(?![A-Za-z])|¥", re.I),
    "chf": re.compile(r"(?<![A-Za-z])(?:CHF|Swiss francs?)(?![A-Za-z])", re.I),
}


def currencies_in(text: str) -> set[str]:
    return {code for code, pattern in _CURRENCIES.items() if pattern.search(text)}


def currency_mismatch(claim: str, sources: str) -> bool:
    """The claim states an amount in a currency the sources never name, while they do name another: a price
    copied from a list in another currency, which no exchange rate in the sources makes true."""
    stated = currencies_in(claim)
    if not stated or not _numbers_strict(claim):
        return False
    named = currencies_in(sources)
    return bool(named) and not (stated & named)


_SALIENT = re.compile(r"\b(?:[A-Z][a-zA-Z0-9]*[A-Z0-9][a-zA-Z0-9-]*|[a-zA-Z]+\d[a-zA-Z0-9-]*|[A-Z][a-z]{2,}"
                      r"|[a-zA-Z]{2,}(?:-[a-zA-Z0-9]+)+)\b")


def salient_tokens(text: str) -> set[str]:
    """Names, acronyms, codes and compound terms (lower-cased): capitalised words not at the start of the
    sentence, words with inner capitals or digits (PPM1D, p53, K2), hyphenated terms (lithium-ion)."""
    out = set()
    for m in _SALIENT.finditer(text):
        token = m.group()
        if m.start() == 0 and token[1:].islower() and not any(c.isdigit() for c in token):
            continue  # an ordinary sentence-initial word
        if token.lower() in _STOP:
            continue
        out.add(token.lower())
    return out


def is_negated(text: str) -> bool:
    return bool(_NEGATION.search(text))


def _direction_words(words: set[str]) -> set[tuple[str, str]]:
    return {(a, b) for a, b in _OPPOSITES if _stem(a) in words or _stem(b) in words}


def direction_conflict(claim: str, evidence: str) -> bool:
    """The claim uses a direction word whose opposite the evidence uses, and the evidence never uses it."""
    cw, ew = content_words(claim), content_words(evidence)
    for a, b in _OPPOSITES:
        sa, sb = _stem(a), _stem(b)
        if sa in cw and sb not in cw and sb in ew and sa not in ew:
            return True
        if sb in cw and sa not in cw and sa in ew and sb not in ew:
            return True
    return False


def overlap(claim: str, evidence: str) -> float:
    """Share of the claim's content words (stemmed) present in the evidence."""
    cw = content_words(claim)
    if not cw:
        return 1.0
    return len(cw & content_words(evidence)) / len(cw)


# A question asking for something (not yes/no): a wh-word within its first few words ("In which ...").
_WH_QUESTION = re.compile(r"^\W*(?:\w+\W+){0,3}?(what|which|who|whom|whose|when|where|why|how)\b", re.I)


def restates_question(claim: str, question: str) -> bool:
    """Every content word of the claim is one of the question's, and the question asks for something (a
    wh-question that offers no choices): the claim says back what was asked and adds no answer. Yes/no and
    either/or questions are answered by words of the question itself, so they never count."""
    if not _WH_QUESTION.match(question) or re.search(r"\bor\b", question, re.I):
        return False
    words = content_words(claim) | numbers_in(claim)  # "1 song" answers "how many songs" (one-character words count)
    return bool(words) and words <= content_words(question) | numbers_in(question)


def deterministic_signals(claim: str, evidence: list[str], context: str | None = None) -> dict[str, float]:
    """Signals for one claim. ``evidence``: its selected sentences (best first or in reading order);
    ``context``: the full text the evidence came from (the passages), used for presence checks so a
    number stated elsewhere in a passage does not count as fabricated."""
    joined = " ".join(evidence)
    context = context if context is not None else joined
    scope = f"{joined} {context}"
    scope_numbers = numbers_in(scope)

    claim_numbers = _numbers_strict(claim)
    missing = {n for n in claim_numbers if not _present(n, scope_numbers)}
    conflict = 0.0
    if missing:
        claim_units = numbers_with_units(claim)
        evidence_units = numbers_with_units(scope)
        for unit, values in claim_units.items():
            if values & missing and unit in evidence_units and not (evidence_units[unit] & values):
                conflict = 1.0
                break

    claim_names = salient_tokens(claim)
    scope_lower = scope.lower()
    names_missing = [t for t in claim_names if t not in scope_lower]

    best = max(evidence, key=lambda s: overlap(claim, s)) if evidence else ""
    claim_negated = is_negated(claim)
    negation_mismatch = float(claim_negated != is_negated(best)) if evidence else 0.0
    overlap_best = overlap(claim, best) if evidence else 0.0
    overlap_all = overlap(claim, joined) if evidence else 0.0
    overlap_context = overlap(claim, context) if context else 0.0

    return {
        "numbers": float(len(claim_numbers)),
        "numbers_missing": float(len(missing)),
        "number_conflict": conflict,
        "names": float(len(claim_names)),
        "names_missing": float(len(names_missing)),
        "names_missing_frac": len(names_missing) / len(claim_names) if claim_names else 0.0,
        "claim_negated": float(claim_negated),
        "negation_mismatch": negation_mismatch,
        "direction_conflict": float(direction_conflict(claim, joined)) if evidence else 0.0,
        "unit_mismatch": float(unit_kind_mismatch(claim)),
        "currency_mismatch": float(currency_mismatch(claim, scope)),
        "quantity_kind_conflict": float(quantity_kind_conflict(claim, scope)),
        "overlap_best": overlap_best,
        "overlap_evidence": overlap_all,
        "overlap_context": overlap_context,
    }
