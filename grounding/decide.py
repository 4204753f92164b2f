"""The decision: serve, repair, reject or queue an answer, from the verdicts on its claims.

    grounder = Grounder(settings)              # one per process: the verifier models load once
    grounded = grounder.verify(question, answer_result, passages, risk="high", regenerate=None)
    grounded.decision      # "served" | "repaired" | "rejected" | "queued_for_review"
    grounded.text          # what the user may see
    grounded.claims        # per-claim verdicts: score, threshold, signals, evidence, citation status

Per claim (grounding/verifier.py scores; the threshold is the risk level's, from the calibration):
1. its cited passages alone are checked first; a claim they support is served citing the one of them that
   states it alone (round 3's probe), else those its evidence sentences came from;
2. otherwise the best sentences of all retrieved passages; a claim supported only by another passage gets
   its citation corrected to that passage (``citation="corrected"``, or ``"added"`` when it cited none);
3. a claim with no support anywhere is unsupported whatever it cites;
4. a claim that only says a wh-question back ("Which company makes the sensor?" -> "The company makes the
   sensor.") is failed too (veto ``restates_question``): supported or not, it answers nothing.

Per answer:
- every claim supported, and the answer answers the question -> ``served``. Answering means: a served claim
  names what the question asks for (a who / when / how much question needs a name / time / number the
  question did not give: "Revenue came in at." answers nothing), and, at the risk levels of
  ``grounding_answer_judge_risks`` (both by default), the judge reads the passages the answer cites as
  stating this answer to this question;
- some unsupported -> ``repaired``: the sentences holding them are removed when what remains still answers
  the question; otherwise, when a ``regenerate`` callable is given, one regeneration with a stricter prompt
  that names the failing claims, verified again;
- still failing -> ``rejected`` with a clear, safe message (the documents do not say, when every claim held
  but none answered), or ``queued_for_review`` when review is on.
No claim scored under its risk level's threshold is ever part of the served text.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Literal

import numpy as np
from pydantic import BaseModel, Field

from answer.passages import NumberedPassages
from attest_settings import ANSWER_JUDGE_CALIBRATED
from grounding.checks import (answers_what_is_asked, asked_for, numbers_in, question_parts, question_vetoes,
                             short_answer_supplies, yes_or_no)
from grounding.claims import Claim, SplitAnswer, answer_statement, split_claims
from grounding.evidence import Evidence, EvidencePool, Passage, answer_judge_documents
from grounding.judge import ANSWER_PROMPT_VERSION, answer_prompt, evidence_block
from grounding.judge import PROMPT_VERSION as JUDGE_PROMPT_VERSION
from grounding.verifier import ClaimScorer, ScoreItem, Scored

Decision = Literal["served", "repaired", "rejected", "queued_for_review"]
CitationStatus = Literal["ok", "corrected", "added", "unsupported", "none"]
# @2: restated questions fail, fragments are checked with their question; @3: the answer as a whole must
# name what the question asks for (and, where the answer judge is on, be stated as the answer by the passages);
# @4: the short answer is verified as the answer to the question (question + short answer, one statement);
# @5: an answer with nothing checkable is declined, a bare yes/no short answer is set aside
PROMPT_VERSION = "grounding@5"
log = logging.getLogger(__name__)

# What the user reads for each decision that does not show the model's text, and the notices beside it.
# The API shows these as they are; no other stage writes its own version of them.
REJECTED_TEXT = ("I could not verify an answer to this question against your documents, so I am not showing one. "
                 "Try rephrasing the question, or check the cited documents directly. (request id {request_id})")
REVIEW_TEXT = ("This answer could not be verified against your documents and has been sent for review by a "
               "person. (request id {request_id})")
NOT_ANSWERED_TEXT = ("Your documents do not say. The passages found for this question do not state its answer, so "
                     "I am not giving one. (request id {request_id})")
UNVERIFIED_WITHHELD_TEXT = ("This high-risk answer is withheld: {why}, so its claims could not be checked against "
                            "your documents. (request id {request_id})")
UNVERIFIED_NOTICE = "The claims of this answer were not checked against your documents: {why}."
REGENERATED_NOTICE = "The first answer did not hold up; this one was regenerated and verified again."
REPAIRED_NOTICE = "{count} sentence(s) were removed because your documents do not support them."
CACHED_VERDICTS_NOTICE = "Verified when this answer was first given."
PARTIAL_NOTICE = "Verified as the answer to part of the question only: no answer was verified for {parts}."
# What remains after removing sentences must stay this close to the question, relative to the full answer.
MIN_RELEVANCE_KEPT = 0.85
MIN_RELEVANCE = 0.25


class EvidenceRef(BaseModel):
    passage: int
    chunk_id: str
    text: str
    similarity: float


class ClaimVerdict(BaseModel):
    claim: str
    sentence: int
    supported: bool
    score: float = Field(description="Calibrated P(supported), 0..1.")
    threshold: float
    signals: dict[str, float]
    vetoes: list[str] = Field(default_factory=list)
    evidence: list[EvidenceRef] = Field(default_factory=list)
    cited_passages: list[int] = Field(default_factory=list)
    supporting_passages: list[int] = Field(default_factory=list)
    citation: CitationStatus = "none"
    # The passages the claim held against: all its cited passages when they held it together, even where its
    # served citation is trimmed to the one that states it. The answer judge reads these (its thresholds were
    # set on them: with only the trimmed passages it read two off-topic HotpotQA answers as answers).
    held_against: list[int] = Field(default_factory=list, exclude=True)

    @property
    def evidence_ids(self) -> list[str]:
        return list(dict.fromkeys(e.chunk_id for e in self.evidence))

    @property
    def cited_ids(self) -> list[int]:
        return self.cited_passages


class PartCheck(BaseModel):
    question: str = Field(description="One part of a compound question, as a question of its own.")
    judge_p: float = Field(description="The judge's P(yes) for the best served sentence as its answer.")
    answered: bool


class AnswerCheck(BaseModel):
    """The answer as a whole against its question: does what is served answer it?"""

    asks: str | None = Field(description="What the question asks the answer to name: time, quantity, person, "
                                         "place, or None (any relevant statement may answer it).")
    supplied: bool = Field(description="A served claim names something of that kind the question did not.")
    judge_p: float | None = Field(default=None, description="The judge's P(the passages state this answer as the "
                                                            "answer to the question), where the answer judge ran: "
                                                            "the best of judge_pieces when it read them one by one.")
    judge_pieces: list[float] | None = Field(default=None, description="The judge's P(yes) for each piece of the "
                                                                       "answer put to it as the proposed answer (the "
                                                                       "short answer, then each served sentence).")
    threshold: float | None = None
    short_answer: str | None = Field(default=None, description="The model's short answer, as it was checked.")
    statement: str | None = Field(default=None, description="What was verified for it: the question and the "
                                                            "short answer as one statement.")
    short_answer_score: float | None = Field(default=None, description="Calibrated P(the passages state it).")
    short_answer_supported: bool | None = Field(default=None, description="Supported, and of the kind the "
                                                                          "question asks for.")
    short_answer_withheld: str | None = Field(default=None, description="Why a supported short answer is not "
                                                                        "shown with the served sentences.")
    parts: list[PartCheck] | None = Field(default=None, description="A compound question's parts, each judged "
                                                                     "on its own with each served sentence.")
    answers: bool

    @property
    def unanswered_parts(self) -> list[str]:
        """The parts of a compound question the served answer leaves open: named only where another part was
        answered (an answer the judge reads as the answer to the whole, and to no part alone, leaves none)."""
        parts = self.parts or []
        if not self.answers or not any(p.answered for p in parts):
            return []
        return [p.question for p in parts if not p.answered]

    def shown_short_answer(self) -> str | None:
        return self.short_answer if self.short_answer_supported and not self.short_answer_withheld else None


class CitationCorrection(BaseModel):
    claim: str
    sentence: int
    cited: list[int]
    corrected_to: list[int]
    chunk_ids: list[str]


class GroundedAnswer(BaseModel):
    request_id: str
    question: str
    decision: Decision
    text: str
    sentences: list = Field(default_factory=list, description="The served sentences (answer.result.AnswerSentence), "
                                                              "with corrected citations.")
    claims: list[ClaimVerdict] = Field(default_factory=list)
    confidence: float = Field(description="The lowest score among the served claims; 0 when nothing is served.")
    risk: str
    threshold: float
    removed_sentences: list[str] = Field(default_factory=list)
    corrected_citations: list[CitationCorrection] = Field(default_factory=list)
    regenerated: bool = False
    failing_claims: list[str] = Field(default_factory=list)
    answer_check: AnswerCheck | None = None
    short_answer: str | None = Field(default=None, description="The verified short answer; None when there was "
                                                               "none, it failed, or nothing is served.")
    model: str
    prompt_version: str = PROMPT_VERSION
    timings_ms: dict[str, float] = Field(default_factory=dict)
    answer: object | None = Field(default=None, exclude=True, description="The AnswerResult finally used.")


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


class Grounder:
    """One per process: the scorer (models loaded once) and the verdict store."""

    def __init__(self, settings, scorer: ClaimScorer | None = None, encoder=None, store=None):
        from grounding.store import VerdictStore

        self.settings = settings
        self.scorer = scorer or ClaimScorer.from_settings(settings, encoder=encoder)
        self.encoder = self.scorer.encoder
        self.store = store if store is not None else VerdictStore(settings.state_url)
        if (settings.grounding_answer_judge_risks and settings.grounding_judge == "local"
                and settings.grounding_judge_model_name not in ANSWER_JUDGE_CALIBRATED):
            log.warning("the answer judge is %s, but its thresholds %s were set for %s: expect it to decline "
                        "answers it should serve (benchmarks/answer_judge_sweep.py sets them for another model)",
                        settings.grounding_judge_model_name, settings.grounding_answer_judge_thresholds,
                        ", ".join(ANSWER_JUDGE_CALIBRATED))

    def close(self) -> None:
        self.store.close()

    # ---- claims of one answer --------------------------------------------------------------------------
    def check_claims(self, split: SplitAnswer, passages: list[Passage], risk: str) -> tuple[list[ClaimVerdict], dict]:
        threshold = self.scorer.threshold(risk)
        timings: dict[str, float] = {}
        if not split.claims:
            return [], timings
        t = time.perf_counter()
        k = self.scorer.evidence_sentences
        pool = EvidencePool.build(passages, self.encoder, threads=self.settings.grounding_threads)
        vectors = self.encoder.encode([c.text for c in split.claims], batch_size=32,
                                      threads=self.settings.grounding_threads)
        timings["evidence_ms"] = _ms(time.perf_counter() - t)

        everything = "\n\n".join(p.text for p in passages)

        veto_text = {c.text: c.veto_text for c in split.claims if c.veto_text is not None}

        def item(text: str, evidence: Evidence) -> ScoreItem:
            # Numbers must be in the passages the evidence came from; names and terms in any retrieved passage.
            return ScoreItem(text, evidence, "\n\n".join(pool.passages[n].text for n in evidence.passages),
                             everything, veto_text.get(text))

        def score_round(requests: list[tuple[int, str, ScoreItem]]) -> None:
            if not requests:
                return
            shared = None
            if self.scorer.judge_for(risk) is not None:  # one evidence block per round: the judge's KV cache is reused
                union: list[str] = []
                for _, _, it in requests:
                    for s in it.evidence.sentences:
                        if s.text not in union:
                            union.append(s.text)
                shared = evidence_block(union[:12])
            scored = self.scorer.score([r[2] for r in requests], judge_context=shared, risk=risk)
            for (index, kind, _), s in zip(requests, scored):
                results.setdefault(index, {})[kind] = s

        results: dict[int, dict] = {}
        cited_of = [[n for n in c.passages if n in pool.passages] for c in split.claims]
        # Round 1: each claim against its cited passages alone (or, citing none, the best sentences anywhere).
        t = time.perf_counter()
        score_round([(i, "cited", item(c.text, pool.select(c.text, vectors[i], only=cited_of[i], k=k)))
                     if cited_of[i] else (i, "any", item(c.text, pool.select(c.text, vectors[i], k=k)))
                     for i, c in enumerate(split.claims)])
        # Round 2: claims their citations do not support, against the best sentences of all passages.
        score_round([(i, "any", item(c.text, pool.select(c.text, vectors[i], cited=cited_of[i], k=k)))
                     for i, c in enumerate(split.claims)
                     if "cited" in results[i] and results[i]["cited"].score < threshold])
        timings["score_ms"] = _ms(time.perf_counter() - t)

        # Round 3: which single passage carries a claim that several passages support together: one the claim
        # did not cite (it needed other passages' help), or one of the several it cited (a sentence citing
        # [1][2][3][4] where [1] states it is served citing [1]).
        # The trims are scored by the verifier alone: the claim already holds, only its citation is chosen.
        t = time.perf_counter()
        held_by_cited = ["cited" in results[i] and results[i]["cited"].score >= threshold
                         for i in range(len(split.claims))]
        probes: dict[bool, list[tuple[int, int]]] = {False: [], True: []}  # trim? -> (claim, passage)
        for index, claim in enumerate(split.claims):
            got = results[index]
            trim = held_by_cited[index]
            if trim and len(cited_of[index]) > 1:
                exclude = [n for n in pool.passages if n not in cited_of[index]]
            elif not trim and "any" in got and got["any"].score >= threshold:
                exclude = cited_of[index]
            else:
                continue
            for number in pool.best_passages(claim.text, vectors[index], exclude=exclude, limit=2):
                probes[trim].append((index, number))
        probe_scores: list[tuple[tuple[int, int], Scored]] = []
        for trim, pairs in probes.items():
            if pairs:
                items = [item(split.claims[i].text, pool.select(split.claims[i].text, vectors[i], only=[n], k=k))
                         for i, n in pairs]
                probe_scores += zip(pairs, self.scorer.score(items, risk=risk, use_judge=not trim))
        timings["citation_ms"] = _ms(time.perf_counter() - t)

        verdicts = []
        for index, claim in enumerate(split.claims):
            cited = cited_of[index]
            got = results[index]
            candidates = [(s, n) for (i, n), s in probe_scores if i == index and s.score >= threshold]
            if held_by_cited[index]:
                # Served citing what supports it: the one cited passage that states it alone, else the cited
                # passages its evidence came from (never a passage it did not cite).
                best, supporting, status = got["cited"], got["cited"].evidence.passages or cited, "ok"
                if candidates:
                    best, number = max(candidates, key=lambda c: c[0].score)
                    supporting = [number]
            elif "any" in got and got["any"].score >= threshold:
                if candidates:
                    s, n = max(candidates, key=lambda c: c[0].score)
                    best, supporting = s, [n]
                else:  # only the combination of passages supports it
                    best, supporting = got["any"], got["any"].evidence.passages
                status = "ok" if cited and set(supporting) <= set(cited) else ("corrected" if cited else "added")
            else:
                best = max(got.values(), key=lambda s: s.score)
                supporting, status = [], "unsupported"
            vetoes = list(best.vetoes)
            together = cited if held_by_cited[index] else supporting  # the passages it was checked against
            if len(together) > 1 and _numbers_split(claim.text, [_as_read(pool.passages[n]) for n in together]):
                # "Firmware 3.0 will be released on 5 November 2024": the date is firmware 2.0's, the 3.0 a
                # screen's. Numbers stated together must be stated together by one passage.
                vetoes.append("numbers_split_across_passages")
                supporting, status = [], "unsupported"
            verdicts.append(ClaimVerdict(
                claim=claim.text, sentence=claim.sentence,
                supported=bool(best.score >= threshold) and "numbers_split_across_passages" not in vetoes,
                score=round(best.score, 6), threshold=threshold, signals={k_: round(float(v), 4) for k_, v in
                                                                          best.signals.items()},
                vetoes=vetoes,
                evidence=[EvidenceRef(passage=e.passage, chunk_id=e.chunk_id, text=e.text,
                                      similarity=round(e.similarity, 4)) for e in best.evidence.sentences],
                cited_passages=cited, supporting_passages=supporting, citation=status,
                held_against=together if supporting else []))
        return verdicts, timings

    def check_sentence(self, question: str, text: str, cited: list[int], passages: NumberedPassages,
                       risk: str = "low") -> list[ClaimVerdict]:
        """The verdicts on one answer sentence's claims, alone (the question path checks the first sentence
        while the model is still writing the rest). The decision on the whole answer is still ``verify``'s."""
        marks = "".join(f"[{n}]" for n in cited)
        split = split_claims(f"{text} {marks}".strip())
        if not split.claims:
            return []
        passages = [Passage.from_hit(n, hit) for n, hit in NumberedPassages.of(passages).numbered()]
        verdicts, _ = self.check_claims(split, passages, risk)
        _apply_question_vetoes(verdicts, question)
        return verdicts

    # ---- the decision ----------------------------------------------------------------------------------
    def verify(self, question: str, answer, passages: NumberedPassages, risk: str = "low",
               regenerate: Callable[[list[str], str], object] | None = None,
               review: bool | None = None) -> GroundedAnswer:
        """Verify ``answer`` (an AnswerResult) against exactly the passages its model was given, and decide.
        ``regenerate(failing_claims, instruction)`` may return a new AnswerResult; it is called at most once.
        ``review``: a failing answer is queued for a reviewer rather than rejected (default: the setting
        ``grounding_review``). Claims are never checked against, or re-cited to, a passage the model did not read."""
        started = time.perf_counter()
        review = self.settings.grounding_review if review is None else review
        threshold = self.scorer.threshold(risk)
        passages = [Passage.from_hit(n, hit) for n, hit in NumberedPassages.of(passages).numbered()]
        result = self._attempt(question, answer, passages, risk, threshold, review)
        result.timings_ms["verify_ms"] = _ms(time.perf_counter() - started)
        self._record(result, answer, attempt=0)
        if result.decision in ("served", "repaired") or regenerate is None or self._no_answer_to_retry(result):
            return self._finish(result, started)

        # One regeneration, told which claims failed; its answer is verified again (never regenerated twice).
        failing = result.failing_claims
        instruction = stricter_instruction(failing)
        t = time.perf_counter()
        try:
            new_answer = regenerate(failing, instruction)
        except Exception as exc:  # noqa: BLE001 - a failed regeneration must not turn into a raw error
            result.timings_ms["regenerate_ms"] = _ms(time.perf_counter() - t)
            result.timings_ms["regenerate_error"] = 1.0
            result.failing_claims = failing + [f"(regeneration failed: {type(exc).__name__})"]
            return self._finish(result, started)
        regenerate_ms = _ms(time.perf_counter() - t)
        if new_answer is None or not getattr(new_answer, "answerable", False):
            result.timings_ms["regenerate_ms"] = regenerate_ms
            return self._finish(result, started)
        second = self._attempt(question, new_answer, passages, risk, threshold, review)
        second.regenerated = True
        second.timings_ms = {**{f"first_{k}": v for k, v in result.timings_ms.items()}, "regenerate_ms": regenerate_ms,
                             **second.timings_ms}
        if second.decision == "served":
            second.decision = "repaired"
        self._record(second, new_answer, attempt=1)
        return self._finish(second, started)

    def _no_answer_to_retry(self, result: GroundedAnswer) -> bool:
        """Every claim held and the answer check found no answer in them: the passages hold the model's true
        sentences, not the answer, and a second try mostly finds the same passages' other true sentences. On
        held-out HotpotQA (50-99) 4 answers were served after such a retry, none right (3 of the 5 off-topic
        answers served); on the demo its one rescue was a compound question, whose second answer can add the
        part left open."""
        check = result.answer_check
        return (not self.settings.grounding_regenerate_unanswered and check is not None and not check.answers
                and all(v.supported for v in result.claims) and not question_parts(result.question))

    def _finish(self, result: GroundedAnswer, started: float) -> GroundedAnswer:
        result.timings_ms["total_ms"] = _ms(time.perf_counter() - started)
        return result

    def _record(self, result: GroundedAnswer, answer, attempt: int) -> None:
        result.prompt_version = self._prompt_version(result)
        self.store.record(result.request_id, result.claims, result.decision, result.risk, result.model,
                          result.prompt_version, attempt=attempt)

    def _prompt_version(self, result: GroundedAnswer) -> str:
        """The prompts whose judgements decided ``result``: the checks', the judge's claim prompt where it scored
        claims, and the answer judge's where it read the answer (with how many sentences a passage it read)."""
        parts = [PROMPT_VERSION]
        if self.scorer.loaded_judge(result.risk):
            parts.append(JUDGE_PROMPT_VERSION)
        if result.answer_check is not None and result.answer_check.judge_p is not None:
            cut = self.settings.grounding_answer_judge_sentences
            version = f"{ANSWER_PROMPT_VERSION}/sentences={cut}" if cut else ANSWER_PROMPT_VERSION
            if self.settings.grounding_answer_judge_pieces:
                version += "/pieces=max" + ("/parts" if self.settings.grounding_answer_judge_parts else "")
            parts.append(version)
        return "+".join(parts)

    def _attempt(self, question: str, answer, passages: list[Passage], risk: str, threshold: float,
                 review: bool = False) -> GroundedAnswer:
        request_id = getattr(answer, "request_id", "") or ""
        base = dict(request_id=request_id, question=question, risk=risk, threshold=threshold,
                    model=self.scorer.model_name(risk), answer=answer)
        split = split_claims(answer)
        if not split.claims and getattr(answer, "answerable", False) and getattr(answer, "sentences", None):
            # The model says it answers, yet no sentence states anything (the question said back, "The passages
            # do not mention it"): nothing to verify is no answer, not a verified one.
            check = AnswerCheck(asks=asked_for(question), supplied=False, answers=False)
            return self._withheld(base, split.sentences, check, NOT_ANSWERED_TEXT, review)
        if not split.claims:  # a decline or a failure message: nothing to verify
            return GroundedAnswer(decision="served", text=getattr(answer, "answer", "") or "",
                                  sentences=list(getattr(answer, "sentences", []) or []), confidence=1.0, **base)
        # The short answer rides along as one more claim (its evidence pool and scoring rounds are shared):
        # the question and the short answer as one statement, checked against the passages the answer cites.
        short = getattr(answer, "short_answer", None)
        if yes_or_no(short):  # set aside, never shown: the sentences must answer the yes/no question themselves
            short = None
        statement = answer_statement(question, short)
        checked = split
        if statement:
            cited = sorted({n for c in split.claims for n in c.passages})
            checked = SplitAnswer(split.sentences, [*split.claims, Claim(statement, -1, cited,
                                                                         veto_text=f"It is {short}.")],
                                  split.skipped, split.cites)
        verdicts, timings = self.check_claims(checked, passages, risk)
        short_verdict = verdicts.pop() if statement else None
        _apply_question_vetoes(verdicts, question)
        base["model"] = self.scorer.model_name(risk)  # now naming the judge if checking the claims loaded it
        failing = [v.claim for v in verdicts if not v.supported]
        indexed = _served_sentences(split, verdicts, passages, answer)
        sentences = [s for _, s in indexed]
        corrections = [CitationCorrection(claim=v.claim, sentence=v.sentence, cited=v.cited_passages,
                                          corrected_to=v.supporting_passages,
                                          chunk_ids=[passages[n - 1].chunk_id for n in v.supporting_passages])
                       for v in verdicts if v.citation in ("corrected", "added")]
        base.update(claims=verdicts, corrected_citations=corrections, failing_claims=failing, timings_ms=timings)
        if not failing:
            check = self._answer_check(question, verdicts, sentences, passages, risk, timings, short, short_verdict)
            if check.answers:
                return GroundedAnswer(decision="served", text=_text(sentences), sentences=sentences,
                                      confidence=min(v.score for v in verdicts), answer_check=check,
                                      short_answer=check.shown_short_answer(), **base)
            # Every claim holds, and none answers the question: the answer is the decline.
            base["failing_claims"] = [v.claim for v in verdicts]
            return self._withheld(base, split.sentences, check, NOT_ANSWERED_TEXT, review)

        bad = {v.sentence for v in verdicts if not v.supported}
        kept = [s for i, s in indexed if i not in bad]
        removed = [split.sentences[i] for i in sorted(bad)]
        kept_claims = [v for v in verdicts if v.sentence not in bad]
        if kept_claims and self._still_answers(question, split, verdicts, bad):
            check = self._answer_check(question, kept_claims, kept, passages, risk, timings, short, short_verdict)
            if check.answers:
                return GroundedAnswer(decision="repaired", text=_text(kept), sentences=kept,
                                      removed_sentences=removed, confidence=min(v.score for v in kept_claims),
                                      answer_check=check,
                                      short_answer=check.shown_short_answer(), **base)
            return self._withheld(base, split.sentences, check, NOT_ANSWERED_TEXT, review)
        return self._withheld(base, removed, None, REJECTED_TEXT, review)

    def _withheld(self, base: dict, removed: list[str], check: AnswerCheck | None, text: str,
                  review: bool) -> GroundedAnswer:
        """Rejected (or queued for a reviewer): none of the model's text is shown."""
        message = (REVIEW_TEXT if review else text).format(request_id=base["request_id"] or "-")
        return GroundedAnswer(decision="queued_for_review" if review else "rejected", text=message, sentences=[],
                              removed_sentences=removed, confidence=0.0, answer_check=check, **base)

    def _answer_check(self, question: str, verdicts: list[ClaimVerdict], sentences: list, passages: list[Passage],
                      risk: str, timings: dict, short: str | None = None,
                      short_verdict: ClaimVerdict | None = None) -> AnswerCheck:
        """Does what would be served answer the question? It must name what the question asks for (a time, a
        quantity, a person, a place: grounding/checks.py). A short answer must itself be of that kind and be
        stated by the passages as the answer to this question (question + short answer, one statement); with
        ``grounding_short_answer_decides`` a failing one declines the whole answer. Where the answer judge
        serves this risk level, the judge must also read the answer, in the passages it cites (or all those the
        model was given: ``grounding_answer_judge_passages``), as stated to be the answer; a compound question's
        answer passes when it answers one of its parts (``grounding_answer_judge_parts``)."""
        judge = self.scorer.load_judge() if risk in self.settings.grounding_answer_judge_risks else None
        judges_parts = (judge is not None and self.settings.grounding_answer_judge_parts
                        and self.settings.grounding_answer_judge_pieces)
        parts = question_parts(question) if judges_parts else []
        check = AnswerCheck(asks=asked_for(question), supplied=answers_what_is_asked(question,
                                                                                 [v.claim for v in verdicts]),
                            answers=False)
        check.answers = check.supplied
        if short_verdict is not None:
            check.short_answer, check.statement = short, short_verdict.claim
            check.short_answer_score = round(float(short_verdict.score), 4)
            check.short_answer_supported = bool(short_verdict.supported and short_answer_supplies(question, short))
            if check.short_answer_supported:
                check.supplied = check.answers = True
            elif self.settings.grounding_short_answer_decides and not parts:
                # (A compound question's one short answer covers a part at best: its sentences decide.)
                check.answers = False
        if not check.answers or judge is None:
            return check
        t = time.perf_counter()
        pieces = ([short] if check.short_answer_supported else []) + [s.text for s in sentences]
        served = " ".join(s.text for s in sentences)
        if check.short_answer_supported:
            served = f"{short}. {served}"
        read = self._judge_passages(passages, sentences, verdicts,
                                    short_verdict if check.short_answer_supported else None)
        documents = answer_judge_documents(question, served, read, self.encoder,
                                           self.settings.grounding_answer_judge_sentences,
                                           self.settings.grounding_threads)
        if self.settings.grounding_answer_judge_pieces and len(pieces) > 1:
            # Each piece as the proposed answer, over the same documents (their prefill is reused from the KV
            # cache after the first call): the answer passes when one piece is stated as the answer.
            check.judge_pieces = [round(judge.p_yes(answer_prompt(documents, question, piece)), 4) for piece in pieces]
            check.judge_p = max(check.judge_pieces)
            floor = self.settings.grounding_answer_judge_short_floor
            if check.short_answer_supported and check.judge_pieces[0] < floor:
                # The short answer is shown first, so it must read as the answer itself, not ride on a sentence.
                check.short_answer_withheld = (f"the judge gives the short answer {check.judge_pieces[0]:.2f} as the "
                                               f"answer (needs {floor:.2f} to be shown)")
        else:
            check.judge_p = round(judge.p_yes(answer_prompt(documents, question, served)), 4)
        check.threshold = self.settings.grounding_answer_judge_thresholds[risk]
        check.answers = check.judge_p >= check.threshold
        if parts and sentences:
            # "How long is the warranty, and how long with Care+?" answered for the warranty alone is not the
            # answer to both: each part is put to the judge with each served sentence (the same documents, so
            # the prefill is reused). An answer to one part is served, with the parts left open named.
            check.parts = []
            for part in parts:
                p = max(judge.p_yes(answer_prompt(documents, part, s.text)) for s in sentences)
                check.parts.append(PartCheck(question=part, judge_p=round(p, 4), answered=p >= check.threshold))
            if not check.answers and any(p.answered for p in check.parts):
                check.answers = True
                if check.short_answer_supported and not check.short_answer_withheld:
                    check.short_answer_withheld = "the answer covers only part of the question"
        timings["answer_judge_ms"] = _ms(time.perf_counter() - t)
        return check

    def _judge_passages(self, passages: list[Passage], sentences: list, verdicts: list[ClaimVerdict],
                        short_verdict: ClaimVerdict | None) -> list[Passage]:
        """What the answer judge reads: every passage the model read, or (``grounding_answer_judge_passages``
        "cited") only those the served sentences and the short answer cite after grounding's corrections (for
        a claim whose citations were trimmed, all those it held against), in the model's order. The judge's
        cost is its prefill, so fewer passages make it proportionally cheaper."""
        if self.settings.grounding_answer_judge_passages == "all":
            return list(passages)
        cited = {c.passage for s in sentences for c in s.citations}
        for verdict in [*verdicts, *([short_verdict] if short_verdict is not None else [])]:
            cited |= set(verdict.held_against)  # a supported claim's passages ([] for an unsupported one)
        return [p for p in passages if p.number in cited] or list(passages)

    def _still_answers(self, question: str, split: SplitAnswer, verdicts: list[ClaimVerdict], bad: set[int]) -> bool:
        """What remains after removing ``bad`` sentences still answers the question: its best match to the
        question is nearly as close as the whole answer's was (so the removed part was not the answer). A
        claim that restates the question is as close to it as can be, and no answer: it sets no bar."""
        texts = [v.claim for v in verdicts]
        vectors = self.encoder.encode([question] + texts, batch_size=32, threads=self.settings.grounding_threads)
        sims = np.asarray(vectors[1:]) @ np.asarray(vectors[0])
        answers = [float(s) for s, v in zip(sims, verdicts) if "restates_question" not in v.vetoes]
        whole = max(answers) if answers else float(sims.max())
        kept = [float(s) for s, v in zip(sims, verdicts) if v.sentence not in bad]
        if not kept:
            return False
        return max(kept) >= MIN_RELEVANCE and max(kept) >= MIN_RELEVANCE_KEPT * whole


def _apply_question_vetoes(verdicts: list[ClaimVerdict], question: str) -> None:
    """The question checks on supported claims: saying the question back is no answer, however well the
    passages support it."""
    for verdict in verdicts:
        late = question_vetoes(verdict.claim, question) if verdict.supported else []
        if late:
            verdict.supported = False
            verdict.vetoes = [*verdict.vetoes, *late]


def _numbers_split(claim: str, passages: list[str]) -> bool:
    """The claim states two or more numbers and no single one of ``passages`` holds them all."""
    wanted = numbers_in(claim)
    return len(wanted) >= 2 and not any(wanted <= numbers_in(text) for text in passages)


def _as_read(passage: Passage) -> str:
    """A passage with its document's source (the prompt shows it) and title, which name what it is about:
    "release-notes/firmware-2.0.md" holds the 2.0 of "firmware 2.0 cut the startup time from 0.9 to 0.6 s"."""
    return "\n".join(part for part in (passage.source, passage.title, passage.text) if part)


def _served_sentences(split: SplitAnswer, verdicts: list[ClaimVerdict], passages: list[Passage], answer) -> list:
    """(sentence index, AnswerSentence) per answer sentence, citations corrected to the passages that support them."""
    from answer.result import AnswerSentence, Citation

    original: dict[str, Citation] = {}
    for sentence in getattr(answer, "sentences", []) or []:
        for c in sentence.citations:
            original.setdefault(c.chunk_id, c)
    out = []
    for index, text in enumerate(split.sentences):
        cited_numbers, _ = split.cites[index] if index < len(split.cites) else ([], [])
        claims = [v for v in verdicts if v.sentence == index]
        numbers: list[int] = []
        if claims:
            for v in claims:
                for n in (v.supporting_passages or v.cited_passages):
                    if n not in numbers:
                        numbers.append(n)
        else:
            numbers = [n for n in cited_numbers if 1 <= n <= len(passages)]
        citations = []
        for n in numbers:
            p = passages[n - 1]
            quote = next((e.text for v in claims for e in v.evidence if e.passage == n), "")
            if p.chunk_id in original and not quote:
                quote = original[p.chunk_id].quote
            citations.append(Citation(passage=n, chunk_id=p.chunk_id, doc_id=p.doc_id, source=p.source,
                                      title=p.title, page=p.page, quote=quote))
        out.append((index, AnswerSentence(text=text, citations=citations)))
    return out


def _text(sentences) -> str:
    parts = []
    for s in sentences:
        marks = "".join(f"[{c.passage}]" for c in s.citations)
        parts.append(f"{s.text} {marks}".strip())
    return " ".join(parts)


def stricter_instruction(failing: list[str]) -> str:
    listed = "\n".join(f"- {c}" for c in failing)
    return ("Your previous answer contained statements that the passages do not support, or that do not answer "
            "the question:\n" + listed +
            "\nAnswer again using only facts stated in the passages. Leave out anything the passages do not "
            "state, and cite the passage that states each sentence. If the passages do not contain the answer, "
            "say \"The documents do not say.\"")
