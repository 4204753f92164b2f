"""attest's one configuration object.

Read once at start (environment variables prefixed ``ATTEST_``, then an optional ``attest.toml`` in the
working directory, then the defaults below) and passed down; no other module reads the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


# The risk levels a question may be asked at, named once: the HTTP schema and the CLI options take them
# from here, and grounding's calibration holds one threshold for each.
Risk = Literal["low", "high"]
# The answer judge's P(yes) threshold per risk level, for its prompt answer-judge@2 read piece by piece
# (grounding_answer_judge_pieces): low risk is the permissive one. Chosen on HotpotQA dev 0-49 and the demo's
# hand-labelled answers, replayed (benchmarks/answer_judge_replay.py; README, issue 13); with the whole answer in
# one call they were 0.5 and 0.6.
ANSWER_JUDGE_THRESHOLDS: dict[str, float] = {"low": 0.45, "high": 0.5}
# The judge models those thresholds were measured for: the 0.5B's P(yes) never reached 0.5 on 82 replayed
# answers (README), so under them it would decline nearly everything (the Grounder warns at start).
ANSWER_JUDGE_CALIBRATED = ("qwen2.5-coder-1.5b",)
# Which GGUF file the local provider loads: the packaged one, or it requantized once (answer/models.py).
LocalWeights = Literal["shipped", "q8_0"]


class ModelPrice(BaseModel):
    """US dollars per million tokens."""

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)


# List prices at the time of writing; override with ATTEST_PRICES='{"model": {"input_per_mtok": ..., ...}}'.
# A model missing here is answered with cost_usd = None (unknown), never a guessed number.
DEFAULT_PRICES: dict[str, ModelPrice] = {
    "gpt-4o-mini": ModelPrice(input_per_mtok=0.15, output_per_mtok=0.60),
    "gpt-4o": ModelPrice(input_per_mtok=2.50, output_per_mtok=10.00),
    "gpt-4.1-mini": ModelPrice(input_per_mtok=0.40, output_per_mtok=1.60),
    "gpt-4.1": ModelPrice(input_per_mtok=2.00, output_per_mtok=8.00),
    "claude-3-5-haiku-latest": ModelPrice(input_per_mtok=0.80, output_per_mtok=4.00),
    "claude-haiku-4-5": ModelPrice(input_per_mtok=1.00, output_per_mtok=5.00),
    "claude-sonnet-4-5": ModelPrice(input_per_mtok=3.00, output_per_mtok=15.00),
}


class ApiKeySpec(BaseModel):
    """What one API key may do: its tenant, and the collections it may read and write ("*" = every one)."""

    tenant: str = Field(min_length=1, max_length=64)
    collections: list[str] = Field(default_factory=list)
    read_only_collections: list[str] = Field(default_factory=list)
    # "reviewer": may list, claim and decide review items of the tenants in review_tenants ("*" = every one);
    # "request_review": may send `"review": true` (or false) with a question, overriding ATTEST_GROUNDING_REVIEW.
    roles: list[Literal["reviewer", "request_review"]] = Field(default_factory=list)
    review_tenants: list[str] = Field(default_factory=list)


# ---- the answer providers' settings -------------------------------------------------------------------
class ProviderSettings(BaseModel):
    """One answer provider's part of the settings, typed, under short names.

    ``name`` is the provider's name: the one place it is written (the registry in ``answer.providers`` maps
    it to the provider class, ``answer_providers`` and the HTTP ``provider`` field accept it). The values live in
    ``Settings`` as the flat fields ``<name>_<field>``, so each stays the environment variable
    ``ATTEST_<NAME>_<FIELD>`` (and the attest.toml key ``<name>_<field>``) that the README documents; their
    defaults and limits are declared there, once. ``Settings.provider_settings(name)`` gathers them here.
    """

    model_config = ConfigDict(frozen=True)
    name: ClassVar[str]

    first_token_timeout_s: float
    total_timeout_s: float

    @classmethod
    def flat_field(cls, field: str) -> str:
        """The ``Settings`` field (and, upper-cased with ``ATTEST_``, the environment variable) behind ``field``."""
        return f"{cls.name}_{field}"

    @classmethod
    def from_settings(cls, settings: Any) -> "ProviderSettings":
        return cls(**{field: getattr(settings, cls.flat_field(field)) for field in cls.model_fields})


class LocalSettings(ProviderSettings):
    """llama.cpp in process: ATTEST_LOCAL_MODEL, ATTEST_LOCAL_STRONG_MODEL, ATTEST_LOCAL_THREADS, ..."""

    name = "local"
    model: str
    strong_model: str
    threads: int
    ctx: int
    weights: LocalWeights


# How to ask an OpenAI-compatible endpoint for JSON (answer/providers/openai.py).
OpenAIResponseFormat = Literal["json_schema", "json_object_schema", "json_object", "none"]


class OpenAISettings(ProviderSettings):
    """Any OpenAI-compatible endpoint: ATTEST_OPENAI_BASE_URL, ATTEST_OPENAI_API_KEY, ATTEST_OPENAI_MODEL, ..."""

    name = "openai"
    base_url: str
    api_key: SecretStr | None
    model: str
    strong_model: str | None
    response_format: OpenAIResponseFormat


class AnthropicSettings(ProviderSettings):
    """Anthropic's Messages API: ATTEST_ANTHROPIC_BASE_URL, ATTEST_ANTHROPIC_API_KEY, ATTEST_ANTHROPIC_MODEL, ..."""

    name = "anthropic"
    base_url: str
    api_key: SecretStr | None
    model: str
    strong_model: str | None
    version: str


# Every provider's settings sub-model by provider name, in the order `attest ask --help` lists them.
PROVIDER_SETTINGS: dict[str, type[ProviderSettings]] = {
    model.name: model for model in (LocalSettings, OpenAISettings, AnthropicSettings)}
PROVIDER_NAMES: tuple[str, ...] = tuple(PROVIDER_SETTINGS)
ProviderName = Literal[PROVIDER_NAMES]  # type: ignore[valid-type]  # built from the names above


def unknown_provider(name: str) -> ValueError:
    return ValueError(f"unknown provider {name!r}: valid providers are {', '.join(PROVIDER_NAMES)}")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ATTEST_", toml_file="attest.toml", extra="ignore")

    # Where the index, the manifest, the SQLite database and model caches live.
    data_dir: Path = Path(".attest")
    collection: str = "default"

    # Where the state lives (usage, records, verdicts, keys, jobs, evaluation runs, the ingest manifest):
    # unset = SQLite files in data_dir; postgresql://user:password@host:5432/db = one PostgreSQL for every worker.
    database_url: str | None = Field(default=None, pattern=r"^(postgresql|postgres|sqlite)://")

    # Vector store backend: the embedded qdrant-edge shard, or a Qdrant server/cluster.
    qdrant_url: str | None = None
    qdrant_api_key: SecretStr | None = None
    qdrant_shard_number: int = Field(default=1, ge=1)
    qdrant_replication_factor: int = Field(default=1, ge=1)

    # Chunking, in tokens of the embedding model's tokenizer.
    chunk_tokens: int = Field(default=256, ge=32, le=512)
    chunk_overlap: int = Field(default=32, ge=0)
    embed_batch_size: int = Field(default=32, ge=1, le=1024)
    # Threads torch may use while embedding documents (ingest) and queries (serving).
    ingest_threads: int = Field(default=2, ge=1)
    query_threads: int = Field(default=1, ge=1)
    # Points written to the store per update call; a killed run loses at most one batch of work.
    write_batch_size: int = Field(default=256, ge=1)
    # Chunks embedded together before their documents are written (length-sorted batches inside).
    ingest_group_chunks: int = Field(default=512, ge=1)
    # Larger files are reported and skipped: 25 MB of text is hours of embedding on a small CPU.
    max_file_mb: float = Field(default=25.0, gt=0)

    # BM25 term-frequency saturation (k1) and length normalisation (b); IDF is applied by Qdrant.
    bm25_k1: float = Field(default=1.2, ge=0)
    bm25_b: float = Field(default=0.75, ge=0, le=1)
    # Average document length, in BM25 tokens, used for length normalisation.
    bm25_avg_len: float = Field(default=120.0, gt=0)

    # Retrieval defaults.
    top_k: int = Field(default=10, ge=1, le=100)
    prefetch_k: int = Field(default=100, ge=1, le=1000)
    fusion: Literal["rrf", "dbsf", "weighted"] = "weighted"
    rrf_k: int = Field(default=60, ge=1)
    dense_weight: float = Field(default=0.5, ge=0, le=1)

    # ---- answer stage -------------------------------------------------------------------------------
    # Providers tried in order (the fallback chain); each answers with its model for the route's tier.
    # Each provider's own settings below are its flat fields <name>_<field> (see ProviderSettings).
    answer_providers: list[ProviderName] = Field(default_factory=lambda: ["local"])
    # Local llama.cpp models by registry name (answer/models.py); "strong" serves complex questions.
    local_model: str = "qwen2.5-coder-0.5b"
    local_strong_model: str = "qwen2.5-coder-1.5b"
    # Where assembled GGUF files go; default <data_dir>/cache/models. Share one folder between data dirs.
    model_cache_dir: Path | None = None
    # "shipped" (default): the packaged Q4_K_M file; "q8_0": it requantized once by llama.cpp, prefill 0.76x
    # (benchmarks/llama_settings.py), golden gate identical; not yet the default: the whole suite has not run on it.
    local_weights: LocalWeights = "shipped"
    local_threads: int = Field(default=2, ge=1)
    local_ctx: int = Field(default=4096, ge=1024)
    # A 2-core CPU needs seconds of prefill before the first token: local limits are wider than remote ones.
    local_first_token_timeout_s: float = Field(default=60.0, gt=0)
    local_total_timeout_s: float = Field(default=120.0, gt=0)
    # Any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp server, LM Studio).
    openai_base_url: str = "https://api.openai.com/v1"
    openai_api_key: SecretStr | None = None
    openai_model: str = "gpt-4o-mini"
    openai_strong_model: str | None = None
    # How to ask for JSON: OpenAI's json_schema, llama.cpp server's json_object + schema, or prompt only.
    openai_response_format: OpenAIResponseFormat = "json_schema"
    openai_first_token_timeout_s: float = Field(default=8.0, gt=0)
    openai_total_timeout_s: float = Field(default=30.0, gt=0)
    # Anthropic's Messages API.
    anthropic_base_url: str = "https://api.anthropic.com"
    anthropic_api_key: SecretStr | None = None
    anthropic_model: str = "claude-3-5-haiku-latest"
    anthropic_strong_model: str | None = None
    anthropic_version: str = "2023-06-01"
    anthropic_first_token_timeout_s: float = Field(default=8.0, gt=0)
    anthropic_total_timeout_s: float = Field(default=30.0, gt=0)
    prices: dict[str, ModelPrice] = Field(default_factory=lambda: dict(DEFAULT_PRICES))

    # Prompts (answer/prompts/<name>@<version>.txt); the retry uses the simplified one.
    answer_prompt: str = "answer@3"
    # A folder searched before answer/prompts/ for <name>@<version>.txt (your own or a candidate prompt).
    prompts_dir: Path | None = None
    answer_retry_prompt: str = "answer-simple@2"
    answer_passages: int = Field(default=5, ge=1, le=20)
    answer_max_tokens: int = Field(default=400, ge=32, le=4096)
    # Sentences of each passage the model reads on the simple route (the best matches to the question, plus
    # the sentence a kept one refers back to): answer/condense.py. 0 shows whole passages (default). 5: golden-ci
    # citation precision 0.78 -> 0.87 and p50 0.68x, but the demo's unanswerable questions declined 5/12 vs
    # 7/12 whole. With the answer judge on (stop 29), 3 + q8_0: p50 0.93x, 3 more wrong answers served: off.
    answer_condense_sentences: int = Field(default=0, ge=0, le=50)
    # When the fast model declines, or its answer fails verification, ask the strong model (the complex
    # route's) once: grounding's one regeneration is then the strong model's (api/question.py). An answer
    # whose claims all hold but answer nothing gets no regeneration (grounding_regenerate_unanswered), so none.
    answer_escalate: bool = False
    # Only when the fast model declines outright, the strong model answers once (on by itself, or implied by
    # answer_escalate). The 0.5B declined 4 demo how-to questions whose answer was in passage 1; the 1.5B
    # answered all 4 (README "Escalation on a decline"). Rare on HotpotQA (3 of 100 requests): little latency.
    answer_escalate_declines: bool = True
    # Which tier answers a complex question first. "fast": the fast model, then (escalation above) the strong
    # one only when it declines; "strong": the strong model.
    answer_complex_tier: Literal["strong", "fast"] = "strong"
    # Circuit breaker per provider: opens after N consecutive failures, probes again after the cool-down.
    breaker_failures: int = Field(default=3, ge=1)
    breaker_cooldown_s: float = Field(default=30.0, gt=0)
    # Semantic cache: cosine similarity of question embeddings (MiniLM) at or above which a cached answer is served.
    # Tuned on the demo golden set (benchmarks/answer.py): different questions reach at most 0.77, reworded
    # ones 0.67-1.0 (median 0.98); 0.85 served 74% of rewordings and no wrong question.
    cache_enabled: bool = True
    cache_threshold: float = Field(default=0.85, gt=0, le=1)
    # When every provider failed, a less similar cached answer (served with a notice) beats no answer.
    cache_fallback_threshold: float = Field(default=0.80, gt=0, le=1)
    # Token budgets (prompt + completion, counted before the call); 0 = unlimited.
    budget_request_tokens: int = Field(default=6000, ge=0)
    budget_key_daily_tokens: int = Field(default=500_000, ge=0)
    budget_org_monthly_tokens: int = Field(default=10_000_000, ge=0)

    # ---- HTTP API (api/) --------------------------------------------------------------------------------
    # "keys": every request needs an API key (ATTEST_API_KEYS and/or the api_keys table of attest.sqlite).
    # "open": no key, every collection readable and writable; for local use only (loopback hosts only).
    api_auth_mode: Literal["keys", "open"] = "keys"
    # {"<key>": {"tenant": "acme", "collections": ["acme-docs"], "read_only_collections": []}}; "*" = all.
    api_keys: dict[str, ApiKeySpec] = Field(default_factory=dict)
    # Limits: a request over one gets a 4xx problem+json saying which limit and its value.
    api_max_body_kb: int = Field(default=256, ge=1)             # JSON bodies
    api_max_question_chars: int = Field(default=2000, ge=1)
    api_max_top_k: int = Field(default=20, ge=1, le=100)
    api_max_upload_mb: float = Field(default=25.0, gt=0)        # per file
    api_max_upload_files: int = Field(default=50, ge=1)
    api_max_upload_total_mb: float = Field(default=100.0, gt=0) # a whole multipart body
    # Admission control for the question path: requests beyond max_concurrent wait in a queue of at most
    # max_queue for queue_timeout_s; beyond that they get 503 + Retry-After (never dropped silently).
    # One API key may hold at most max_inflight_per_key of those slots (beyond: 429 + Retry-After).
    api_max_concurrent: int = Field(default=4, ge=1)
    api_max_queue: int = Field(default=32, ge=0)
    api_queue_timeout_s: float = Field(default=30.0, gt=0)
    api_max_inflight_per_key: int = Field(default=16, ge=1)
    # The key the CLI sends when it forwards work to a running `attest serve` in keys mode.
    api_client_key: SecretStr | None = None
    # Server-sent events: a comment line this often while nothing else is sent (keeps proxies from closing).
    api_stream_keepalive_s: float = Field(default=10.0, gt=0)
    # Logs: one JSON object per line on stderr (False: plain text).
    log_json: bool = True
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # OpenTelemetry: spans per stage, exported over OTLP/HTTP when an endpoint is set.
    otel_endpoint: str | None = None
    otel_service_name: str = "attest"

    # ---- grounding stage (grounding/) -------------------------------------------------------------------
    # Verify every claim before an answer is served. Scores are calibrated P(supported) (grounding/calibration.json);
    # each risk level has its threshold there: low = best balanced accuracy, high = at most 5% of unsupported
    # claims pass (measured with 5-fold cross-validation on SciFact pairs, benchmarks/grounding.py).
    grounding_enabled: bool = True
    grounding_default_risk: Risk = "low"
    # A language-model judge beside the trained verifier: "local" (a packaged GGUF model, see
    # grounding_judge_model), "openai" (any OpenAI-compatible endpoint that returns logprobs) or "none". It
    # serves the risk levels in grounding_judge_risks, by default high risk only: there it lets fewer
    # unsupported claims through (3.3% against 5.4%) and more supported ones (47% against 34%), for about
    # 5 s more per answer on 2 cores (benchmarks/grounding.py); low-risk answers stay fast. Loaded on first use;
    # if it cannot be loaded, the verifier decides alone.
    grounding_judge: Literal["none", "local", "openai"] = "local"
    grounding_judge_risks: list[Risk] = ["high"]
    # The judge's model: a local registry name (answer/models.py) or the endpoint's model; default: the strong
    # local model for "local", openai_model for "openai".
    grounding_judge_model: str | None = None
    # Which claims the judge reads: "borderline" (only those whose verifier score lies within
    # grounding_judge_band of the risk level's threshold; the rest are clear either way) or "all". Measured on
    # 160 SciFact pairs (benchmarks/grounding.py): band 0.3 judged 66% of the claims for balanced accuracy
    # 0.782, "all" 0.775, the verifier alone 0.679, the raw 1.5B judge 0.758.
    grounding_judge_scope: Literal["borderline", "all"] = "borderline"
    grounding_judge_band: float = Field(default=0.3, gt=0, le=1)
    # The verifier's share when its margin and the judge's are mixed (benchmarks/grounding.py: 0.5).
    grounding_judge_weight: float = Field(default=0.5, ge=0, le=1)
    # Calibration profile (grounding/calibration.json): "verifier" (default) or "checks" (no trained model).
    grounding_profile: str = "verifier"
    # A candidate claim verifier to try instead of the shipped one (its folder: weights, verifier.json and its
    # own calibration.json); unset: grounding/verifier + grounding/calibration.json.
    grounding_verifier_dir: Path | None = None
    # Evidence sentences per claim given to the verifier; default: the count it was trained with.
    grounding_evidence_sentences: int | None = Field(default=None, ge=1, le=10)
    # A number the claim states that its evidence passages do not contain makes the claim unsupported.
    grounding_number_veto: bool = True
    # A name, code or compound term (e.g. "lithium-ion") that no retrieved passage contains makes the claim
    # unsupported. Right for generated answers (built from the passages); on human paraphrases (SciFact) it
    # also rejects a quarter of the true claims: benchmarks/grounding.py reports both.
    grounding_term_veto: bool = True
    # Torch threads for the verifier and the evidence embeddings.
    grounding_threads: int = Field(default=2, ge=1)
    # Failing answers go to a review queue (decision queued_for_review) instead of being rejected.
    grounding_review: bool = False

    # ---- human review (review/, api/review.py) ------------------------------------------------------------
    # How long a reviewer's claim on an item lasts; after it the item is free for another reviewer.
    review_lease_s: float = Field(default=600.0, gt=0)
    # The share of new items routed to two reviewers independently (their agreement rate is reported).
    review_double_share: float = Field(default=0.0, ge=0, le=1)
    # Approved and edited answers enter the semantic cache, marked as reviewed.
    review_cache_approved: bool = True
    # After delivery (never delaying it): this share of served answers is scored by the LLM quality judge
    # (the grounding judge's model: the local one by default; rubric review/prompts/quality@1.txt); a score
    # under review_judge_threshold, or a served answer's confidence under review_flag_confidence, queues the
    # answer as a "flagged" item. review_judge_queue answers may wait for the judge; more are skipped.
    review_judge_share: float = Field(default=0.0, ge=0, le=1)
    review_judge_threshold: float = Field(default=0.5, gt=0, lt=1)
    review_flag_confidence: float = Field(default=0.0, ge=0, le=1)
    review_judge_queue: int = Field(default=100, ge=1)
    # The reviewer page (/review): how long a sign-in lasts (a signed cookie; the key is re-checked on every
    # request, so revoking it or removing its reviewer role ends the session at once).
    review_session_s: float = Field(default=8 * 3600.0, gt=0)
    # The answer as a whole, at these risk levels: the judge is asked once per answer that passed every other
    # check whether the passages state the served answer as the answer to the question; under the risk
    # level's P(yes) threshold the answer is declined (README, issue 13: on held-out HotpotQA questions at low
    # risk, reading every passage, off-topic answers declined 76% -> 84%, good answers kept as without it).
    grounding_answer_judge_risks: list[Risk] = ["low", "high"]
    grounding_answer_judge_thresholds: dict[Risk, float] = ANSWER_JUDGE_THRESHOLDS
    # What the answer judge reads: only the passages the served answer cites ("cited": about 0.4x the prompt,
    # and the prefill is the judge's whole cost; AUROC 0.73 against 0.70 with "all" on 82 replayed answers),
    # or "all" the passages the model read.
    grounding_answer_judge_passages: Literal["all", "cited"] = "cited"
    # The answer judge reads each of those passages cut to N sentences: for every sentence of the served answer
    # (and the short answer) the one it best matches, then the best matches for question + answer up to N
    # (grounding/evidence.py answer_judge_documents); 0 reads them whole. 2 (README, issue 13): judge time 0.53x
    # on the demo corpus's answers (0.8x on HotpotQA's short paragraphs), AUROC 0.850/0.866/0.784 against
    # 0.850/0.853/0.727 whole on three replayed sets, 6 fewer wrong answers served and 1 fewer right one.
    grounding_answer_judge_sentences: int = Field(default=2, ge=0, le=50)
    # The judge reads the answer piece by piece: the short answer and each served sentence, each as the proposed
    # answer in its own call over the same documents; the answer passes when its best piece does. A two-part
    # answer is no longer judged as one proposed answer. On 154 replayed answers (README, issue 13) AUROC 0.849
    # against 0.805 in one call; held out (HotpotQA 50-99), off-topic answers declined 45/50 against 42/50, good
    # drafts kept 7/12 against 8/12. Its weak spot: a true sentence can carry a wrong short answer. Off: one call.
    grounding_answer_judge_pieces: bool = True
    # Read piece by piece, the short answer is shown only when its own piece reaches this P(yes); under it the
    # sentences that passed are served without it. The best-piece rule otherwise lets a true sentence carry a wrong
    # short answer ("4 minutes", the installation time, before "The transfer takes about 6 minutes": 0.21 against
    # 0.64). 0.3 (README, issue 13): on the 154 replayed answers it withholds that one and "3 m to infinity" (0.13),
    # and no right one (right short answers' pieces: 0.31 and up).
    grounding_answer_judge_short_floor: float = Field(default=0.3, ge=0, lt=1)
    # A compound question ("How long is the warranty, and how long is coverage with Care+?"): each part is also
    # judged on its own with each served sentence. An answer the judge does not read as the answer to the whole
    # but does to one part is served (without its short answer, which covers a part at best), and a served
    # answer that leaves a part open names it in a notice. A failing short answer does not decline a compound
    # question's answer: its sentences decide. Needs the pieces (above).
    grounding_answer_judge_parts: bool = True
    # Grounding's one regeneration also for an answer whose claims all held but that does not answer the question
    # (a compound question's is always retried: the second answer can add the part left open). Off (stop 30,
    # README): on held-out HotpotQA 50-99 at low, 4 answers were served after that retry, none right (3 of the 5
    # off-topic answers served), and it cost a median 4-7 s per declined answer.
    grounding_regenerate_unanswered: bool = False
    # The model's short answer is verified as the answer to the question ("Who won X?" + "Naomi Osaka"):
    # when it fails, the whole answer is declined (true sentences that do not state what was asked are no
    # answer). Off: a failing short answer is only left out, and the sentences decide alone.
    grounding_short_answer_decides: bool = True
    # Risk low, streaming: verify the first sentence while the model writes the rest (a "verified" event).
    # Only where generation leaves a CPU core free (a remote provider, or more cores than local_threads):
    # beside the local model on 2 cores it slows both and never finishes first.
    grounding_stream_verified: bool = True

    def provider_settings(self, name: str) -> ProviderSettings:
        """Provider ``name``'s settings as its sub-model, e.g. ``provider_settings("openai").base_url``."""
        if name not in PROVIDER_SETTINGS:
            raise unknown_provider(name)
        return PROVIDER_SETTINGS[name].from_settings(self)

    @property
    def grounding_judge_model_name(self) -> str:
        if self.grounding_judge_model:
            return self.grounding_judge_model
        return self.openai_model if self.grounding_judge == "openai" else self.local_strong_model

    @field_validator("grounding_answer_judge_thresholds")
    @classmethod
    def _answer_judge_thresholds(cls, value: dict) -> dict:
        """A risk level left out keeps its default; each threshold is a probability strictly inside (0, 1)."""
        merged = {**ANSWER_JUDGE_THRESHOLDS, **value}
        for risk, threshold in merged.items():
            if not 0.0 < threshold < 1.0:
                raise ValueError(f"the answer judge's threshold for risk {risk} must lie strictly between 0 and 1 "
                                 f"(got {threshold})")
        return merged

    @field_validator("chunk_overlap")
    @classmethod
    def _overlap_below_chunk(cls, value: int, info) -> int:
        chunk = info.data.get("chunk_tokens", 256)
        if value >= chunk:
            raise ValueError(f"chunk_overlap ({value}) must be smaller than chunk_tokens ({chunk})")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @property
    def manifest_path(self) -> Path:
        return self.data_dir / "manifest.sqlite"

    @property
    def edge_dir(self) -> Path:
        return self.data_dir / "qdrant"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @property
    def database_path(self) -> Path:
        """SQLite beside the vectors: usage ledger (and later reviews, feedback, evaluation results)."""
        return self.data_dir / "attest.sqlite"

    @property
    def state_url(self) -> str:
        """The state database (attest_db.open_db): ATTEST_DATABASE_URL, or the SQLite file above."""
        return self.database_url or f"sqlite:///{self.database_path}"

    @property
    def manifest_url(self) -> str:
        """The ingest manifest: the same PostgreSQL database, or its own SQLite file."""
        return self.database_url or f"sqlite:///{self.manifest_path}"

    @property
    def models_dir(self) -> Path:
        return self.model_cache_dir or self.cache_dir / "models"


def _check_provider_fields() -> None:
    """Every field of a provider's sub-model has its flat field in Settings, of the same type (checked once,
    on import, so that ``from_settings`` cannot miss or mistype one)."""
    for model in PROVIDER_SETTINGS.values():
        for field, info in model.model_fields.items():
            flat = Settings.model_fields.get(model.flat_field(field))
            if flat is None or flat.annotation != info.annotation:
                raise TypeError(f"{model.__name__}.{field}: Settings needs the field {model.flat_field(field)}: "
                                f"{info.annotation}")


_check_provider_fields()
