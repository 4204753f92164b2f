"""The HTTP contract: pydantic models shared by server and client, and the source of the OpenAPI schema."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from answer.providers import ProviderName
# The answer stage's citation is already the contract's citation: one model serves both.
from answer.result import Attempt, CacheInfo, TokenCounts
from answer.result import Citation as CitationOut
from attest_settings import Risk
from grounding.decide import AnswerCheck

COLLECTION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
NOT_BLANK = r"\S"  # at least one character that is not white space
Decision = Literal["served", "repaired", "rejected", "queued_for_review"]
Verdict = Literal["supported", "unsupported", "unverified"]


class Filters(BaseModel):
    """Only chunks matching every given field (values of one field are ORed)."""

    model_config = ConfigDict(extra="forbid")
    doc_id: list[str] | None = Field(default=None, max_length=100)
    source: list[str] | None = Field(default=None, max_length=100)
    tags: list[str] | None = Field(default=None, max_length=100)

    def as_dict(self) -> dict[str, list[str]]:
        return {k: v for k, v in self.model_dump().items() if v}


# ---- questions ----------------------------------------------------------------------------------------
class QueryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"question": "How long is the warranty on the camera body?", "risk": "low"}]})
    question: str = Field(min_length=1, pattern=NOT_BLANK,
                          description="The question (at most ATTEST_API_MAX_QUESTION_CHARS characters).")
    collection: str | None = Field(default=None, pattern=COLLECTION_PATTERN,
                                   description="Defaults to the API key's first collection.")
    filters: Filters | None = None
    top_k: int | None = Field(default=None, ge=1, le=100,
                              description="Passages retrieved and given to the model (at most ATTEST_API_MAX_TOP_K).")
    risk: Risk = Field(default="low", description="high: the answer is verified before any of it is sent.")
    provider: ProviderName | None = Field(  # the registered providers (answer.providers.PROVIDER_NAMES)
        default=None, description="Only this provider (default: the configured fallback chain).")
    cache: bool = Field(default=True, description="Read and write the semantic answer cache.")


class ClaimVerdict(BaseModel):
    text: str
    sentence: int = Field(description="Index of the answer sentence the claim came from.")
    verdict: Verdict
    score: float | None = Field(default=None, description="P(supported), calibrated; None when not verified.")
    threshold: float | None = Field(default=None, description="The risk level's threshold the score was held to.")
    citations: list[str] = Field(default_factory=list, description="Chunk ids the claim cites.")
    evidence: list[str] = Field(default_factory=list, description="Chunk ids the verdict was based on.")
    supporting: list[str] = Field(default_factory=list, description="Chunk ids that support the claim.")
    signals: dict = Field(default_factory=dict)
    vetoes: list[str] = Field(default_factory=list, description="Deterministic checks that failed (e.g. a number).")
    citation: str = Field(default="none", description="ok | corrected | added | unsupported | none")
    corrected_citation: bool = False


class SourceOut(BaseModel):
    chunk_id: str
    doc_id: str
    source: str
    title: str = ""
    page: int | None = None
    score: float
    text: str


class QueryResponse(BaseModel):
    """DESIGN.md "Behaviour contracts": every answer carries all of this."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "request_id": "req_4f1c2a9b0d3e4c5f6a7b", "question": "How long is the warranty on the camera body?",
        "short_answer": "24 months",
        "answer": "The standard warranty on the K2 camera body lasts 24 months from the date of purchase. [1]",
        "decision": "served", "risk": "low", "verified": True, "confidence": 0.93,
        "citations": [{"passage": 1, "chunk_id": "c3f0a1", "doc_id": "warranty.md", "source": "data/demo/warranty.md",
                       "title": "Warranty", "page": None,
                       "quote": "The K2 camera body is covered for 24 months from the date of purchase."}],
        "claims": [{"text": "The standard warranty on the K2 camera body lasts 24 months from the date of purchase.",
                    "sentence": 0, "verdict": "supported", "score": 0.93, "threshold": 0.5, "citations": ["c3f0a1"],
                    "evidence": ["c3f0a1"], "supporting": ["c3f0a1"], "signals": {}, "vetoes": [],
                    "citation": "ok", "corrected_citation": False}],
        "status": "answered", "served_from": "model", "route": "simple", "tier": "fast", "provider": "local",
        "model": "qwen2.5-coder-0.5b", "prompt": "answer@2"}]})

    request_id: str
    question: str
    answer: str = Field(description="What may be shown: only supported (or repaired) text, never blank.")
    short_answer: str | None = Field(default=None, description=(
        "The entity, number, date or phrase that answers the question (\"24 months\"), shown before the "
        "sentences that back it; served only when the passages state it as the answer to this question. "
        "None when the question wants an explanation, or when it was not verified."))
    decision: Decision
    risk: Risk
    verified: bool = Field(description="False when no claim verification ran (the grounding stage is absent).")
    confidence: float | None = None
    citations: list[CitationOut] = Field(default_factory=list)
    claims: list[ClaimVerdict] = Field(default_factory=list)
    retracted: list[str] = Field(default_factory=list, description="Sentences removed because they did not hold up.")
    answer_check: AnswerCheck | None = Field(default=None, description="Whether what is served answers the "
                                                                       "question (absent when nothing was verified).")
    status: str = Field(description="The answer stage's status: answered, declined, unavailable, over_budget.")
    served_from: str
    route: str = ""
    tier: str = ""
    provider: str | None = None
    model: str | None = None
    prompt: str | None = None
    tokens: TokenCounts = Field(default_factory=TokenCounts)
    cost_usd: float | None = 0.0
    timings_ms: dict[str, float] = Field(default_factory=dict)
    notice: str | None = None
    sources: list[SourceOut] = Field(default_factory=list)
    cache: CacheInfo | None = None
    attempts: list[Attempt] = Field(default_factory=list)
    cache_lookup: bool = Field(default=False, exclude=True)


# ---- search -------------------------------------------------------------------------------------------
class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, pattern=NOT_BLANK)
    collection: str | None = Field(default=None, pattern=COLLECTION_PATTERN)
    filters: Filters | None = None
    top_k: int = Field(default=10, ge=1, le=100)
    mode: Literal["dense", "bm25", "hybrid", "rerank"] = "hybrid"


class SearchHit(BaseModel):
    id: str
    score: float
    text: str
    doc_id: str
    source: str
    title: str = ""
    page: int | None = None
    heading_path: list[str] = Field(default_factory=list)
    chunk_index: int = 0
    tags: list[str] = Field(default_factory=list)
    channels: dict[str, dict] = Field(default_factory=dict)


class SearchResponse(BaseModel):
    request_id: str
    collection: str
    hits: list[SearchHit]
    timings_ms: dict[str, float] = Field(default_factory=dict)


# ---- documents and jobs -------------------------------------------------------------------------------
JobStatus = Literal["queued", "running", "succeeded", "partial", "failed"]
FileStatus = Literal["pending", "ingested", "unchanged", "failed", "rejected"]


class JobFile(BaseModel):
    name: str = Field(description="The sanitised name the file was stored under (its document id).")
    original_name: str
    bytes: int
    status: FileStatus
    reason: str | None = None
    chunks: int | None = None


class JobOut(BaseModel):
    id: str
    status: JobStatus
    collection: str
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    files: list[JobFile]
    summary: dict = Field(default_factory=dict)
    error: str | None = None


class JobAccepted(BaseModel):
    job_id: str
    status: JobStatus
    collection: str
    files: list[JobFile]
    status_url: str


class DocumentOut(BaseModel):
    doc_id: str
    title: str
    tags: list[str] = Field(default_factory=list)
    chunks: int
    file_hash: str
    ingested_at: str


class DocumentList(BaseModel):
    collection: str
    documents: list[DocumentOut]


class DocumentDeleted(BaseModel):
    doc_id: str
    collection: str
    chunks_deleted: int


# ---- feedback -----------------------------------------------------------------------------------------
class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_id: str = Field(min_length=1, max_length=64)
    rating: Literal["up", "down"]
    correction: str | None = Field(default=None, max_length=20000,
                                   description="What the answer should have said (becomes a before/after pair).")
    comment: str | None = Field(default=None, max_length=5000)


class FeedbackStored(BaseModel):
    feedback_id: int
    request_id: str
    rating: str


# ---- health -------------------------------------------------------------------------------------------
class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Check(BaseModel):
    ok: bool
    detail: str


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, Check]
