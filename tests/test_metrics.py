"""The paper's metrics (Eq. 9-12) against sklearn, the Trainer hook, and the bundled `evaluate` module."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn import metrics as skm
from transformers import EvalPrediction

from sspa_hf.labels import EXPRESSIONS
from sspa_hf.metrics import classification_metrics, compute_metrics, confusion_matrix, metric_path

LABELS = list(range(7))


def _random_labels(seed: int, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Random y_true without class 1 (disgust) and y_pred without class 5 (sadness)."""
    rng = np.random.default_rng(seed)
    y_true = rng.choice([0, 2, 3, 4, 5, 6], size=n, p=[0.1, 0.1, 0.35, 0.2, 0.15, 0.1])
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, 7, n))
    y_pred[y_pred == 5] = 4  # sadness is never predicted
    return y_true, y_pred


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_equal_sklearn_with_a_class_never_predicted_and_one_never_true(seed):
    y_true, y_pred = _random_labels(seed)
    assert 5 not in y_pred and 1 not in y_true and 5 in y_true and 1 in y_pred
    out = classification_metrics(y_true, y_pred)
    kw = {"labels": LABELS, "zero_division": 0}
    assert out["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred), abs=1e-12)
    for key, score in [("precision", skm.precision_score), ("recall", skm.recall_score), ("f1", skm.f1_score)]:
        assert out[f"macro_{key}"] == pytest.approx(score(y_true, y_pred, average="macro", **kw), abs=1e-12)
    precision, recall, f1, support = skm.precision_recall_fscore_support(y_true, y_pred, **kw)
    for i, name in enumerate(EXPRESSIONS):
        assert out[f"precision/{name}"] == pytest.approx(precision[i], abs=1e-12)
        assert out[f"recall/{name}"] == pytest.approx(recall[i], abs=1e-12)
        assert out[f"f1/{name}"] == pytest.approx(f1[i], abs=1e-12)
        assert out[f"support/{name}"] == support[i]
    assert out["precision/sadness"] == 0.0  # never predicted
    assert out["recall/disgust"] == 0.0 and out["support/disgust"] == 0  # never true
    assert out["confusion_matrix"] == skm.confusion_matrix(y_true, y_pred, labels=LABELS).tolist()
    json.dumps(out)  # JSON-serialisable as it is


def test_macro_f1_is_the_mean_of_per_class_f1_not_the_f1_of_macro_p_and_r():
    y_true = [0, 0, 0, 0, 1, 1, 2, 2, 2, 3]
    y_pred = [0, 0, 0, 1, 1, 2, 2, 0, 2, 0]
    out = classification_metrics(y_true, y_pred, num_classes=4, class_names=["a", "b", "c", "d"])
    p, r = out["macro_precision"], out["macro_recall"]
    assert out["macro_f1"] == pytest.approx(np.mean([out[f"f1/{n}"] for n in "abcd"]), abs=1e-15)
    assert abs(out["macro_f1"] - 2 * p * r / (p + r)) > 1e-3
    # Hand-computed: rows = true, columns = predicted.
    assert out["confusion_matrix"] == [[3, 1, 0, 0], [0, 1, 1, 0], [1, 0, 2, 0], [1, 0, 0, 0]]
    assert out["accuracy"] == pytest.approx(0.6)
    assert out["precision/a"] == pytest.approx(3 / 5) and out["recall/a"] == pytest.approx(3 / 4)


def test_confusion_matrix_rejects_out_of_range_classes_and_length_mismatch():
    with pytest.raises(ValueError, match=r"outside 0\.\.6"):
        confusion_matrix([0, 7], [0, 1], 7)
    with pytest.raises(ValueError, match="differ in length"):
        confusion_matrix([0, 1, 2], [0, 1], 7)
    with pytest.raises(ValueError, match="class_names"):
        classification_metrics([0], [0], num_classes=3, class_names=["a", "b"])


def test_compute_metrics_for_the_trainer_takes_argmax_and_keeps_only_scalars():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(50, 7)).astype(np.float32)
    labels = rng.integers(0, 7, 50)
    out = compute_metrics(EvalPrediction(predictions=logits, label_ids=labels))
    expected = classification_metrics(labels, logits.argmax(-1))
    assert "confusion_matrix" not in out
    assert set(out) == set(expected) - {"confusion_matrix"}
    assert all(isinstance(value, float) for value in out.values())
    assert out["macro_f1"] == expected["macro_f1"] and out["precision/fear"] == expected["precision/fear"]
    # Tuple predictions (model outputs beyond logits): the first element is the logits.
    assert compute_metrics(EvalPrediction(predictions=(logits, logits * 0), label_ids=labels)) == out


def test_evaluate_module_loads_offline_by_path_and_equals_classification_metrics(monkeypatch):
    import evaluate

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    metric = evaluate.load(metric_path())
    y_true, y_pred = _random_labels(4, n=120)
    out = metric.compute(predictions=y_pred.tolist(), references=y_true.tolist())
    assert out == classification_metrics(y_true, y_pred)
    # Incremental use (add_batch) gives the same numbers.
    for start in range(0, 120, 50):
        metric.add_batch(predictions=y_pred[start : start + 50], references=y_true[start : start + 50])
    assert metric.compute() == out
