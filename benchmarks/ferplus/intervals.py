"""Paired bootstrap intervals for the difference between two models evaluated on the same faces over seeds.

Two arms are compared on one evaluation set: run s of each arm used seed s, so the seeds are paired, and every
run saw the same faces, so the faces are paired too. One resample draws the faces with replacement (the same draw
for every run) and the seeds with replacement (the same draw for both arms); the statistic is the seed mean of
metric(arm a) - metric(arm b). The interval is the percentile interval of that statistic (plain numpy, since
`scipy.stats.bootstrap` resamples one level only and here faces and seeds are resampled together).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sspa_hf.evaluation.metrics import scores_from_counts

#: The metrics `paired_bootstrap` knows, each computed from one resample's counts as in `classification_metrics`.
METRICS: tuple[str, ...] = ("accuracy", "macro_f1", "macro_recall", "macro_precision")


def _resampled_metric(
    weights: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, metric: str, classes: np.ndarray, num_classes: int
) -> np.ndarray:
    """metric of each resample (rows of `weights`, face counts) for one run's predictions: shape (resamples,)."""
    true = np.eye(num_classes)[y_true]
    pred = np.eye(num_classes)[y_pred]
    hit = true * pred
    if metric == "accuracy":
        return (weights @ hit.sum(axis=1)) / weights.sum(axis=1)
    scores = scores_from_counts(weights @ hit, weights @ pred, weights @ true)
    key = metric.removeprefix("macro_")
    return scores[key][:, classes].mean(axis=1)


def paired_bootstrap(
    y_true: Sequence[int] | np.ndarray,
    predictions_a: np.ndarray,
    predictions_b: np.ndarray,
    *,
    metric: str = "accuracy",
    num_classes: int = 7,
    classes: Sequence[int] | None = None,
    num_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Seed mean of metric(a) - metric(b) and its paired-bootstrap percentile interval over faces and seeds.

    Args:
        y_true: (n,) class index of each evaluation face.
        predictions_a, predictions_b: (seeds, n) predicted class of each face by each run of arm a / arm b; row s
            of both arms is the same seed.
        metric: one of `METRICS`; the macro ones average the per-class scores over `classes`.
        classes: the classes the macro means are over (default all `num_classes`), e.g. all but disgust.
        num_resamples, confidence, seed: the bootstrap's size, the interval's coverage and its random generator.

    Returns:
        ``{"difference", "low", "high", "mean_a", "mean_b", "seeds", "faces"}``: the point estimate (on the data as
        they are), the interval bounds, each arm's seed-mean metric, and the sizes.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    y_true = np.asarray(y_true, dtype=np.int64)
    a, b = np.atleast_2d(np.asarray(predictions_a, dtype=np.int64)), np.atleast_2d(np.asarray(predictions_b, np.int64))
    if a.shape != b.shape or a.shape[1] != y_true.size:
        raise ValueError(f"predictions must both be (seeds, {y_true.size}); got {a.shape} and {b.shape}")
    chosen = np.arange(num_classes) if classes is None else np.asarray(classes, dtype=np.int64)
    seeds, faces = a.shape
    rng = np.random.default_rng(seed)
    original = np.ones((1, faces))
    weights = np.vstack([original, rng.multinomial(faces, np.full(faces, 1 / faces), size=num_resamples)])
    per_seed = {
        name: np.stack([_resampled_metric(weights, y_true, run, metric, chosen, num_classes) for run in runs], axis=1)
        for name, runs in (("a", a), ("b", b))
    }  # (1 + resamples, seeds)
    difference = per_seed["a"] - per_seed["b"]
    drawn = rng.integers(seeds, size=(num_resamples, seeds))
    statistic = np.take_along_axis(difference[1:], drawn, axis=1).mean(axis=1)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(statistic, [tail, 100 - tail])
    return {
        "difference": float(difference[0].mean()),
        "low": float(low),
        "high": float(high),
        "mean_a": float(per_seed["a"][0].mean()),
        "mean_b": float(per_seed["b"][0].mean()),
        "seeds": int(seeds),
        "faces": int(faces),
    }
