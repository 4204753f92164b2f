"""The claim scorer shared by the service (grounding/decide.py) and ``attest verify``.

For each (claim, evidence) it computes the deterministic signals, the trained verifier's logit, the
optional language-model judge's P(supported), and one calibrated score (grounding/calibrate.py). Then the
deterministic checks' hard edges (``veto_reasons`` and ``contained``, grounding/checks.py):
- a number the claim states that the evidence's passages do not contain vetoes it, and so does a measuring
  verb with a quantity of another kind ("weighs ... pixels") (``grounding_number_veto``);
- a name, code or compound term (``lithium-ion``, ``HK2-100``) that no retrieved passage contains vetoes it
  (``grounding_term_veto``): an answer built from the passages has no business naming it;
- a claim whose every content word sits in one evidence sentence, with no negation, direction or number
  conflict, is supported (entailment by containment), whatever the learned verifier says.
Vetoed claims score ``VETO_CAP``; contained ones at least just above the highest threshold.

With a judge (optional: seconds per answer on 2 cores), ``judge_scope="borderline"`` asks it only about
claims whose verifier score lies within ``judge_band`` of the risk level's threshold (the others are clear
either way), ``"all"`` about every claim a rule did not decide. A judged claim's score mixes the verifier's
margin over the threshold with the judge's over 0.5, in logit space (``judge_weight`` on the verifier), and
is put back on the threshold's scale, so one threshold per risk level still decides every claim. Two
signals and one weight, not a refitted profile: 160 judged pairs are too few to fit 13 coefficients.

    scorer = ClaimScorer.from_settings(settings)
    [scored] = scorer.score([ScoreItem(claim, evidence, context_text)])
    scored.score, scored.signals
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from grounding.calibrate import Calibration, Profile, load_calibration, logit
from grounding.checks import contained, deterministic_signals, veto_reasons
from grounding.evidence import Evidence, EvidencePool, EvidenceSentence, Passage, passage_sentences

log = logging.getLogger("attest.grounding")
VETO_CAP = 0.01  # the score of a vetoed claim: under every risk level's threshold


@dataclass
class ScoreItem:
    claim: str
    evidence: Evidence
    context: str  # the full text of the passages the evidence came from (number checks)
    sources: str | None = None  # every retrieved passage (term checks); default: context
    # The part of the claim the vetoes hold to account (default: all of it). A short answer's statement
    # ("<question> <short answer>.") is vetoed only for what the short answer says: the question's own
    # words are the user's, and a name or term of the question the passages lack is no fault of the answer.
    veto_claim: str | None = None


@dataclass
class Scored:
    score: float
    signals: dict
    evidence: Evidence
    vetoes: list[str] = field(default_factory=list)


class ClaimScorer:
    """Signals -> calibrated P(supported). One per process; the models inside are shared singletons."""

    def __init__(self, profile: Profile, encoder, verifier_model=None, judge=None, evidence_sentences: int = 3,
                 number_veto: bool = True, threads: int = 1, term_veto: bool = True, judge_scope: str = "borderline",
                 judge_band: float = 0.3, judge_weight: float = 0.5, judge_risks=("low", "high"),
                 judge_loader: Callable[[], object] | None = None):
        if "verifier_logit" in profile.features and verifier_model is None:
            raise ValueError(f"calibration profile {profile.name!r} needs the trained verifier")
        self.profile = profile
        self.encoder = encoder
        self.verifier_model = verifier_model if "verifier_logit" in profile.features else None
        # The judge serves requests of ``judge_risks``; ``judge_loader`` loads it on the first such request.
        self._judge = judge
        self._judge_loader = judge_loader
        self._judge_lock = threading.Lock()
        self.judge_error: str | None = None
        self.judge_risks = tuple(judge_risks)
        self.judge_scope = judge_scope
        self.judge_band = judge_band
        self.judge_weight = judge_weight
        self.evidence_sentences = evidence_sentences
        self.number_veto = number_veto
        self.term_veto = term_veto
        # A claim contained in its evidence scores at least this: above every risk level's threshold.
        self.containment_floor = min(0.99, max(profile.thresholds.values()) + 0.01)
        self.threads = threads
        self.timings: dict[str, float] = {}

    @classmethod
    def from_settings(cls, settings, encoder=None, calibration: Calibration | None = None,
                      judge=None) -> "ClaimScorer":
        from grounding.crossencoder import get_verifier_model

        if encoder is None:
            from retrieval.dense import get_dense_encoder

            encoder = get_dense_encoder()
        # A candidate verifier (weights + its calibration) can be tried end to end without replacing the
        # shipped one: ATTEST_GROUNDING_VERIFIER_DIR holds verifier.safetensors, verifier.json, calibration.json.
        candidate = settings.grounding_verifier_dir
        if calibration is None:
            calibration = load_calibration(candidate / "calibration.json") if candidate else load_calibration()
        profile = calibration.profile(settings.grounding_profile)
        verifier_model = None
        if "verifier_logit" in profile.features:
            verifier_model = get_verifier_model(str(candidate), threads=settings.grounding_threads) if candidate \
                else get_verifier_model(threads=settings.grounding_threads)
        loader = (lambda: build_judge(settings)) if settings.grounding_judge != "none" and judge is None else None
        k = settings.grounding_evidence_sentences or (verifier_model.evidence_sentences if verifier_model else 3)
        return cls(profile, encoder, verifier_model, judge, k, settings.grounding_number_veto,
                   settings.grounding_threads, settings.grounding_term_veto, settings.grounding_judge_scope,
                   settings.grounding_judge_band, settings.grounding_judge_weight, settings.grounding_judge_risks,
                   loader)

    def judge_for(self, risk: str):
        """The judge for requests of ``risk``, loaded on first use; None when that risk level goes without
        one, or when it cannot be loaded (then the verifier decides alone, and ``judge_error`` says why)."""
        return self.load_judge() if risk in self.judge_risks else None

    def load_judge(self):
        """The judge whatever the risk level (the answer-level question has risk levels of its own), loaded
        on first use; None when none is configured or it cannot be loaded (``judge_error`` says why)."""
        with self._judge_lock:
            if self._judge is None and self._judge_loader is not None and self.judge_error is None:
                try:
                    self._judge = self._judge_loader()
                except Exception as exc:  # noqa: BLE001 - a missing judge model must not stop verification
                    self.judge_error = f"{type(exc).__name__}: {exc}"
                    log.warning("the grounding judge could not be loaded; the verifier decides alone: %s",
                                self.judge_error)
            return self._judge

    def loaded_judge(self, risk: str):
        """The judge requests of ``risk`` use, if it is loaded already (naming and records never load it)."""
        return self._judge if risk in self.judge_risks else None

    def model_name(self, risk: str = "low") -> str:
        parts = []
        if self.verifier_model is not None:
            parts.append(self.verifier_model.name)
        judge = self.loaded_judge(risk)
        if judge is not None:
            parts.append(f"judge:{judge.model}")
        return "+".join(parts) or "checks"

    def threshold(self, risk: str) -> float:
        return self.profile.threshold(risk)

    def signals(self, item: ScoreItem) -> dict:
        texts = [s.text for s in item.evidence.sentences]
        passages = item.sources if item.sources is not None else item.context
        signals = deterministic_signals(item.claim, texts, item.context, passages)
        sims = sorted((s.similarity for s in item.evidence.sentences), reverse=True)
        signals["sim_max"] = sims[0] if sims else 0.0
        signals["sim_mean3"] = float(np.mean(sims[:3])) if sims else 0.0
        return signals

    def score(self, items: list[ScoreItem], judge_context: str | None = None, risk: str = "low",
              use_judge: bool = True) -> list[Scored]:
        """Score ``items``; ``judge_context`` (an evidence block shared by all items of one answer) makes the
        judge reuse its KV cache across them, otherwise each item's own evidence is the judge's block.
        ``risk`` picks the threshold the borderline band is drawn around; ``use_judge=False`` scores with
        the verifier alone whatever the risk level."""
        t0 = time.perf_counter()
        all_signals = [self.signals(item) for item in items]
        t1 = time.perf_counter()
        if self.verifier_model is not None:
            logits = self.verifier_model.score([(i.claim, i.evidence.text) for i in items])
            for signals, logit in zip(all_signals, logits):
                signals["verifier_logit"] = logit
        t2 = time.perf_counter()
        judge = self.judge_for(risk) if use_judge else None
        if judge is not None:
            from grounding.judge import evidence_block

            for item, signals in zip(items, all_signals):
                if self._ask_judge(signals, risk):
                    block = judge_context or evidence_block([s.text for s in item.evidence.sentences])
                    signals["judge_p"] = judge.p_supported(block, item.claim)
        t3 = time.perf_counter()
        out = []
        for item, signals in zip(items, all_signals):
            score = self._calibrated(signals, risk)
            vetoes = veto_reasons(signals, self.number_veto, self.term_veto)
            if vetoes and item.veto_claim is not None:
                texts = [s.text for s in item.evidence.sentences]
                own = deterministic_signals(item.veto_claim, texts, item.context,
                                            item.sources if item.sources is not None else item.context)
                vetoes = veto_reasons(own, self.number_veto, self.term_veto)
            if vetoes:
                score = min(score, VETO_CAP)
            elif contained(signals):
                signals["contained"] = 1.0
                score = max(score, self.containment_floor)
            out.append(Scored(score, signals, item.evidence, vetoes))
        self.timings = {"signals_ms": (t1 - t0) * 1000, "verifier_ms": (t2 - t1) * 1000,
                        "judge_ms": (t3 - t2) * 1000}
        return out

    def _ask_judge(self, signals: dict, risk: str) -> bool:
        """Not decided by a rule, and (in the borderline scope) the verifier's score near the threshold."""
        if veto_reasons(signals, self.number_veto, self.term_veto) or contained(signals):
            return False
        if self.judge_scope == "all":
            return True
        return abs(self.profile.score(signals) - self.threshold(risk)) <= self.judge_band

    def _calibrated(self, signals: dict, risk: str) -> float:
        """The profile's score; with the judge's P(supported), both as margins over their own lines (the risk
        level's threshold; 0.5), mixed in logit space and put back on the threshold's scale."""
        score = self.profile.score(signals)
        if "judge_p" not in signals:
            return score
        return with_judge(score, self.threshold(risk), signals["judge_p"], self.judge_weight)

    # ---- one claim against one context (attest verify, the benchmark) --------------------------------------
    def score_pairs(self, pairs: list[tuple[str, str]], k: int | None = None, risk: str = "low") -> list[Scored]:
        """(claim, context) pairs, each context the claim's only evidence (``attest verify``)."""
        k = k or self.evidence_sentences
        t0 = time.perf_counter()
        per_context = [[EvidenceSentence(1, "context", i, text) for i, text in enumerate(passage_sentences(context))]
                       for _, context in pairs]
        texts = [c for c, _ in pairs] + [s.text for sentences in per_context for s in sentences]
        vectors = np.asarray(self.encoder.encode(texts, batch_size=32, threads=self.threads), dtype=np.float32)
        claim_vectors, offset = vectors[: len(pairs)], len(pairs)
        items = []
        for (claim, context), vector, sentences in zip(pairs, claim_vectors, per_context):
            pool = EvidencePool([Passage(1, "context", context)], sentences, vectors[offset:offset + len(sentences)])
            offset += len(sentences)
            items.append(ScoreItem(claim, pool.select(claim, vector, k=k), context))
        embed_ms = (time.perf_counter() - t0) * 1000
        scored = self.score(items, risk=risk)
        self.timings = {"evidence_ms": embed_ms, **self.timings}
        return scored


def with_judge(score: float, threshold: float, judge_p: float, weight: float = 0.5) -> float:
    """The verifier's margin over its threshold and the judge's over 0.5, mixed in logit space with
    ``weight`` on the verifier, back on the threshold's scale: >= threshold exactly when the mix is positive."""
    line = logit(threshold)
    margin = weight * (logit(score) - line) + (1 - weight) * logit(judge_p)
    return float(1 / (1 + np.exp(-(line + margin))))


def build_judge(settings):
    """The judge the settings name: a local GGUF model by registry name, or ``openai`` (any OpenAI-compatible
    endpoint that returns log-probabilities)."""
    from grounding.judge import LlamaJudge, OpenAIJudge

    if settings.grounding_judge == "openai":
        return OpenAIJudge.from_settings(settings)
    if settings.grounding_judge == "local":
        return LlamaJudge.load(settings.grounding_judge_model_name, settings.models_dir, settings.local_ctx,
                               settings.local_threads, settings.local_weights)
    raise ValueError(f"no judge configured (grounding_judge={settings.grounding_judge!r})")
