"""The paired bootstrap: point estimates equal the metrics' own, and intervals cover what they should."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from sspa_hf.evaluation.metrics import classification_metrics

# intervals.py lives in benchmarks/ferplus/, beside its user; imported by name as there
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "ferplus"))
from intervals import paired_bootstrap


def _noisy(y: np.ndarray, error_rate: float, rng: np.random.Generator) -> np.ndarray:
    """y with a share `error_rate` of the faces given a random other class."""
    wrong = rng.random(y.size) < error_rate
    return np.where(wrong, (y + rng.integers(1, 7, y.size)) % 7, y)


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1", "macro_recall", "macro_precision"])
def test_point_estimate_is_the_seed_mean_of_the_metric_difference(metric):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 400)
    a = np.stack([_noisy(y, 0.2, rng) for _ in range(3)])
    b = np.stack([_noisy(y, 0.4, rng) for _ in range(3)])
    result = paired_bootstrap(y, a, b, metric=metric, num_resamples=200)
    expected = np.mean(
        [classification_metrics(y, a[s])[metric] - classification_metrics(y, b[s])[metric] for s in range(3)]
    )
    assert result["difference"] == pytest.approx(expected)
    assert result["mean_a"] == pytest.approx(np.mean([classification_metrics(y, p)[metric] for p in a]))
    assert result["low"] <= result["difference"] <= result["high"]


def test_a_real_gap_is_above_zero_and_no_gap_straddles_it():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 7, 600)
    better = np.stack([_noisy(y, 0.2, rng) for _ in range(5)])
    worse = np.stack([_noisy(y, 0.3, rng) for _ in range(5)])
    same = np.stack([_noisy(y, 0.3, rng) for _ in range(5)])
    assert paired_bootstrap(y, better, worse)["low"] > 0
    even = paired_bootstrap(y, same, worse)
    assert even["low"] < 0 < even["high"]
    assert paired_bootstrap(y, same, worse) == even  # the same generator seed gives the same interval
    identical = paired_bootstrap(y, worse, worse)
    assert identical["low"] == identical["high"] == identical["difference"] == 0


def test_pairing_narrows_the_interval_against_unpaired_noise():
    """Two arms that err on the same faces differ little: pairing over faces must see that."""
    rng = np.random.default_rng(2)
    y = rng.integers(0, 7, 500)
    base = np.stack([_noisy(y, 0.35, rng) for _ in range(3)])
    nudged = base.copy()
    nudged[:, :10] = y[:10]  # a fixed 10 faces more right in every seed: +2 points at most
    paired = paired_bootstrap(y, nudged, base)
    assert 0 < paired["difference"] <= 0.02 + 1e-12
    assert paired["low"] >= 0  # never below: no face is worse
    assert paired["high"] - paired["low"] < 0.02


def test_macro_f1_over_a_subset_of_classes_leaves_the_others_out():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 7, 300)
    a = _noisy(y, 0.1, rng)[None]
    b = a.copy()
    b[0, y == 1] = 0  # b never gets class 1 right
    six = [c for c in range(7) if c != 1]
    assert paired_bootstrap(y, a, b, metric="macro_f1")["difference"] > 0.1
    without = paired_bootstrap(y, a, b, metric="macro_f1", classes=six)
    scores_a = classification_metrics(y, a[0])
    scores_b = classification_metrics(y, b[0])
    names = ["anger", "fear", "happiness", "neutral", "sadness", "surprise"]
    expected = np.mean([scores_a[f"f1/{n}"] - scores_b[f"f1/{n}"] for n in names])
    assert without["difference"] == pytest.approx(expected)


def test_shape_mistakes_name_the_shapes():
    y = np.zeros(10, dtype=int)
    with pytest.raises(ValueError, match=r"\(seeds, 10\)"):
        paired_bootstrap(y, np.zeros((2, 10), int), np.zeros((3, 10), int))
    with pytest.raises(ValueError, match="metric must be one of"):
        paired_bootstrap(y, np.zeros((1, 10), int), np.zeros((1, 10), int), metric="auc")
