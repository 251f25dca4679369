"""The paper's evaluation metrics (Eq. 9-12), computed once from the confusion matrix in plain numpy.

Zero division: a class that is never predicted has precision 0, a class absent from the labels has recall 0,
and a class whose precision and recall are both 0 has F1 0 (sklearn's ``zero_division=0``). The macro means
(Eq. 10-12) are over the classes present in the labels: a class the evaluation set lacks (CK+ has no neutral)
would count as 0 and say nothing about the model; the result names such classes (``absent_classes``).
What the trainer and `sspa-eval` report goes through the shipped `evaluate` module (`evaluate_predictions`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..labels import EXPRESSIONS

#: The scalar keys `classification_metrics` returns besides the per-class ones.
SUMMARY_KEYS: tuple[str, ...] = ("accuracy", "macro_precision", "macro_recall", "macro_f1")


def confusion_matrix(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, num_classes: int
) -> np.ndarray:
    """Counts M[t, p] of samples of true class t predicted as p (rows = true, columns = predicted)."""
    true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    pred = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    if true.shape != pred.shape:
        raise ValueError(f"y_true and y_pred differ in length: {true.size} vs {pred.size}")
    for name, values in (("y_true", true), ("y_pred", pred)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} holds a class outside 0..{num_classes - 1}: {sorted(set(values.tolist()))}")
    return np.bincount(true * num_classes + pred, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0."""
    out = np.zeros_like(numerator, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def scores_from_counts(tp: np.ndarray, predicted: np.ndarray, support: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision, recall and F1 from true-positive, predicted and true counts (any shape, class last)."""
    tp, predicted, support = (np.asarray(a, dtype=np.float64) for a in (tp, predicted, support))
    precision = _safe_divide(tp, predicted)
    recall = _safe_divide(tp, support)
    f1 = _safe_divide(2 * precision * recall, precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1}


def per_class_scores(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision (TP / predicted), recall (TP / true), F1 and support (true count) from a matrix."""
    cm = np.asarray(cm, dtype=np.float64)
    support = cm.sum(axis=1)
    return {**scores_from_counts(np.diag(cm), cm.sum(axis=0), support), "support": support.astype(np.int64)}


def classification_metrics(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    num_classes: int = 7,
    class_names: Sequence[str] = EXPRESSIONS,
) -> dict[str, Any]:
    """Accuracy (Eq. 9), macro precision/recall (Eq. 10-11), macro F1 = mean of per-class F1 (Eq. 12).

    Returns a flat JSON-serialisable dict: the four summary scores (macro means over the classes present in
    ``y_true``), ``absent_classes`` (their names, only when some class is absent), ``precision/<name>``,
    ``recall/<name>``, ``f1/<name>``, ``support/<name>`` per class, and ``confusion_matrix`` (nested list,
    rows = true class). Classes never predicted get precision 0 (see the module docstring). Empty input gives 0.
    """
    names = list(class_names)
    if len(names) != num_classes:
        raise ValueError(f"class_names has {len(names)} names but num_classes is {num_classes}")
    cm = confusion_matrix(y_true, y_pred, num_classes)
    scores = per_class_scores(cm)
    total = int(cm.sum())
    present = scores["support"] > 0

    def macro(kind: str) -> float:
        return float(scores[kind][present].mean()) if present.any() else 0.0

    out: dict[str, Any] = {
        "accuracy": float(np.trace(cm) / total) if total else 0.0,
        "macro_precision": macro("precision"),
        "macro_recall": macro("recall"),
        "macro_f1": macro("f1"),
    }
    if not present.all():
        out["absent_classes"] = [name for name, here in zip(names, present, strict=True) if not here]
    for kind in ("precision", "recall", "f1"):
        for name, value in zip(names, scores[kind], strict=True):
            out[f"{kind}/{name}"] = float(value)
    for name, value in zip(names, scores["support"], strict=True):
        out[f"support/{name}"] = int(value)
    out["confusion_matrix"] = cm.astype(int).tolist()
    return out


@functools.cache
def _fer_metric() -> Any:
    """The shipped `evaluate` module, loaded once by path (offline; kept in memory, no cache files)."""
    import evaluate

    return evaluate.load(metric_path(), keep_in_memory=True)


def evaluate_predictions(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, class_names: Sequence[str]
) -> dict[str, Any]:
    """`classification_metrics` of predictions through the shipped `evaluate` module (`metric_path`): what
    `sspa-eval`, the end of `sspa-train` and the Trainer's `compute_metrics` report."""
    names = list(class_names)
    return _fer_metric().compute(
        predictions=np.asarray(y_pred, dtype=np.int64).reshape(-1),
        references=np.asarray(y_true, dtype=np.int64).reshape(-1),
        num_classes=len(names),
        class_names=names,
    )


def selection_quality(labels: np.ndarray, reference_labels: np.ndarray, clean: np.ndarray) -> dict[str, float]:
    """Precision, recall and F1 of a clean set against known consistency, and how many samples are known.

    A sample is consistent when its label equals its reference (target-standard) label; samples whose reference
    is unknown (< 0) are left out. Empty when no reference is known.
    """
    labels, reference = np.asarray(labels, dtype=np.int64), np.asarray(reference_labels, dtype=np.int64)
    known = reference >= 0
    if not known.any():
        return {}
    consistent, selected = (labels == reference)[known], np.asarray(clean, dtype=bool)[known]
    hits = float((consistent & selected).sum())
    precision = hits / max(float(selected.sum()), 1.0)
    recall = hits / max(float(consistent.sum()), 1.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "known": int(known.sum())}


def selection_counts(
    labels: np.ndarray, is_target: np.ndarray, clean: np.ndarray, num_classes: int = len(EXPRESSIONS)
) -> dict[str, np.ndarray]:
    """Per class: target, auxiliary and selected (clean) auxiliary sample counts."""
    labels, is_target = np.asarray(labels, dtype=np.int64), np.asarray(is_target, dtype=bool)
    clean = np.asarray(clean, dtype=bool)

    def count(mask: np.ndarray) -> np.ndarray:
        return np.bincount(labels[mask], minlength=num_classes)[:num_classes]

    return {"target": count(is_target), "auxiliary": count(~is_target), "selected": count(~is_target & clean)}


#: Share of the predictions one class may take before the evaluation says the model has not learnt.
ONE_CLASS_SHARE = 0.9


def one_class_warning(metrics: dict[str, Any], class_names: Sequence[str]) -> str | None:
    """One line when a model predicts one class for nearly every face (a run that has not learnt: the figures
    beside it mean nothing), saying what to change; None otherwise or when the faces are all of one class."""
    cm = np.asarray(metrics.get("confusion_matrix", []))
    if cm.ndim != 2 or cm.sum() == 0 or (cm.sum(axis=1) > 0).sum() < 2:
        return None
    predicted = cm.sum(axis=0)
    top = int(predicted.argmax())
    share = predicted[top] / predicted.sum()
    if share < ONE_CLASS_SHARE:
        return None
    return (
        f"warning: the model predicts {class_names[top]} for {100 * share:.0f} % of the faces: it has not learnt to "
        "tell the expressions apart, so the figures below mean nothing; train longer (more epochs or more faces), "
        "or with a smaller learning rate"
    )


def format_summary(metrics: dict[str, Any], class_names: Sequence[str]) -> str:
    """A short text table: the four summary scores (and the classes they leave out), then precision/recall/F1/
    support per class; an absent class has no recall or F1. First, the one-line warning of `one_class_warning`
    when the model predicts one class for nearly every face."""
    absent = metrics.get("absent_classes", [])
    warning = one_class_warning(metrics, class_names)
    lines = [
        *([warning] if warning else []),
        f"accuracy         {100 * metrics['accuracy']:6.2f} %",
        f"macro precision  {100 * metrics['macro_precision']:6.2f} %",
        f"mean-class acc.  {100 * metrics['macro_recall']:6.2f} %  (macro recall)",
        f"macro F1         {100 * metrics['macro_f1']:6.2f} %",
    ]
    if absent:
        lines.append(
            f"(macro means over the {len(class_names) - len(absent)} classes present; "
            f"absent from the evaluation set: {', '.join(absent)})"
        )
    lines += ["", f"{'class':<12} {'precision':>9} {'recall':>7} {'F1':>7} {'support':>8}"]
    for name in class_names:
        recall_f1 = (
            f"{'absent':>7} {'-':>7}"
            if name in absent
            else f"{100 * metrics[f'recall/{name}']:6.2f}% {100 * metrics[f'f1/{name}']:6.2f}%"
        )
        lines.append(
            f"{name:<12} {100 * metrics[f'precision/{name}']:8.2f}% {recall_f1} {metrics[f'support/{name}']:8d}"
        )
    return "\n".join(lines)


def default_class_names(num_classes: int) -> tuple[str, ...]:
    """The canonical expressions for 7 classes, else ``class_0`` ... (when no names are given)."""
    return EXPRESSIONS if num_classes == len(EXPRESSIONS) else tuple(f"class_{i}" for i in range(num_classes))


def compute_metrics(eval_pred: Any) -> dict[str, float]:
    """`Trainer(compute_metrics=...)`: the scalar metrics of argmax(logits) (`evaluate_predictions`); the
    confusion matrix and the absent classes' names are left out.

    Takes a `transformers.EvalPrediction` (or a ``(logits, labels)`` pair); logits given as a tuple use
    their first element (the model's combined logits).
    """
    if hasattr(eval_pred, "predictions"):
        logits, labels = eval_pred.predictions, eval_pred.label_ids
    else:
        logits, labels = eval_pred
    if isinstance(logits, tuple | list):
        logits = logits[0]
    logits = np.asarray(logits)
    names = default_class_names(logits.shape[-1])
    metrics = evaluate_predictions(np.asarray(labels), logits.argmax(axis=-1), names)
    return {key: float(value) for key, value in metrics.items() if isinstance(value, int | float)}


def metric_path() -> str:
    """Folder of the shipped `evaluate` metric, found through this package (editable or not):
    ``evaluate.load(metric_path())`` works offline."""
    return str(Path(__file__).resolve().parent / "fer_metric")
