"""Grounding benchmark: the claim verifier on SciFact claim/context pairs, 5-fold, beside two baselines.

    python benchmarks/grounding.py                       # everything (judge and ragas on subsets)
    python benchmarks/grounding.py --skip-judge --skip-ragas --write-calibration

What it measures, and how it stays honest (no pair is ever scored by anything fitted on it):
1. speed: ``attest verify`` (the service's verifier, subprocess, as a user runs it) over all pairs: claims/s
   after the models are loaded, on however many cores the machine gives it;
2. accuracy, 5-fold (folds stratified by kind, grouped by claim: grounding/training/prepare.py): the
   signals come from that same ``attest verify`` run, except the trained verifier's logit, which for a
   pair of fold k comes from a verifier trained without fold k (``cv.json`` from
   grounding/training/train_verifier.py); the calibration is fitted on the other four folds, using for
   them verifier logits of models that never saw them either (nested), and scores fold k; thresholds are
   chosen on the four training folds;
3. baselines on the same pairs: (a) the raw language-model judge (P(yes) >= 0.5, no checks, no
   calibration), Qwen2.5-Coder 0.5B and 1.5B; (b) ragas Faithfulness with the same local model. Both run
   seconds per claim on 2 cores, so they run on a stratified subset (``--judge-subset``, ``--ragas-subset``)
   and every figure says on how many pairs it was measured. ``--judge-evidence context`` gives the judge
   the whole context (as the issue's reference figures), ``sentences`` the verifier's evidence sentences;
4. the service's optional judge step on the judged pairs: the verifier's out-of-fold score mixed with the
   judge's P(supported) (grounding/verifier.py ``with_judge``, fixed weight, nothing fitted on them), for
   every claim or only the borderline ones. ``--judge-p`` reuses saved judge probabilities: those behind
   the README's figures (1.5B, whole context, 160 pairs) are grounding/training/judge-p-context-160.json;
   only the pairs a saved file lacks are judged. ``--judge-split dev`` judges issue 13's fixed SciFact dev
   split (262 pairs, never trained on) instead of a subset: its probabilities, with the 160's, are
   grounding/training/judge-p-context-dev.json.

``--write-calibration`` refits the shipped grounding/calibration.json: per profile, the logistic regression
on all pairs (verifier logits out-of-fold), thresholds from the cross-validated scores.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")

from grounding.calibrate import (  # noqa: E402
    PROFILE_FEATURES, Calibration, balanced_accuracy, choose_thresholds, fit_profile,
)
from grounding.training.train_verifier import auroc  # noqa: E402

DEFAULT_PAIRS = ROOT.parent / "shared" / "data" / "grounding" / "scifact-claims-train.jsonl"
DEFAULT_CV = ROOT / "grounding" / "training" / "cv.json"
DEV_SPLIT = ROOT / "grounding" / "training" / "scifact-dev-split.json"


def metrics(labels, scores, threshold) -> dict:
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=float)
    pred = (scores >= threshold).astype(int)
    uns_pred, uns_true = pred == 0, labels == 0
    tp = int((uns_pred & uns_true).sum())
    return {
        "n": int(len(labels)),
        "balanced_accuracy": round(balanced_accuracy(labels, pred), 4),
        "unsupported_precision": round(tp / max(1, int(uns_pred.sum())), 4),
        "unsupported_recall": round(tp / max(1, int(uns_true.sum())), 4),
        "auroc": round(auroc(labels, scores), 4),
    }


def by_kind(rows, pred) -> dict:
    out = {}
    for kind in ("SUPPORT", "CONTRADICT", "NOT_ENOUGH_INFO"):
        idx = [i for i, r in enumerate(rows) if r["kind"] == kind]
        if idx:
            want = 1 if kind == "SUPPORT" else 0
            out[kind] = round(float(np.mean([pred[i] == want for i in idx])), 4)
    return out


def stratified_subset(rows, n, seed=5) -> list[int]:
    rng = random.Random(seed)
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(r["kind"], []).append(i)
    chosen = []
    for kind, idx in sorted(groups.items()):
        take = round(n * len(idx) / len(rows))
        chosen += rng.sample(idx, min(take, len(idx)))
    return sorted(chosen)


# ---- 1. attest verify ------------------------------------------------------------------------------------
def run_verify(rows, env_extra=None) -> tuple[list[dict], dict]:
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.jsonl", Path(tmp) / "out.jsonl"
        src.write_text("".join(json.dumps({"id": r["id"], "claim": r["claim"], "context": r["context"]}) + "\n"
                               for r in rows))
        env = {**os.environ, "ATTEST_DATA_DIR": str(Path(tmp) / "data"), **(env_extra or {})}
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "api.cli", "verify", "--input", str(src), "--output", str(dst)],
                              cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"attest verify failed ({proc.returncode}): {proc.stderr[-3000:]}")
        out = [json.loads(line) for line in dst.read_text().splitlines()]
        rate = None
        for line in proc.stderr.splitlines():
            if "claims/s" in line and "verified" in line:
                rate = float(line.rsplit(";", 1)[1].split()[0])
        return out, {"wall_s": round(wall, 1), "claims_per_s_after_load": rate, "pairs": len(rows),
                     "summary": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""}


# ---- 2. cross-validated calibration ------------------------------------------------------------------------
def cross_validate(rows, signals, cv, profile_name, rules=(), folds=None) -> dict:
    """Out-of-fold calibrated scores for ``profile_name``; verifier logits out-of-fold (outer for the scored
    fold, nested for the fitting folds)."""
    folds = folds or sorted({r["fold"] for r in rows})
    scores = np.zeros(len(rows))
    thresholds = {}
    uses_verifier = "verifier_logit" in PROFILE_FEATURES[profile_name]
    for k in folds:
        train_idx = [i for i, r in enumerate(rows) if r["fold"] != k]
        test_idx = [i for i, r in enumerate(rows) if r["fold"] == k]
        train_sig, test_sig = [], []
        for i in train_idx:
            s = dict(signals[i])
            if uses_verifier:
                s["verifier_logit"] = cv["nested"][str(k)][rows[i]["id"]]
            train_sig.append(s)
        for i in test_idx:
            s = dict(signals[i])
            if uses_verifier:
                s["verifier_logit"] = cv["outer"][cv["best"]][rows[i]["id"]]
            test_sig.append(s)
        profile = fit_profile(profile_name, train_sig, [rows[i]["label"] for i in train_idx])
        train_scores = [_apply(profile, s, rules) for s in train_sig]
        t = choose_thresholds([rows[i]["label"] for i in train_idx], train_scores)
        thresholds[k] = t
        for i, s in zip(test_idx, test_sig):
            scores[i] = _apply(profile, s, rules)
    return {"scores": scores, "thresholds": thresholds}


def _apply(profile, signals, rules):
    """The calibrated score with the scorer's hard rules (grounding/verifier.py): "number" and "term" vetoes,
    "contain" (entailment by containment; 0.99 here, above any threshold the folds may choose)."""
    from grounding.checks import contained, veto_reasons
    from grounding.verifier import VETO_CAP

    score = profile.score(signals)
    if veto_reasons(signals, "number" in rules, "term" in rules):
        return min(score, VETO_CAP)
    if "contain" in rules and contained(signals):
        return max(score, 0.99)
    return score


def with_judge_curve(rows, subset, signals, fast: dict, judge_p: dict, weight: float,
                     bands=(None, 0.1, 0.2, 0.3), risk: str = "low") -> list[dict]:
    """The service's judge step (grounding/verifier.py ``with_judge``) on the judged pairs: the verifier's
    out-of-fold score (5-fold over all pairs, number veto and containment) mixed with the judge's
    P(supported), for every claim no rule decided (band None) or only those within ``band`` of the fold's
    threshold. Nothing is fitted on the judged pairs: the weight is fixed."""
    from grounding.checks import contained, veto_reasons
    from grounding.verifier import with_judge

    sub_rows = [rows[i] for i in subset]
    out = []
    for band in bands:
        scores, asked = [], 0
        for i in subset:
            r, score = rows[i], fast["scores"][i]
            t = fast["thresholds"][r["fold"]][risk]
            decided = veto_reasons(signals[i], term_veto=False) or contained(signals[i])
            if not decided and (band is None or abs(score - t) <= band):
                score, asked = with_judge(score, t, judge_p[r["id"]], weight), asked + 1
            scores.append(score)
        m = evaluate(sub_rows, {"scores": scores, "thresholds": fast["thresholds"]}, risk)
        out.append({"risk": risk, "band": band if band is not None else "all", "share_judged": round(asked / len(subset), 3), **m})
    return out


def evaluate(rows, result, risk="low") -> dict:
    labels = [r["label"] for r in rows]
    pred = np.zeros(len(rows), dtype=int)
    for i, r in enumerate(rows):
        pred[i] = int(result["scores"][i] >= result["thresholds"][r["fold"]][risk])
    m = metrics(labels, result["scores"], 0.5)
    m["balanced_accuracy"] = round(balanced_accuracy(labels, pred), 4)
    uns_pred, uns_true = pred == 0, np.asarray(labels) == 0
    tp = int((uns_pred & uns_true).sum())
    m["unsupported_precision"] = round(tp / max(1, int(uns_pred.sum())), 4)
    m["unsupported_recall"] = round(tp / max(1, int(uns_true.sum())), 4)
    m["recall_by_kind"] = by_kind(rows, pred)
    m["unsupported_served_rate"] = round(float(((pred == 1) & uns_true).sum() / max(1, uns_true.sum())), 4)
    return m


# ---- 3a. the raw judge -----------------------------------------------------------------------------------
def run_judge(rows, subset, model, models_dir, k, evidence_mode="sentences") -> dict:
    """``evidence_mode``: "sentences" (the k best sentences, what the verifier sees) or "context" (the
    whole context, as a judge without evidence selection would read it)."""
    from grounding.evidence import EvidencePool, Passage
    from grounding.judge import LlamaJudge, evidence_block
    from retrieval.dense import get_dense_encoder

    encoder = get_dense_encoder()
    judge = LlamaJudge.load(model, models_dir, n_ctx=2048, n_threads=2)
    probs, seconds, tokens = [], [], []
    for i in subset:
        r = rows[i]
        vector = encoder.encode([r["claim"]], threads=2)[0]
        pool = EvidencePool.build([Passage(1, r["id"], r["context"])], encoder, threads=2)
        if evidence_mode == "context":
            block = evidence_block([s.text for s in pool.sentences])
        else:
            block = evidence_block([s.text for s in pool.select(r["claim"], vector, k=k).sentences])
        t = time.perf_counter()
        probs.append(judge.p_supported(block, r["claim"]))
        seconds.append(time.perf_counter() - t)
        tokens.append(judge.last_call.prompt_tokens)
    labels = [rows[i]["label"] for i in subset]
    m = metrics(labels, probs, 0.5)
    m["recall_by_kind"] = by_kind([rows[i] for i in subset], [int(p >= 0.5) for p in probs])
    m["seconds_per_claim"] = round(float(np.mean(seconds)), 2)
    m["claims_per_s"] = round(1 / float(np.mean(seconds)), 3)
    m["prompt_tokens_mean"] = round(float(np.mean(tokens)), 1)
    m["evidence"] = f"{k} sentences" if evidence_mode == "sentences" else "whole context"
    return {"metrics": m, "p": {rows[i]["id"]: p for i, p in zip(subset, probs)}}


# ---- 3b. ragas Faithfulness with the same local model ----------------------------------------------------
def run_ragas(rows, subset, model, models_dir) -> dict:
    from evaluation.ragas_faithfulness import RagasFaithfulness

    faithfulness = RagasFaithfulness.load(model, models_dir)
    scores, seconds = [], []
    for i in subset:
        r = rows[i]
        t = time.perf_counter()
        value = faithfulness.score("Is this claim true?", r["claim"], [r["context"]])
        seconds.append(time.perf_counter() - t)
        scores.append(float("nan") if value is None else value)  # None: unparseable output, a failure
    labels = [rows[i]["label"] for i in subset]
    failed = int(sum(1 for s in scores if s != s))
    filled = [0.0 if s != s else s for s in scores]  # a failure cannot vouch for a claim
    m = metrics(labels, filled, 0.5)
    m["failed_outputs"] = failed
    m["seconds_per_claim"] = round(float(np.mean(seconds)), 2)
    m["claims_per_s"] = round(1 / float(np.mean(seconds)), 3)
    return {"metrics": m, "scores": {rows[i]["id"]: s for i, s in zip(subset, scores)}}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=Path, default=DEFAULT_PAIRS)
    parser.add_argument("--cv", type=Path, default=DEFAULT_CV, help="out-of-fold verifier logits (train_verifier)")
    parser.add_argument("--models-dir", type=Path, default=None, help="assembled GGUF cache (default: settings)")
    parser.add_argument("--judge-models", default="qwen2.5-coder-0.5b,qwen2.5-coder-1.5b")
    parser.add_argument("--judge-subset", type=int, default=60)
    parser.add_argument("--judge-split", choices=["subset", "dev"], default="subset",
                        help="the pairs judged: a stratified subset of all pairs (--judge-subset) or issue 13's fixed "
                             "SciFact dev split (grounding/training/scifact-dev-split.json, every pair)")
    parser.add_argument("--judge-evidence", choices=["sentences", "context"], default="sentences",
                        help="what the judge reads: the verifier's evidence sentences or the whole context")
    parser.add_argument("--judge-p", type=Path, default=None, help="reuse saved judge probabilities (JSON)")
    parser.add_argument("--judge-weight", type=float, default=0.5, help="the verifier's share in the mix")
    parser.add_argument("--ragas-model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--ragas-subset", type=int, default=12)
    parser.add_argument("--skip-judge", action="store_true")
    parser.add_argument("--skip-ragas", action="store_true")
    parser.add_argument("--write-calibration", action="store_true")
    parser.add_argument("--verify-output", type=Path, default=None, help="reuse a saved attest verify output")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "grounding.json")
    args = parser.parse_args(argv)

    from attest_settings import Settings
    from grounding.training.prepare import folds_for

    settings = Settings()
    models_dir = args.models_dir or settings.models_dir
    rows = [json.loads(line) for line in args.pairs.read_text().splitlines() if line.strip()]
    for r, f in zip(rows, folds_for(rows)):
        r["fold"] = f
        r["label"] = int(r["label"] == "supported")
    cv = json.loads(args.cv.read_text())
    cv["best"] = cv.get("best") or max(cv["outer"], key=lambda name: auroc(
        [r["label"] for r in rows], [cv["outer"][name][r["id"]] for r in rows]))
    assert all(cv["folds"][r["id"]] == r["fold"] for r in rows), "cv.json was made with other folds"
    report: dict = {"pairs": len(rows), "cpu_cores": os.cpu_count(), "verifier_configuration": cv["best"]}

    # 1. attest verify, as a user runs it.
    if args.verify_output and args.verify_output.exists():
        verified = [json.loads(line) for line in args.verify_output.read_text().splitlines()]
        report["speed"] = json.loads((args.verify_output.with_suffix(".speed.json")).read_text())
    else:
        verified, speed = run_verify(rows)
        report["speed"] = speed
        if args.verify_output:
            args.verify_output.parent.mkdir(parents=True, exist_ok=True)
            args.verify_output.write_text("".join(json.dumps(v) + "\n" for v in verified))
            args.verify_output.with_suffix(".speed.json").write_text(json.dumps(speed))
    print(f"attest verify: {report['speed']}", flush=True)
    signals = [v["signals"] for v in verified]
    labels = [r["label"] for r in rows]

    # 2. cross-validated accuracy per set of signals.
    results = {}
    table = {}
    PROFILE_FEATURES["verifier-only"] = ["verifier_logit"]
    variants = (("checks", "checks", ()), ("verifier-only", "verifier-only", ()), ("verifier", "verifier", ()),
                ("verifier+rules", "verifier", ("number", "contain")),
                ("verifier+rules+term", "verifier", ("number", "contain", "term")))
    for key, profile, rules in variants:
        res = cross_validate(rows, signals, cv, profile, rules=rules)
        results[key] = res
        table[key] = {"low": evaluate(rows, res, "low"), "high": evaluate(rows, res, "high")}
        print(f"{key:18s} low {table[key]['low']}", flush=True)
    report["cv"] = table
    report["verifier_outer_auroc"] = {name: round(auroc(labels, [cv["outer"][name][r["id"]] for r in rows]), 4)
                                      for name in cv["outer"]}

    # 3a. raw judge on a subset, and the service's judge step (the verifier's score mixed with the judge's).
    if not args.skip_judge:
        if args.judge_split == "dev":
            dev_ids = set(json.loads(DEV_SPLIT.read_text())["dev"])
            subset = [i for i, r in enumerate(rows) if r["id"] in dev_ids]
        else:
            subset = stratified_subset(rows, args.judge_subset)
        report["judge"] = {"pairs": args.judge_split, "evidence": args.judge_evidence}
        k = load_verifier_k()
        saved = json.loads(args.judge_p.read_text()) if args.judge_p else {}
        for model in args.judge_models.split(","):
            # Probabilities saved by an earlier run (same prompt, same evidence) are reused; only the pairs
            # they lack are judged.
            known = saved.get(model, {}).get("p", {})
            if args.judge_split == "subset" and known:
                subset = [i for i, r in enumerate(rows) if r["id"] in known]
            missing = [i for i in subset if rows[i]["id"] not in known]
            fresh = run_judge(rows, missing, model, models_dir, k, args.judge_evidence) if missing else None
            p = {**known, **(fresh["p"] if fresh else {})}
            labels_judged = [rows[i]["label"] for i in subset]
            probs_judged = [p[rows[i]["id"]] for i in subset]
            m = metrics(labels_judged, probs_judged, 0.5)
            m["recall_by_kind"] = by_kind([rows[i] for i in subset], [int(q >= 0.5) for q in probs_judged])
            timing = (fresh or saved[model])["metrics"]
            for key in ("seconds_per_claim", "claims_per_s", "prompt_tokens_mean", "evidence"):
                m[key] = timing.get(key)
            m["judged_now"] = len(missing)
            run = {"metrics": m, "p": p}
            saved[model] = run
            report["judge"][model] = dict(run["metrics"])
            report["judge"][model]["with_verifier"] = [
                point for risk in ("low", "high") for point in
                with_judge_curve(rows, subset, signals, results["verifier+rules"], run["p"], args.judge_weight,
                                 risk=risk)]
            # attest on the same pairs (its 5-fold out-of-fold scores): like against like.
            res = results["verifier+rules"]
            report["judge"][model]["attest_on_same_subset"] = {risk: evaluate(
                [rows[i] for i in subset], {"scores": [res["scores"][i] for i in subset], "thresholds": res["thresholds"]},
                risk) for risk in ("low", "high")}
            print(f"judge {model}: {report['judge'][model]}", flush=True)

        judge_out = args.out.with_name(f"judge-p-{args.judge_evidence}.json")
        judge_out.parent.mkdir(parents=True, exist_ok=True)
        judge_out.write_text(json.dumps(saved))

    # 3b. ragas Faithfulness on a (smaller) subset.
    if not args.skip_ragas:
        subset = stratified_subset(rows, args.ragas_subset, seed=11)
        run = run_ragas(rows, subset, args.ragas_model, models_dir)
        report["ragas_faithfulness"] = {"model": args.ragas_model, **run["metrics"]}
        sub_rows = [rows[i] for i in subset]
        res = results["verifier+rules"]
        report["ragas_faithfulness"]["attest_on_same_subset"] = evaluate(
            sub_rows, {"scores": [res["scores"][i] for i in subset], "thresholds": res["thresholds"]})
        print(f"ragas: {report['ragas_faithfulness']}", flush=True)

    if args.write_calibration:
        write_calibration(rows, signals, cv, results, table)
        report["calibration_written"] = True

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


def load_verifier_k() -> int:
    meta = json.loads((ROOT / "grounding" / "verifier" / "verifier.json").read_text())
    return int(meta["k"])


def write_calibration(rows, signals, cv, results, table) -> None:
    labels = [r["label"] for r in rows]
    profiles = {}
    for name, key in (("checks", "checks"), ("verifier", "verifier+rules")):
        fit_signals = []
        for r, s in zip(rows, signals):
            s = dict(s)
            s["verifier_logit"] = cv["outer"][cv["best"]][r["id"]]
            fit_signals.append(s)
        profile = fit_profile(name, fit_signals, labels)
        profile.thresholds = choose_thresholds(labels, results[key]["scores"])
        profile.cv = table[key]
        profiles[name] = profile
    Calibration(profiles, {"fitted_on": "SciFact claim/context pairs (868), 5-fold CV, benchmarks/grounding.py",
                           "verifier_configuration": cv["best"]}).save()


if __name__ == "__main__":
    main()
