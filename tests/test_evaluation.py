"""Golden-set scoring, the regression gate and the run history."""

from __future__ import annotations

import pytest

from evaluation.golden import GoldenReport, RunHistory, regression_gate, run_golden
from evaluation.scoring import citation_scores, is_decline, token_f1

CASES = [
    {"id": "a", "question": "How long is the warranty?", "reference_answer": "Two years from purchase.",
     "answerable": True, "doc_ids": ["policies/warranty.pdf"], "passages": ["two years from the date of purchase"], "kind": "single"},
    {"id": "b", "question": "What battery does it use?", "reference_answer": "The documents do not say.",
     "answerable": False, "doc_ids": [], "passages": [], "kind": "unanswerable"},
]


def good(question):
    if "warranty" in question:
        return {"answer": "The warranty lasts two years from purchase.", "decision": "served",
                "citations": [{"doc_id": "policies/warranty.pdf", "quote": "two years from the date of purchase"}],
                "claims": [{"text": "The warranty lasts two years from purchase.", "supported": True}], "model": "m", "prompt": "answer@1"}
    return {"answer": "The documents do not say.", "decision": "served", "citations": [], "claims": []}


def bad(question):
    return {"answer": "It uses a lithium-ion battery.", "decision": "served",
            "citations": [{"doc_id": "manual/getting-started.md", "quote": "Charge it over USB-C"}],
            "claims": [{"text": "It uses a lithium-ion battery.", "supported": False}], "model": "m", "prompt": "bad@1"}


def test_token_f1_matches_hand_computed_values():
    assert token_f1("The warranty lasts two years", "two years") == pytest.approx(2 * (2 / 4) * 1 / (2 / 4 + 1))
    assert token_f1("Two years.", "two years") == 1.0
    assert token_f1("three", "two years") == 0.0


def test_decline_detection():
    assert is_decline("The documents do not say.")
    assert is_decline("I don't know.")
    assert not is_decline("The warranty lasts two years.")


def test_citation_precision_and_recall():
    cited = [{"doc_id": "a.md", "quote": "x"}, {"doc_id": "b.md", "quote": "contains the needle here"}, {"doc_id": "c.md"}]
    precision, recall = citation_scores(cited, ["a.md", "d.md"], ["the needle"])
    assert precision == pytest.approx(2 / 3) and recall == pytest.approx(1 / 2)


def test_golden_run_scores_a_good_pipeline_and_the_gate_catches_a_worse_one(tmp_path):
    baseline = run_golden(CASES, good, "tiny")
    assert baseline.scores["refusal_accuracy"] == 1.0 and baseline.scores["citation_recall"] == 1.0
    assert baseline.scores["faithfulness"] == 1.0
    worse = run_golden(CASES, bad, "tiny")
    gate = regression_gate(worse, baseline)
    assert not gate.passed
    assert {"refusal_accuracy", "faithfulness", "citation_recall"} <= set(gate.regressions)
    assert gate.worse_cases == ["a", "b"]
    assert regression_gate(run_golden(CASES, good, "tiny"), baseline).passed
    restored = GoldenReport.from_dict(baseline.to_dict())
    assert regression_gate(baseline, restored).passed


def test_a_crashing_pipeline_scores_zero_instead_of_crashing_the_run():
    def boom(question):
        raise RuntimeError("model exploded")

    report = run_golden(CASES, boom, "tiny")
    assert report.decisions == {"error": 2}
    assert "model exploded" in report.cases[0].error


def test_history_keeps_runs_in_order(tmp_path):
    history = RunHistory(tmp_path / "attest.sqlite")
    first, second = run_golden(CASES, good, "tiny"), run_golden(CASES, bad, "tiny")
    history.record(first)
    history.record(second)
    runs = history.runs("tiny")
    assert [r["run_id"] for r in runs] == [first.run_id, second.run_id]
    assert runs[1]["scores"]["refusal_accuracy"] < runs[0]["scores"]["refusal_accuracy"]
    history.close()


# ---- ragas Faithfulness with the packaged 1.5B as ragas' LLM ------------------------------------------------
WARRANTY_CONTEXT = "The standard warranty on the camera body is two years from the date of purchase."
BATTERY_CONTEXT = "Charge it over USB-C before first use; a full charge takes about two hours."


@pytest.fixture(scope="module")
def ragas_faithfulness(tmp_path_factory):
    from answer.models import ensure_model_file
    from evaluation.ragas_faithfulness import RagasFaithfulness

    models = tmp_path_factory.mktemp("ragas-models")
    ensure_model_file("qwen2.5-coder-1.5b", models)  # the 0.5B scores every answer 0 in ragas' prompts
    return RagasFaithfulness.load("qwen2.5-coder-1.5b", models)


def with_contexts(pipeline):
    def ask(question):
        outcome = pipeline(question)
        outcome["contexts"] = [WARRANTY_CONTEXT, BATTERY_CONTEXT]
        return outcome
    return ask


def contradicted(question):
    return {**good(question), "answer": "The warranty lasts five years and covers water damage."} \
        if "warranty" in question else good(question)


def test_golden_run_scores_ragas_faithfulness_and_gates_it_only_when_both_runs_have_it(ragas_faithfulness):
    baseline = run_golden(CASES, with_contexts(good), "tiny", ragas=ragas_faithfulness.score)
    assert baseline.cases[0].ragas_faithfulness > 0.5  # two years: stated by the context
    assert baseline.cases[1].ragas_faithfulness is None  # a decline states nothing to check
    worse = run_golden(CASES, with_contexts(contradicted), "tiny", ragas=ragas_faithfulness.score)
    assert worse.cases[0].ragas_faithfulness < 0.5  # five years: the context says two
    assert "ragas_faithfulness" in regression_gate(worse, baseline).regressions
    without = run_golden(CASES, good, "tiny")
    assert "ragas_faithfulness" not in without.scores and regression_gate(without, baseline).passed
