"""The golden run in CI: the committed prompt passes its committed baseline; a degraded prompt fails it.

Both runs use the small CI golden set (data/demo/golden-ci.jsonl, 8 cases), the packaged 0.5B model on
every answer route (the answer judge stays the 1.5B, the model its thresholds were set for), and no semantic
cache (a cached answer would hide the prompt under test). Greedy decoding makes the committed prompt's run
repeat its baseline; regenerate the baseline with the command in evaluation/baselines/README.md when the
pipeline changes on purpose.
"""

from __future__ import annotations

import json

import pytest

from attest_settings import Settings
from conftest import DEMO, ROOT, run_cli

BASELINE = ROOT / "evaluation" / "baselines" / "golden-ci.json"
GOLDEN = DEMO / "golden-ci.jsonl"


@pytest.fixture(scope="module")
def golden_env(tmp_path_factory):
    from answer.models import ensure_model_file

    models = tmp_path_factory.mktemp("golden-models")
    ensure_model_file("qwen2.5-coder-0.5b", models)
    return {"ATTEST_MODEL_CACHE_DIR": str(models), "ATTEST_LOCAL_MODEL": "qwen2.5-coder-0.5b",
            "ATTEST_LOCAL_STRONG_MODEL": "qwen2.5-coder-0.5b", "ATTEST_CACHE_ENABLED": "false",
            "ATTEST_GROUNDING_JUDGE_MODEL": "qwen2.5-coder-1.5b",
            # Generous limits: a timeout on a busy machine would change an answer, not measure a prompt.
            "ATTEST_LOCAL_FIRST_TOKEN_TIMEOUT_S": "900", "ATTEST_LOCAL_TOTAL_TIMEOUT_S": "900"}


def _golden(tmp_path, env, *extra):
    out = tmp_path / "reports"
    proc = run_cli("eval", "golden", "--golden", str(GOLDEN), "--corpus", str(DEMO), "--baseline", str(BASELINE),
                   "--output", str(out), *extra, data_dir=tmp_path / "data", check=False, env_extra=env)
    reports = sorted(out.glob("golden-*.json"))
    return proc, json.loads(reports[-1].read_text()) if reports else None


def test_committed_prompt_passes_the_committed_baseline(tmp_path, golden_env):
    proc, report = _golden(tmp_path, golden_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "regression gate passed" in proc.stderr
    assert report["prompts"] == [Settings().answer_prompt] and len(report["cases"]) == 8


def test_degraded_prompt_fails_the_gate_and_names_the_cases(tmp_path, golden_env):
    env = {**golden_env, "ATTEST_PROMPTS_DIR": str(ROOT / "tests" / "fixtures" / "prompts"),
           "ATTEST_ANSWER_PROMPT": "degraded@1", "ATTEST_ANSWER_RETRY_PROMPT": "degraded@1"}
    proc, report = _golden(tmp_path, env)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "regression gate FAILED" in proc.stderr and "cases that got worse" in proc.stderr
    assert report["prompts"] == ["degraded@1"]
