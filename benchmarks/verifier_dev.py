"""The claim verifier on two fixed dev splits, old (shipped) against new (issue 13, deliverables 2 and 4).

    python benchmarks/verifier_dev.py --new build/v2

Dev splits (never trained on by the new verifier):
1. SciFact: ``grounding/training/scifact-dev-split.json`` (30% of the 868 claim/context pairs, stratified by
   kind, grouped by claim). The shipped verifier was trained on all 868 pairs, so its fair figure uses its
   5-fold out-of-fold logits (``grounding/training/cv.json``); its logit on the dev pairs as shipped is shown
   too (marked "seen"). The new verifier starts from the shipped weights: it inherits weights that saw the
   dev pairs (fine-tuned without them).
   Calibration part (thresholds, refitted profile): the other 70% of the pairs. The old verifier's logits
   there are out-of-fold too; the new verifier trained on those pairs, so its thresholds come from
   in-sample logits (AUROC does not depend on them).
2. Composition: ``build/relations/dev.jsonl`` (grounding/training/make_relations.py: 8% of the source
   passages, every example made from them), cut in two halves by passage: ``cal`` chooses thresholds,
   ``dev`` is measured.

Figures: AUROC (sklearn), balanced accuracy at the threshold with the best balanced accuracy on the
calibration part, per-kind accuracy on the composition dev half; for SciFact also the service's full score:
a ``verifier`` profile (grounding/calibrate.py) refitted on the calibration part with that verifier's logits,
alone (``profile``), with the number veto and containment (``number+contain``) and with the term veto too
(``all``: the service's defaults), as grounding/verifier.py applies them, thresholds chosen on the
calibration part (balanced accuracy at ``low``); and claims/s of the verifier alone on 1 and 2 threads (SciFact dev pairs, its own max_len).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from sklearn.metrics import roc_auc_score  # noqa: E402

from grounding.calibrate import balanced_accuracy, choose_thresholds, fit_profile  # noqa: E402

SPLIT = ROOT / "grounding" / "training" / "scifact-dev-split.json"


def best_threshold(labels, scores) -> float:
    return choose_thresholds(labels, scores)["low"]


def ba_at(labels, scores, t) -> float:
    return balanced_accuracy(labels, (np.asarray(scores) >= t).astype(int))


def half(group: str) -> str:
    return "cal" if int(hashlib.sha1(group.encode()).hexdigest()[:8], 16) % 2 == 0 else "dev"


RULES = {"profile": (), "number+contain": ("number", "contain"), "all": ("number", "contain", "term")}


def service_score(profile, signals, rules=("number", "contain", "term")) -> float:
    """grounding/verifier.py ClaimScorer.score's rules: vetoes cap the score, containment lifts it."""
    from grounding.checks import contained, veto_reasons
    from grounding.verifier import VETO_CAP

    score = profile.score(signals)
    if veto_reasons(signals, "number" in rules, "term" in rules):
        return min(score, VETO_CAP)
    if "contain" in rules and contained(signals):
        return max(score, min(0.99, max(profile.thresholds.values()) + 0.01))
    return score


def composition_signals(rows: list[dict], logit_key: str) -> list[dict]:
    """The service's signals for composition examples (their evidence is their whole context), with the
    verifier's logit: ClaimScorer.signals over the example's k sentences."""
    from grounding.checks import deterministic_signals
    from grounding.evidence import passage_sentences
    from retrieval.dense import get_dense_encoder

    encoder = get_dense_encoder()
    sentences = [passage_sentences(r["evidence"]) for r in rows]
    flat = [r["claim"] for r in rows] + [t for group in sentences for t in group]
    vectors = np.asarray(encoder.encode(flat, batch_size=64), dtype=np.float32)
    claims, offset, out = vectors[: len(rows)], len(rows), []
    for r, claim_vector, group in zip(rows, claims, sentences):
        sims = sorted((vectors[offset:offset + len(group)] @ claim_vector).tolist(), reverse=True)
        offset += len(group)
        s = deterministic_signals(r["claim"], group, r["evidence"], r["evidence"])
        s["sim_max"] = sims[0] if sims else 0.0
        s["sim_mean3"] = float(np.mean(sims[:3])) if sims else 0.0
        s["verifier_logit"] = r[logit_key]
        out.append(s)
    return out


def load_model(folder: Path, threads: int):
    from grounding.crossencoder import VerifierModel

    return VerifierModel(folder, threads)


def speed(model, pairs, threads: int) -> float:
    model.threads = threads
    model.score(pairs[:16])  # warm-up
    t = time.perf_counter()
    model.score(pairs)
    return len(pairs) / (time.perf_counter() - t)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, default=ROOT / "grounding" / "verifier")
    parser.add_argument("--new", type=Path, default=ROOT / "build" / "v2")
    parser.add_argument("--prepared", type=Path, default=ROOT / "build" / "gpu", help="grounding.training.prepare output")
    parser.add_argument("--relations", type=Path, default=ROOT / "build" / "relations")
    parser.add_argument("--cv", type=Path, default=ROOT / "grounding" / "training" / "cv.json")
    parser.add_argument("--speed-pairs", type=int, default=120)
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="threads for scoring (speed runs use 1 and 2)")
    parser.add_argument("--write-calibration", type=Path, default=None,
                        help="save the new verifier's refitted calibration (profiles checks + verifier) here")
    parser.add_argument("--thresholds-on", choices=("scifact", "composition"), default="scifact",
                        help="where --write-calibration chooses the risk levels' thresholds: the SciFact calibration "
                             "pairs (the new verifier trained on them: in-sample) or the composition cal half "
                             "(never trained on)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "verifier_dev.json")
    args = parser.parse_args(argv)

    from grounding.checks import deterministic_signals
    from grounding.evidence import passage_sentences

    split = json.loads(SPLIT.read_text())
    dev_ids = set(split["dev"])
    pairs = [json.loads(l) for l in open(args.prepared / "pairs.jsonl")]
    sf_dev = [p for p in pairs if p["id"] in dev_ids]
    sf_cal = [p for p in pairs if p["id"] not in dev_ids]
    comp = [json.loads(l) for l in open(args.relations / "dev.jsonl")]
    comp_cal = [r for r in comp if half(r["group"]) == "cal"]
    comp_dev = [r for r in comp if half(r["group"]) == "dev"]
    cv = json.loads(args.cv.read_text())
    oof = cv["outer"][cv["best"]]

    # Signals as the service computes them (ClaimScorer.signals: evidence sentences, context = sources).
    for p in pairs:
        s = deterministic_signals(p["claim"], passage_sentences(p["evidence"]["3"]), p["context"], p["context"])
        s["sim_max"], s["sim_mean3"] = p["signals"]["sim_max"], p["signals"]["sim_mean3"]
        p["svc_signals"] = s

    report = {"scifact_dev": len(sf_dev), "scifact_cal": len(sf_cal), "composition_dev": len(comp_dev),
              "composition_cal": len(comp_cal), "verifiers": {}}
    calibrations = {}
    for name, folder in (("old", args.old), ("new", args.new)):
        if not (folder / "verifier.safetensors").exists():
            print(f"skip {name}: no weights in {folder}", flush=True)
            continue
        model = load_model(folder, args.threads)
        t0 = time.time()
        weights = folder / "verifier.safetensors"
        stamp = f"{weights.resolve()}:{weights.stat().st_mtime}:{len(comp)}"
        cache = ROOT / "build" / "eval" / f"logits-{name}.json"
        cached = json.loads(cache.read_text()) if cache.exists() else {}
        if cached.get("stamp") == stamp:
            logits, c_logits = cached["pairs"], cached["comp"]
        else:
            logits = dict(zip([p["id"] for p in pairs], model.score([(p["claim"], p["evidence"]["3"]) for p in pairs])))
            c_logits = model.score([(r["claim"], r["evidence"]) for r in comp])
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps({"stamp": stamp, "pairs": logits, "comp": c_logits}))
        for r, x in zip(comp, c_logits):
            r[f"logit_{name}"] = x
        scored_s = time.time() - t0
        rows = {}
        variants = [("seen", logits)] if name == "old" else []
        variants.append(("fair" if name == "old" else "", oof if name == "old" else logits))
        for tag, source in variants:
            key = f"{name} verifier" + (f" ({tag})" if tag else "")
            cal_y, cal_x = [p["label"] for p in sf_cal], [source[p["id"]] for p in sf_cal]
            dev_y, dev_x = [p["label"] for p in sf_dev], [source[p["id"]] for p in sf_dev]
            t = best_threshold(cal_y, cal_x)
            row = {"scifact_auroc": round(roc_auc_score(dev_y, dev_x), 4),
                   "scifact_ba": round(ba_at(dev_y, dev_x, t), 4), "scifact_threshold": round(t, 3)}
            # Full service score: verifier profile refitted on the calibration part, vetoes and containment.
            fit = []
            for p in sf_cal:
                s = dict(p["svc_signals"])
                s["verifier_logit"] = source[p["id"]]
                fit.append(s)
            profile = fit_profile("verifier", fit, cal_y)
            dev_sig = []
            for p in sf_dev:
                sig = dict(p["svc_signals"])
                sig["verifier_logit"] = source[p["id"]]
                dev_sig.append(sig)
            for label, rules in RULES.items():
                cal_scores = [service_score(profile, sig, rules) for sig in fit]
                th = choose_thresholds(cal_y, cal_scores)
                dev_scores = [service_score(profile, sig, rules) for sig in dev_sig]
                row[f"service[{label}]"] = {"auroc": round(roc_auc_score(dev_y, dev_scores), 4),
                                            "ba_low": round(ba_at(dev_y, dev_scores, th["low"]), 4),
                                            "ba_high": round(ba_at(dev_y, dev_scores, th["high"]), 4),
                                            "thresholds": th}
            # The profile's thresholds as the service would use them (every rule on).
            profile.thresholds = row["service[all]"]["thresholds"]
            calibrations[key] = (profile, fit, cal_y)
            if tag != "seen":
                cy, cx = [r["label"] for r in comp_cal], [r[f"logit_{name}"] for r in comp_cal]
                dy, dx = [r["label"] for r in comp_dev], [r[f"logit_{name}"] for r in comp_dev]
                tc = best_threshold(cy, cx)
                row["composition_auroc"] = round(roc_auc_score(dy, dx), 4)
                row["composition_ba"] = round(ba_at(dy, dx, tc), 4)
                row["composition_threshold"] = round(tc, 3)
                per_kind = {}
                for kind in sorted({r["kind"] for r in comp_dev}):
                    idx = [i for i, r in enumerate(comp_dev) if r["kind"] == kind]
                    per_kind[kind] = {"n": len(idx), "label": comp_dev[idx[0]]["label"],
                                      "accuracy": round(float(np.mean([(dx[i] >= tc) == (dy[i] == 1) for i in idx])), 3)}
                row["composition_by_kind"] = per_kind
                # Each unsupported kind against all supported examples of the dev half (threshold-free).
                positives = [i for i, r in enumerate(comp_dev) if r["label"] == 1]
                row["composition_auroc_by_negative_kind"] = {
                    kind: round(roc_auc_score([1] * len(positives) + [0] * len(idx),
                                              [dx[i] for i in positives] + [dx[i] for i in idx]), 4)
                    for kind in sorted({r["kind"] for r in comp_dev if r["label"] == 0})
                    for idx in [[i for i, r in enumerate(comp_dev) if r["kind"] == kind]]}
                row["composition_auroc_by_source"] = {
                    src: round(roc_auc_score([dy[i] for i in idx], [dx[i] for i in idx]), 4)
                    for src in sorted({r["source"] for r in comp_dev})
                    for idx in [[i for i, r in enumerate(comp_dev) if r["source"] == src]]}
            rows[key] = row
        sp = [(p["claim"], p["evidence"]["3"]) for p in sf_dev[: args.speed_pairs]]
        claims_s = {f"{n}_threads": (None if args.skip_speed else round(speed(model, sp, n), 1)) for n in (1, 2)}
        for row in rows.values():
            row["claims_per_s"] = claims_s
            row["max_len"] = model.max_len
        report["verifiers"].update(rows)
        print(f"{name}: scored {len(pairs) + len(comp)} pairs in {scored_s:.0f} s", flush=True)

    if args.write_calibration and "new verifier" in calibrations:
        from grounding.calibrate import Calibration

        profile, fit, cal_y = calibrations["new verifier"]
        checks = fit_profile("checks", fit, cal_y)
        checks.thresholds = choose_thresholds(cal_y, [service_score(checks, s) for s in fit])
        profile.cv = {"note": "not cross-validated: SciFact dev split figures in verifier.json",
                      **{k: v for k, v in report["verifiers"]["new verifier"].items() if k.startswith("service")}}
        checks.cv = {"note": "not cross-validated; thresholds on the calibration pairs"}
        where = "thresholds on the same pairs (new verifier's logits in-sample: it trained on them)"
        if args.thresholds_on == "composition":
            # The service's score for held-out composition examples (the cal half), thresholds chosen there.
            signals = composition_signals(comp_cal, "logit_new")
            comp_y = [r["label"] for r in comp_cal]
            profile.thresholds = choose_thresholds(comp_y, [service_score(profile, s) for s in signals])
            dev_signals = composition_signals(comp_dev, "logit_new")
            dev_y, dev_scores = [r["label"] for r in comp_dev], [service_score(profile, s) for s in dev_signals]
            report["composition_thresholds"] = {
                "thresholds": profile.thresholds, "composition_dev_service_auroc": round(roc_auc_score(dev_y, dev_scores), 4),
                **{f"composition_dev_ba_{risk}": round(ba_at(dev_y, dev_scores, t), 4)
                   for risk, t in profile.thresholds.items()},
                **{f"composition_dev_unsupported_served_{risk}": round(float(np.mean(
                    [x >= t for x, y in zip(dev_scores, dev_y) if y == 0])), 4) for risk, t in profile.thresholds.items()}}
            where = (f"thresholds on the composition dev split's cal half ({len(comp_cal)} examples, never trained on; "
                     "grounding/training/make_relations.py)")
        Calibration({"checks": checks, "verifier": profile},
                    {"fitted_on": f"SciFact claim/context pairs outside the dev split ({len(sf_cal)}), "
                                  f"benchmarks/verifier_dev.py; {where}", "verifier_configuration": "verifier-v2"}
                    ).save(args.write_calibration)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps({k: v for k, v in report.items() if k != "verifiers"}))
    head = ["verifier", "SF AUROC", "SF BA"] + [f"SF svc[{k}] AUROC/BA" for k in RULES] + \
        ["Comp AUROC", "Comp BA", "cl/s 1t", "cl/s 2t"]
    print(" | ".join(head))
    for key, r in report["verifiers"].items():
        cells = [key, str(r["scifact_auroc"]), str(r["scifact_ba"])]
        cells += [f"{r[f'service[{k}]']['auroc']}/{r[f'service[{k}]']['ba_low']}" for k in RULES]
        cells += [str(r.get("composition_auroc", "-")), str(r.get("composition_ba", "-")),
                  str(r["claims_per_s"]["1_threads"]), str(r["claims_per_s"]["2_threads"])]
        print(" | ".join(cells))
    for key, r in report["verifiers"].items():
        if "composition_by_kind" in r:
            print(key, "accuracy by kind", json.dumps({k: v["accuracy"] for k, v in r["composition_by_kind"].items()}))
            print(key, "AUROC by source", json.dumps(r["composition_auroc_by_source"]))
            print(key, "AUROC, each unsupported kind vs all supported", json.dumps(r["composition_auroc_by_negative_kind"]))


if __name__ == "__main__":
    main()
