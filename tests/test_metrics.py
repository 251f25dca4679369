"""The paper's metrics (Eq. 9-12) against sklearn, the Trainer hook, and the bundled `evaluate` module."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm
from transformers import EvalPrediction

import sspa_hf.evaluation.metrics
from sspa_hf.evaluation.metrics import (
    classification_metrics,
    compute_metrics,
    confusion_matrix,
    evaluate_predictions,
    format_summary,
    metric_path,
)
from sspa_hf.labels import EXPRESSIONS
from sspa_hf.run.folder import EVAL_METRICS, write_evaluation_report

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
    present = {"labels": [c for c in LABELS if c != 1], "zero_division": 0}  # the macro means leave disgust out
    assert out["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred), abs=1e-12)
    for key, score in [("precision", skm.precision_score), ("recall", skm.recall_score), ("f1", skm.f1_score)]:
        assert out[f"macro_{key}"] == pytest.approx(score(y_true, y_pred, average="macro", **present), abs=1e-12)
    assert out["absent_classes"] == ["disgust"]
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


def test_a_class_absent_from_the_labels_is_left_out_of_the_macro_means_and_named():
    """CK+ has no neutral: its recall would count as 0 in every macro mean, whatever the model does."""
    rng = np.random.default_rng(5)
    y_true = rng.choice([0, 1, 2, 3, 5, 6], size=300)  # no neutral (4)
    y_pred = np.where(rng.random(300) < 0.5, y_true, rng.integers(0, 7, 300))
    assert 4 in y_pred  # predicted, never true
    out = evaluate_predictions(y_true, y_pred, EXPRESSIONS)
    six = [c for c in LABELS if c != 4]
    assert out["macro_recall"] == pytest.approx(np.mean([out[f"recall/{EXPRESSIONS[c]}"] for c in six]), abs=1e-15)
    assert out["macro_recall"] == pytest.approx(skm.recall_score(y_true, y_pred, labels=six, average="macro"))
    assert out["macro_precision"] == pytest.approx(
        skm.precision_score(y_true, y_pred, labels=six, average="macro", zero_division=0)
    )
    assert out["macro_f1"] == pytest.approx(skm.f1_score(y_true, y_pred, labels=six, average="macro"))
    assert out["absent_classes"] == ["neutral"] and out["support/neutral"] == 0
    table = format_summary(out, EXPRESSIONS)
    assert "over the 6 classes present; absent from the evaluation set: neutral" in table
    neutral_row = next(line for line in table.splitlines() if line.startswith("neutral "))
    assert "absent" in neutral_row and "0.00%" not in neutral_row.split("%", 1)[1]


def test_with_every_class_present_the_keys_are_the_old_ones():
    """eval_metrics.json of an evaluation set with every class stays as it was: no new key, same order."""
    y_true, y_pred = np.arange(70) % 7, (np.arange(70) * 3) % 7
    out = evaluate_predictions(y_true, y_pred, EXPRESSIONS)
    per_class = [f"{kind}/{name}" for kind in ("precision", "recall", "f1", "support") for name in EXPRESSIONS]
    assert list(out) == ["accuracy", "macro_precision", "macro_recall", "macro_f1", *per_class, "confusion_matrix"]


def test_what_the_reports_say_goes_through_the_shipped_evaluate_module(tmp_path, monkeypatch):
    """The Trainer's compute_metrics and eval_metrics.json (sspa-eval, end of sspa-train) use the module at
    metric_path(), found through the package itself, not a second implementation."""
    assert Path(metric_path()).parent == Path(sspa_hf.evaluation.metrics.__file__).resolve().parent
    module = sspa_hf.evaluation.metrics._fer_metric()
    assert type(module).__name__ == "FerMetric"
    calls = []

    class Recording:
        def compute(self, **kwargs):
            calls.append(len(kwargs["predictions"]))
            return module.compute(**kwargs)

    monkeypatch.setattr(sspa_hf.evaluation.metrics, "_fer_metric", Recording)
    y_true, y_pred = _random_labels(6, n=90)
    compute_metrics((np.eye(7)[y_pred], y_true))
    written = write_evaluation_report(tmp_path, y_true, y_pred, EXPRESSIONS, "test")
    assert calls == [90, 90]
    assert json.loads((tmp_path / EVAL_METRICS).read_text()) == written == classification_metrics(y_true, y_pred)


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
