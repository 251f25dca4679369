"""`evaluate` metric of sspa-hf: the paper's FER metrics (accuracy, macro P/R/F1 as Eq. 9-12, per class).

Load it offline with ``evaluate.load(sspa_hf.evaluation.metrics.metric_path())``; it computes exactly
``sspa_hf.evaluation.metrics.classification_metrics`` (it needs the sspa_hf package installed). `sspa-eval`, the end of
`sspa-train` and the Trainer's `compute_metrics` report through it
(``sspa_hf.evaluation.metrics.evaluate_predictions``).
"""

import datasets
import evaluate

from sspa_hf.evaluation.metrics import classification_metrics, default_class_names
from sspa_hf.labels import EXPRESSIONS

_CITATION = """\
@article{sspajt2024,
  title   = {Sample Selection and Paired Augmentation Joint Training for Facial Expression Recognition},
  journal = {Electronics},
  volume  = {13},
  number  = {19},
  pages   = {3891},
  year    = {2024},
  doi     = {10.3390/electronics13193891}
}
"""

_DESCRIPTION = """\
Facial expression recognition metrics of SSPA-JT computed from the confusion matrix: accuracy (Eq. 9), macro
precision (Eq. 10), macro recall (Eq. 11), macro F1 as the mean of the per-class F1 scores (Eq. 12), per-class
precision, recall, F1 and support, and the confusion matrix (rows = true class, columns = predicted class).
A class that is never predicted has precision 0; one absent from the references has recall 0 and is left out
of the macro means, which are over the classes present (the result names the absent ones).
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions (list of int): predicted class ids.
    references (list of int): true class ids.
    num_classes (int): number of classes C (default 7, the canonical expressions).
    class_names (list of str): names used in the per-class keys (default: anger, disgust, fear, happiness,
        neutral, sadness, surprise); must have num_classes entries.
Returns:
    dict with "accuracy", "macro_precision", "macro_recall", "macro_f1", "absent_classes" (names; only when a
    class is absent from the references), "precision/<name>", "recall/<name>", "f1/<name>", "support/<name>" and
    "confusion_matrix" (nested list).
Example:
    >>> metric = evaluate.load(sspa_hf.evaluation.metrics.metric_path())
    >>> metric.compute(predictions=[0, 3, 3], references=[0, 3, 4])["accuracy"]
    0.6666666666666666
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class FerMetric(evaluate.Metric):
    """The paper's metrics as an `evaluate.Metric` (a thin wrapper of `classification_metrics`)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
            reference_urls=["https://doi.org/10.3390/electronics13193891"],
        )

    def _compute(self, predictions, references, num_classes: int = len(EXPRESSIONS), class_names=None) -> dict:
        names = tuple(class_names) if class_names is not None else default_class_names(num_classes)
        return classification_metrics(references, predictions, num_classes=num_classes, class_names=names)
