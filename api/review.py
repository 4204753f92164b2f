"""The review desk: the policy around the review store (review/store.py), used by the HTTP routes
(api/routes/review.py) and by the question path.

- Queueing: ``queue_answer`` (an answer the checks withheld with review on), ``queue_feedback`` (a thumbs
  down), each stored with what a reviewer needs; a configurable share (``review_double_share``) goes to two
  reviewers independently.
- Scope: a principal with the role ``reviewer`` sees the items of the tenants its key names; any other item
  reads as not found (``NotFound``), so a reviewer cannot learn what another tenant asked.
- Edits: the reviewer's text is verified by the same Grounder against the sources the model was shown; the
  result is returned and recorded, and approving afterwards approves that text (even when the checks fail
  it: the verification stays in the record).
- Flagging after delivery (``start_flagging``, ``after_delivery``): review/quality.py scores a share of
  served answers off the request path and queues low scorers as ``flagged`` items.
- Outcomes: an approved or edited answer enters the semantic cache marked as reviewed
  (``review_cache_approved``); a rejected thumbs-down answer leaves it. ``outcome(request_id, tenant)`` is
  the asker's view (``GET /v1/queries/{request_id}``).
- Metrics: ``attest_review_queue_depth`` and ``attest_review_oldest_pending_seconds`` (read from the store at
  scrape time), ``attest_review_decisions_total``.

Item payload (JSON, ``review_items.payload``): ``draft`` {answer, sentences (with citations), provider,
model, prompt}, ``response`` (the QueryResponse the asker got: claims with verdicts, scores, vetoes and
evidence spans; sources with their text), ``filters``, ``grounding_prompt``, ``feedback`` [{rating, comment,
correction, api_key_id, at}].
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timezone

from answer.result import AnswerResult, AnswerSentence, Citation, unique_citations
from api.schemas import ClaimVerdict, QueryResponse, ReviewRef
from review.store import Conflict, NotFound, ReviewStore, iso, parse_iso  # noqa: F401 (re-exported)

log = logging.getLogger("attest.api.review")

POLL_PATH = "/v1/queries/{request_id}"
APPROVED_NOTICE = "A person reviewed this answer and approved it ({at})."
EDITED_NOTICE = "A person reviewed this answer and corrected it ({at})."
REJECTED_TEXT = ("A person reviewed the answer to this question and did not approve it, so none is shown. "
                 "(request id {request_id})")


def poll_url(request_id: str) -> str:
    return POLL_PATH.format(request_id=request_id)


def _double(request_id: str, share: float) -> bool:
    """Whether an item goes to two reviewers: a stable draw from the request id (the same item always
    gets the same answer; over many items the share is ``share``)."""
    if share <= 0:
        return False
    draw = int(hashlib.sha256(request_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return draw < share


class ReviewDesk:
    def __init__(self, settings, store: ReviewStore, question=None, records=None, metrics=None):
        self.settings = settings
        self.store = store
        self.question = question    # api.question.QuestionPath: the grounder for edits, the cache for outcomes
        self.records = records
        self.metrics = metrics
        self.flagger = None         # review.quality.QualityFlagger, once start_flagging() ran
        if metrics is not None:
            metrics.watch_review_queue(self)

    def start_flagging(self) -> None:
        """Score served answers after delivery (review/quality.py), with the grounding stage's judge."""
        from review.quality import QualityFlagger

        def judge():
            grounder = getattr(self.question, "grounder", None)
            return grounder.scorer.load_judge() if grounder is not None else None

        self.flagger = QualityFlagger(self.settings, self, judge, self.metrics)

    def after_delivery(self, response: QueryResponse, tenant: str, api_key_id: str, collection: str) -> None:
        """Called once an answer has been sent (or is about to be): queues it for the judge, never waits."""
        if self.flagger is not None:
            self.flagger.offer(response, tenant, api_key_id, collection)

    def close(self) -> None:
        if self.flagger is not None:
            self.flagger.stop()
        self.store.close()

    # ---- scope -----------------------------------------------------------------------------------------
    @staticmethod
    def tenants_of(principal) -> list[str] | None:
        """The tenants a principal may review (None: every tenant)."""
        if not principal.reviewer:
            return []
        return None if "*" in principal.review_tenants else list(principal.review_tenants)

    def item_for(self, principal, item_id: str) -> dict:
        item = self.store.get(item_id)
        if not principal.can_review(item["tenant"]):
            raise NotFound(item_id)
        return item

    # ---- queueing --------------------------------------------------------------------------------------
    def _required(self, request_id: str) -> int:
        return 2 if _double(request_id, self.settings.review_double_share) else 1

    def queue_answer(self, response: QueryResponse, draft: AnswerResult, *, collection: str, filters, tenant: str,
                     api_key_id: str, grounding_prompt: str | None = None) -> ReviewRef:
        """Store an answer the checks withheld (decision queued_for_review); the asker's poll reference."""
        payload = {
            "draft": {"answer": draft.answer, "sentences": [s.model_dump() for s in draft.sentences],
                      "provider": draft.provider, "model": draft.model, "prompt": draft.prompt},
            "response": response.model_dump(mode="json"), "filters": filters, "grounding_prompt": grounding_prompt,
            "feedback": []}
        item, _ = self.store.add_item(
            kind="failed_check", request_id=response.request_id, tenant=tenant, api_key_id=api_key_id,
            collection=collection, risk=response.risk, question=response.question, payload=payload,
            reviews_required=self._required(response.request_id), model=draft.model, prompt_version=draft.prompt)
        return self.ref(item)

    def queue_feedback(self, answered: dict, *, tenant: str, api_key_id: str, collection: str, rating: str,
                       comment: str | None, correction: str | None) -> dict:
        """A thumbs down on an answer: queued (or added to the request's item when it has one already)."""
        feedback = {"rating": rating, "comment": comment, "correction": correction, "api_key_id": api_key_id,
                    "at": iso(self.store.clock())}
        request_id = answered["request_id"]
        existing = self.store.by_request(request_id)
        if existing is not None:
            return self.store.add_feedback(existing["id"], feedback, actor=f"user:{api_key_id}")
        citations = [Citation.model_validate(c) for c in answered.get("citations", [])]
        payload = {
            # A served answer has no per-sentence citations in the response: one sentence holds them all.
            "draft": {"answer": answered.get("answer", ""),
                      "sentences": [AnswerSentence(text=answered.get("answer", ""), citations=citations).model_dump()],
                      "provider": answered.get("provider"), "model": answered.get("model"),
                      "prompt": answered.get("prompt")},
            "response": answered, "filters": None, "grounding_prompt": None, "feedback": [feedback]}
        item, _ = self.store.add_item(
            kind="feedback", request_id=request_id, tenant=tenant, api_key_id=answered.get("api_key_id", api_key_id),
            collection=collection, risk=answered.get("risk", "low"), question=answered.get("question", ""),
            payload=payload, reviews_required=self._required(request_id), model=answered.get("model"),
            prompt_version=answered.get("prompt"), actor=f"user:{api_key_id}")
        return item

    def queue_flagged(self, response: QueryResponse, *, tenant: str, api_key_id: str, collection: str,
                      flag: dict) -> dict:
        """A served answer the quality judge scored low, or served with low confidence."""
        payload = {
            "draft": {"answer": response.answer,
                      "sentences": [AnswerSentence(text=response.answer, citations=response.citations).model_dump()],
                      "provider": response.provider, "model": response.model, "prompt": response.prompt},
            "response": response.model_dump(mode="json"), "filters": None, "grounding_prompt": None,
            "feedback": [], "flag": flag}
        item, _ = self.store.add_item(
            kind="flagged", request_id=response.request_id, tenant=tenant, api_key_id=api_key_id,
            collection=collection, risk=response.risk, question=response.question, payload=payload,
            reviews_required=self._required(response.request_id), model=response.model,
            prompt_version=response.prompt, actor="quality-judge")
        return item

    @staticmethod
    def ref(item: dict) -> ReviewRef:
        return ReviewRef(item_id=item["id"], status=item["status"], poll_url=poll_url(item["request_id"]),
                         decided_at=item.get("decided_at"))

    # ---- reviewer actions ------------------------------------------------------------------------------
    def claim(self, principal, item_id: str) -> dict:
        self.item_for(principal, item_id)
        return self.store.claim(item_id, principal.key_id, self.settings.review_lease_s)

    def release(self, principal, item_id: str) -> dict:
        self.item_for(principal, item_id)
        return self.store.release(item_id, principal.key_id)

    def edit(self, principal, item_id: str, text: str) -> dict:
        """Verify the reviewer's text against the sources the model was shown; recorded as an edit."""
        item = self.item_for(principal, item_id)
        if item["stored_status"] not in ("pending", "disputed"):
            raise Conflict(f"item {item_id} is already decided ({item['stored_status']} at {item['decided_at']})")
        if not any(l["reviewer"] == principal.key_id for l in item["leases"]):
            raise Conflict(f"you hold no lease on item {item_id} (it expired, or it was never claimed): claim it "
                           f"first")
        verification = self.verify_text(item, text)
        return self.store.record_edit(item_id, principal.key_id, text, verification)

    def verify_text(self, item: dict, text: str) -> dict:
        from api.question import Verification
        from grounding.claims import split_sentences
        from retrieval.search import Hit

        grounder = getattr(self.question, "grounder", None)
        if grounder is None:
            return {"decision": "unverified", "text": text, "claims": [], "sentences": [], "confidence": None,
                    "notice": "no claim verifier is configured: the text was not checked"}
        sources = item["payload"]["response"].get("sources", [])
        hits = [Hit(id=s["chunk_id"], score=float(s.get("score") or 0.0), text=s["text"], doc_id=s["doc_id"],
                    source=s["source"], title=s.get("title", ""), page=s.get("page")) for s in sources]
        edit_id = f"{item['request_id']}:edit"
        answer = AnswerResult(request_id=edit_id, question=item["question"], status="answered", served_from="model",
                              answer=text, answerable=True, route="review", tier="review", provider="reviewer",
                              sentences=[AnswerSentence(text=s) for s in split_sentences(text)])
        grounded = grounder.verify(item["question"], answer, hits, item["risk"], None, review=False)
        checked = Verification.from_grounded(grounded, hits, answer)
        return {"decision": grounded.decision, "text": grounded.text,
                "claims": [c.model_dump(mode="json") for c in checked.claims],
                "sentences": [s.model_dump() for s in grounded.sentences], "confidence": checked.confidence,
                "answer_check": grounded.answer_check.model_dump() if grounded.answer_check else None,
                "prompt_version": grounded.prompt_version}

    def approve(self, principal, item_id: str) -> dict:
        """Approve the draft, or the reviewer's last edit made under the current lease (then ``edited``)."""
        item = self.item_for(principal, item_id)
        lease = next((l for l in item["leases"] if l["reviewer"] == principal.key_id), None)
        edit = self.store.latest_edit(item_id, principal.key_id, since=lease["claimed_at"]) if lease else None
        if edit is not None:
            decided = self.store.decide(item_id, principal.key_id, "edited", text=edit["text"],
                                        verification=edit["verification"])
        else:
            decided = self.store.decide(item_id, principal.key_id, "approved")
        self._after_decision(decided, "edited" if edit else "approved")
        return decided

    def reject(self, principal, item_id: str, reason: str, unanswerable: bool = False) -> dict:
        self.item_for(principal, item_id)
        decided = self.store.decide(item_id, principal.key_id, "rejected", reason=reason, unanswerable=unanswerable)
        self._after_decision(decided, "rejected")
        return decided

    def _after_decision(self, item: dict, action: str) -> None:
        if self.metrics is not None:
            self.metrics.review_decisions.labels(action, item["kind"]).inc()
        if item["stored_status"] in ("approved", "edited") and self.settings.review_cache_approved:
            self._cache(item)
        elif item["stored_status"] == "rejected" and item["kind"] != "failed_check":
            self._uncache(item)

    # ---- what a decision feeds -------------------------------------------------------------------------
    def final_sentences(self, item: dict) -> list[AnswerSentence]:
        """The decided answer's sentences with their citations."""
        if item["stored_status"] == "edited":
            decision = next(d for d in reversed(item["decisions"]) if d["action"] == "edited"
                            and d["text"] == item["final_text"])
            verification = decision.get("verification") or {}
            if verification.get("decision") == "served" and verification.get("sentences"):
                return [AnswerSentence.model_validate(s) for s in verification["sentences"]]
            return self._marked_sentences(item, item["final_text"] or "")
        return [AnswerSentence.model_validate(s) for s in item["payload"]["draft"].get("sentences", [])]

    @staticmethod
    def _marked_sentences(item: dict, text: str) -> list[AnswerSentence]:
        """Sentences of a reviewer's text, cited where its [n] marks name a source the model was shown."""
        from grounding.claims import markers, split_sentences

        sources = item["payload"]["response"].get("sources", [])
        out = []
        for sentence in split_sentences(text):
            citations = [Citation(passage=n, chunk_id=sources[n - 1]["chunk_id"], doc_id=sources[n - 1]["doc_id"],
                                  source=sources[n - 1]["source"], title=sources[n - 1].get("title", ""),
                                  page=sources[n - 1].get("page"), quote="")
                         for n in markers(sentence) if 1 <= n <= len(sources)]
            out.append(AnswerSentence(text=sentence, citations=citations))
        return out

    def _cache_of(self):
        pipeline = getattr(self.question, "pipeline", None)
        return getattr(pipeline, "cache", None)

    def _cache(self, item: dict) -> None:
        """The reviewed answer enters the semantic cache as the answer to its question, marked as reviewed.
        A thumbs-down item approved as it was needs nothing: that answer is already what is served."""
        cache = self._cache_of()
        if cache is None or (item["kind"] != "failed_check" and item["stored_status"] == "approved"):
            return
        try:
            sentences = self.final_sentences(item)
            citations = unique_citations(sentences)
            draft = item["payload"]["draft"]
            reviewed = {"item_id": item["id"], "action": item["stored_status"], "at": item["decided_at"],
                        "risk": item["risk"]}
            cached = {"answer": item["final_text"], "sentences": [s.model_dump() for s in sentences],
                      "provider": draft.get("provider") if item["stored_status"] == "approved" else "reviewer",
                      "model": draft.get("model") if item["stored_status"] == "approved" else None,
                      "prompt": draft.get("prompt"), "route": "review", "reviewed": reviewed}
            vector = self.question.encoder.encode_query(item["question"], threads=self.settings.query_threads)
            entry_id = cache.remember(item["collection"], item["question"], vector, cached,
                                      [c.doc_id for c in citations], item["payload"].get("filters"))
            if entry_id and self.records is not None:
                claims = self._final_claims(item)
                self.records.store_cached_verdicts(entry_id, {"claims": [c.model_dump() for c in claims],
                                                              "confidence": None, "reviewed": reviewed})
        except Exception as exc:  # noqa: BLE001 - the decision stands even if the cache write fails
            log.warning("could not cache the reviewed answer of %s: %s", item["id"], exc)

    def _uncache(self, item: dict) -> None:
        """A served answer a reviewer rejected is not served from the cache again."""
        cache = self._cache_of()
        if cache is None:
            return
        try:
            cache.forget(item["collection"], item["question"], item["payload"].get("filters"))
        except Exception as exc:  # noqa: BLE001
            log.warning("could not remove the rejected answer of %s from the cache: %s", item["id"], exc)

    def _final_claims(self, item: dict) -> list[ClaimVerdict]:
        if item["stored_status"] == "edited":
            decision = next(d for d in reversed(item["decisions"]) if d["action"] == "edited")
            return [ClaimVerdict.model_validate(c) for c in (decision.get("verification") or {}).get("claims", [])]
        return [ClaimVerdict.model_validate(c) for c in item["payload"]["response"].get("claims", [])]

    # ---- the asker's view ------------------------------------------------------------------------------
    def outcome(self, request_id: str, tenant: str) -> QueryResponse | None:
        """The answer to ``request_id`` as its tenant sees it now: as served, waiting for review, or as a
        person decided it. None when the tenant has no such request."""
        item = self.store.by_request(request_id)
        if item is None or item["tenant"] != tenant:
            stored = self.records.query(request_id, tenant) if self.records is not None else None
            return QueryResponse.model_validate(stored) if stored else None
        response = QueryResponse.model_validate(item["payload"]["response"])
        update: dict = {"review": self.ref(item)}
        status = item["stored_status"]
        when = item["decided_at"]
        if status in ("approved", "edited"):
            sentences = self.final_sentences(item)
            update.update(decision="served", answer=item["final_text"], citations=unique_citations(sentences),
                          claims=self._final_claims(item), retracted=[],
                          notice=(APPROVED_NOTICE if status == "approved" else EDITED_NOTICE).format(at=when))
        elif status == "rejected":
            text = REJECTED_TEXT.format(request_id=request_id)
            update.update(decision="rejected", answer=text, citations=[], notice=text)
        return response.model_copy(update=update)
