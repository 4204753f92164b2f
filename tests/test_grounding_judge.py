"""The language-model judge (optional signal): P(supported) from the next token's log-probabilities, with
the KV cache reused across claims that share the evidence. One packaged 0.5B model per session."""

from __future__ import annotations

import pytest

from grounding.judge import LlamaJudge, evidence_block

FAST_MODEL = "qwen2.5-coder-0.5b"
EVIDENCE = evidence_block([
    "Care+ extends the total coverage to 4 years (48 months) from the original purchase date of the camera.",
    "Each accidental damage repair has a service fee of USD 79.",
])


@pytest.fixture(scope="session")
def judge(tmp_path_factory):
    from answer.models import ensure_model_file

    folder = tmp_path_factory.mktemp("judge-models")
    ensure_model_file(FAST_MODEL, folder)
    return LlamaJudge.load(FAST_MODEL, folder, n_ctx=2048, n_threads=2)


def test_judge_reads_a_probability_not_prose(judge):
    p = judge.p_supported(EVIDENCE, "Care+ extends the coverage to 4 years.")
    assert 0.0 < p < 1.0
    assert judge.last_call.p_supported == p


def test_claims_sharing_the_evidence_reuse_the_kv_cache(judge):
    judge.p_supported(EVIDENCE, "Care+ extends the coverage to 4 years.")
    first = judge.last_call
    judge.p_supported(EVIDENCE, "Each accidental damage repair costs USD 79.")
    second = judge.last_call
    # Only the claim and the question after it are evaluated again; the evidence block comes from the cache.
    assert second.prefilled_tokens < second.prompt_tokens / 2
    assert second.prompt_tokens - second.prefilled_tokens >= len(judge.loaded.llama.tokenize(EVIDENCE.encode()))


def test_same_prompt_twice_gives_nearly_the_same_probability(judge):
    # The second call takes everything but the last token from the KV cache; llama.cpp's one-token and
    # batched kernels round differently, so the two agree to about 1e-2, not exactly (measured: 0.408 / 0.400).
    a = judge.p_supported(EVIDENCE, "Care+ extends the coverage to 4 years.")
    b = judge.p_supported(EVIDENCE, "Care+ extends the coverage to 4 years.")
    assert judge.last_call.prefilled_tokens == 1
    assert a == pytest.approx(b, abs=0.03)


# ---- the judge inside the claim scorer -------------------------------------------------------------------------
CONTEXT = ("Care+ extends the total coverage to 4 years (48 months) from the original purchase date of the camera. "
           "Each accidental damage repair has a service fee of USD 79.")
PAIRS = [("Care+ lengthens the protection of the camera.", CONTEXT),  # no rule decides: the verifier (and judge)
         ("Each accidental damage repair costs USD 99.", CONTEXT),     # 99 is in no passage: vetoed, never judged
         ("Repairs of accidental damage are free of charge.", CONTEXT)]


def scorer_with(tmp_path, judge, **overrides):
    from grounding.verifier import ClaimScorer
    from tests.conftest import make_settings

    overrides = {"grounding_judge_risks": ["low", "high"], **overrides}
    settings = make_settings(tmp_path, grounding_judge="local", grounding_judge_model=FAST_MODEL, **overrides)
    return ClaimScorer.from_settings(settings, judge=judge)


def test_borderline_scope_asks_the_judge_only_near_the_threshold_and_never_about_a_vetoed_claim(tmp_path, judge):
    from grounding.verifier import with_judge

    everything = scorer_with(tmp_path, judge, grounding_judge_scope="borderline", grounding_judge_band=1.0)
    scored = everything.score_pairs(PAIRS)
    assert ["judge_p" in s.signals for s in scored] == [True, False, True]
    assert scored[1].vetoes == ["number_absent_from_sources"] and scored[1].score < everything.threshold("low")
    threshold = everything.threshold("low")
    for s in (scored[0], scored[2]):  # the verifier's and the judge's margins, mixed
        assert s.score == pytest.approx(with_judge(everything.profile.score(s.signals), threshold, s.signals["judge_p"]))
    nothing = scorer_with(tmp_path, judge, grounding_judge_scope="borderline", grounding_judge_band=1e-9)
    unjudged = nothing.score_pairs(PAIRS)
    assert not any("judge_p" in s.signals for s in unjudged)
    assert [unjudged[0].score, unjudged[2].score] == pytest.approx(
        [nothing.profile.score(unjudged[0].signals), nothing.profile.score(unjudged[2].signals)])


def test_the_judge_moves_a_score_across_the_threshold_only_when_it_disagrees_strongly():
    from grounding.verifier import with_judge

    assert with_judge(0.6, 0.5, 0.5) == pytest.approx(0.55, abs=0.01)  # a neutral judge halves the margin
    assert with_judge(0.6, 0.5, 0.05) < 0.5 < with_judge(0.4, 0.5, 0.95)  # a confident judge outvotes a weak margin
    assert with_judge(0.99, 0.5, 0.3) > 0.5  # ... but not a confident verifier
    assert with_judge(0.3, 0.3, 0.5) == pytest.approx(0.3)  # on the line, a neutral judge leaves it there


def test_all_scope_asks_the_judge_about_every_claim_no_rule_decided(tmp_path, judge):
    scorer = scorer_with(tmp_path, judge, grounding_judge_scope="all")
    assert ["judge_p" in s.signals for s in scorer.score_pairs(PAIRS)] == [True, False, True]


def test_by_default_the_judge_serves_high_risk_only(tmp_path, judge):
    scorer = scorer_with(tmp_path, judge, grounding_judge_risks=["high"], grounding_judge_band=1.0)
    assert not any("judge_p" in s.signals for s in scorer.score_pairs(PAIRS, risk="low"))
    assert ["judge_p" in s.signals for s in scorer.score_pairs(PAIRS, risk="high")] == [True, False, True]
    assert "judge:" not in scorer.model_name("low") and "judge:" in scorer.model_name("high")


def test_a_judge_that_cannot_be_loaded_leaves_the_verifier_to_decide(tmp_path):
    from grounding.verifier import ClaimScorer
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, grounding_judge="local", grounding_judge_model="no-such-model",
                             grounding_judge_band=1.0)
    scorer = ClaimScorer.from_settings(settings)
    scored = scorer.score_pairs(PAIRS, risk="high")
    assert not any("judge_p" in s.signals for s in scored) and "no-such-model" in scorer.judge_error
    assert scored[1].vetoes == ["number_absent_from_sources"]
