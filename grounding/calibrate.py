"""One calibrated score per claim: a logistic regression over the verifier's signals.

The parameters ship as ``grounding/calibration.json``: one *profile* per set of signals the service may
have (the trained verifier and the deterministic checks by default; with a language-model judge when one
is configured; the checks alone as a fallback). Each profile holds the feature names, the standardisation,
the coefficients, the thresholds per risk level and the cross-validated figures that chose them.

Applying a profile needs numpy only; fitting (``fit_profile``, used by benchmarks/grounding.py) needs
scikit-learn. Fitted on the SciFact claim/context pairs with 5-fold cross-validation: every figure in the
file is measured on pairs the calibration (and the verifier) never saw while fitting.

    calibration = load_calibration()
    profile = calibration.profile("verifier")
    p = profile.score(signals)            # 0..1
    supported = p >= profile.threshold("high")
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

CALIBRATION_FILE = Path(__file__).resolve().parent / "calibration.json"
RISKS = ("low", "high")

# Features each profile reads from a claim's signals (grounding/checks.py, evidence.py, the models).
PROFILE_FEATURES: dict[str, list[str]] = {
    "checks": ["sim_max", "sim_mean3", "overlap_best", "overlap_evidence", "overlap_context", "any_number_missing",
               "number_conflict", "names_missing_frac", "negation_mismatch", "claim_negated", "direction_conflict"],
}
PROFILE_FEATURES["verifier"] = ["verifier_logit"] + PROFILE_FEATURES["checks"]


def logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def feature_value(signals: dict, name: str) -> float:
    if name == "any_number_missing":
        return float(signals.get("numbers_missing", 0.0) > 0)
    return float(signals.get(name, 0.0))


@dataclass
class Profile:
    name: str
    features: list[str]
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    thresholds: dict[str, float]
    cv: dict = field(default_factory=dict)

    def vector(self, signals: dict) -> np.ndarray:
        return np.array([feature_value(signals, f) for f in self.features], dtype=np.float64)

    def score(self, signals: dict) -> float:
        x = (self.vector(signals) - np.asarray(self.mean)) / np.asarray(self.scale)
        z = float(self.intercept + x @ np.asarray(self.coef))
        return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))

    def threshold(self, risk: str) -> float:
        if risk not in self.thresholds:
            raise ValueError(f"unknown risk level {risk!r}: valid levels are {', '.join(sorted(self.thresholds))}")
        return self.thresholds[risk]

    def to_dict(self) -> dict:
        return {"features": self.features, "mean": self.mean, "scale": self.scale, "coef": self.coef,
                "intercept": self.intercept, "thresholds": self.thresholds, "cv": self.cv}


@dataclass
class Calibration:
    profiles: dict[str, Profile]
    meta: dict = field(default_factory=dict)

    def profile(self, name: str) -> Profile:
        if name not in self.profiles:
            raise ValueError(f"no calibration profile {name!r}: available are {', '.join(sorted(self.profiles))}")
        return self.profiles[name]

    def save(self, path: Path = CALIBRATION_FILE) -> None:
        payload = {"meta": self.meta, "profiles": {n: p.to_dict() for n, p in self.profiles.items()}}
        Path(path).write_text(json.dumps(payload, indent=1) + "\n")


def load_calibration(path: Path = CALIBRATION_FILE) -> Calibration:
    return _load(str(path))


@lru_cache(maxsize=4)
def _load(path: str) -> Calibration:
    payload = json.loads(Path(path).read_text())
    profiles = {name: Profile(name=name, **body) for name, body in payload["profiles"].items()}
    return Calibration(profiles, payload.get("meta", {}))


# ---- fitting (benchmarks and training only) ----------------------------------------------------------
def design_matrix(rows: list[dict], features: list[str]) -> np.ndarray:
    return np.array([[feature_value(r, f) for f in features] for r in rows], dtype=np.float64)


def fit_profile(name: str, signals: list[dict], labels: list[int], c: float = 1.0) -> Profile:
    """A logistic regression on ``signals`` (one dict per claim), classes balanced. Thresholds are filled
    in by ``choose_thresholds`` from out-of-fold scores."""
    from sklearn.linear_model import LogisticRegression

    features = PROFILE_FEATURES[name]
    x = design_matrix(signals, features)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    lr = LogisticRegression(C=c, class_weight="balanced", max_iter=2000)
    lr.fit((x - mean) / scale, np.asarray(labels))
    return Profile(name, features, mean.tolist(), scale.tolist(), lr.coef_[0].tolist(), float(lr.intercept_[0]),
                   {"low": 0.5, "high": 0.5})


def balanced_accuracy(labels, predicted) -> float:
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    pos, neg = labels == 1, labels == 0
    tpr = (predicted[pos] == 1).mean() if pos.any() else 0.0
    tnr = (predicted[neg] == 0).mean() if neg.any() else 0.0
    return float((tpr + tnr) / 2)


def choose_thresholds(labels, scores, high_unsupported_recall: float = 0.95) -> dict[str, float]:
    """``low``: the threshold with the best balanced accuracy; ``high``: the lowest threshold that still
    rejects at least ``high_unsupported_recall`` of the unsupported claims (at most 5% of them served)."""
    labels, scores = np.asarray(labels), np.asarray(scores)
    grid = np.unique(np.round(scores, 4))
    best_t, best_ba = 0.5, -1.0
    for t in grid:
        ba = balanced_accuracy(labels, (scores >= t).astype(int))
        if ba > best_ba + 1e-9:
            best_t, best_ba = float(t), ba
    unsupported = np.sort(scores[labels == 0])
    if len(unsupported):
        index = min(len(unsupported) - 1, int(math.ceil(high_unsupported_recall * len(unsupported))) - 1)
        high = float(unsupported[index]) + 1e-4
    else:
        high = best_t
    return {"low": round(best_t, 4), "high": round(max(high, best_t), 4)}
