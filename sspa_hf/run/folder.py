"""The run folder: every file a training run (and `sspa-eval`) writes in `output_dir`, named here once, with the
readers and writers of the reports.

Written by `sspa-train` / `SSPATrainer` (the constant that names each file in brackets):

| file | what |
| --- | --- |
| `recipe.yaml` (RECIPE) | the resolved arguments (recipe + `extends` + flags); `sspa-train OUT/recipe.yaml` reruns it |
| `data_args.json` (DATA_ARGS) | the data arguments and seed of the run (sspa-export-selection rebuilds the set) |
| `run_status.json` (RUN_STATUS) | running / complete / failed / interrupted, PID, host, heartbeat, last error line |
| `.sspa-train.lock` (LOCK) | PID, host and start of the one process writing the folder (removed at the end) |
| `.saving/` (STAGING) | a checkpoint being written; renamed to `checkpoint-N/` once complete and fsynced |
| `checkpoint-N/` | the Trainer's checkpoint (weights, optimizer, trainer state) + the selection state |
| `selection_state.safetensors` (SELECTION_STATE) | in each checkpoint: thresholds, partition, p_i(y) for resuming |
| `verdict_state.safetensors` (VERDICT_STATE) | selection_mode transition_pam, in checkpoints after T_S: its verdict |
| `consistency_state.safetensors` (CONSISTENCY_STATE) | selection_mode consistency, in checkpoints: targets' mean |
| `trainer_state.json` (TRAINER_STATE) | the Trainer's log history (also in each checkpoint) |
| `model.safetensors`, `config.json`, `preprocessor_config.json`, `*.py` | the model (`auto_map` modelling code) |
| `training_args.bin`, `train_results.json`, `eval_results.json`, `all_results.json` | the Trainer's own files |
| `selection.parquet` (SELECTION_TABLE) | one row per training sample: final side, thresholds, last p_i(y), updates |
| `selection_history.json` (SELECTION_HISTORY) | the per-epoch selection statistics |
| `eval_metrics.json` (EVAL_METRICS) | Eq. 9-12 metrics and per-class scores on the evaluation split |
| `confusion_matrix.png` (CONFUSION_MATRIX) | the evaluation confusion matrix |
| `eval_predictions.parquet` (EVAL_PREDICTIONS) | one row per evaluation face: label, prediction, probabilities |
| `class_distribution.png`, `clean_ratio.png`, `selection_grid.png` (REPORT_FILES) | the training figures |
| `README.md` (MODEL_CARD) | the model card (`sspa_hf.run.modelcard`) |
| `bad_images.tsv` (BAD_IMAGES_REPORT), `bad_images_evaluation.tsv` | images that did not decode |
| `crossfit/` | selection_mode cleanlab: the `fold-K/` probe trainings and `crossfit_probs.npz` (CROSSFIT_PROBS) |
| `runs/` | TensorBoard event files (`report_to tensorboard`) |

This module imports only the standard library at import time (numpy, pandas, pyarrow and the plots are imported
by the functions that need them), so that any module may import the names without a cycle or a heavy import.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..labels import EXPRESSIONS

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import torch

logger = logging.getLogger(__name__)

RECIPE = "recipe.yaml"  # the resolved arguments, loadable again as a recipe (commands/train_parser.write_recipe)
DATA_ARGS = "data_args.json"  # the data arguments a run trained on (sspa-export-selection rebuilds the set)
RUN_STATUS = "run_status.json"
LOCK = ".sspa-train.lock"
STAGING = ".saving"  # not matched by transformers' `^checkpoint-(\d+)$`, so never taken for a checkpoint
SELECTION_STATE = "selection_state.safetensors"
VERDICT_STATE = "verdict_state.safetensors"
CONSISTENCY_STATE = "consistency_state.safetensors"
TRAINER_STATE = "trainer_state.json"
SELECTION_TABLE = "selection.parquet"
SELECTION_HISTORY = "selection_history.json"
EVAL_METRICS = "eval_metrics.json"
EVAL_PREDICTIONS = "eval_predictions.parquet"  # per-face predictions: paired intervals between runs (intervals.py)
CONFUSION_MATRIX = "confusion_matrix.png"
MODEL_CARD = "README.md"
BAD_IMAGES_REPORT = "bad_images.tsv"  # also the name in a prepared folder (sspa-prepare --skip_bad_images)
CROSSFIT_PROBS = "crossfit_probs.npz"
#: Figures `write_training_report` writes.
REPORT_FILES: tuple[str, ...] = ("class_distribution.png", "clean_ratio.png", "selection_grid.png")


class SelectionState(Protocol):
    """What `write_selection` reads of a `selection.SampleSelector` (that module imports this one, not back)."""

    labels: torch.Tensor
    is_target: torch.Tensor
    clean: torch.Tensor
    tau: torch.Tensor
    last_py: torch.Tensor
    updates: torch.Tensor
    changed_epoch: torch.Tensor
    reference_labels: torch.Tensor | None
    history: list[dict[str, float]]

    def __len__(self) -> int: ...


def write_selection(
    output_dir: str | Path, selector: SelectionState, train_dataset: Any, extra: dict[str, np.ndarray] | None = None
) -> None:
    """selection.parquet (one row per training sample, plus `extra` columns) and selection_history.json."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..data.columns import read_column

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    columns = {
        "sample_index": np.arange(len(selector)),
        "source": read_column(train_dataset, "source"),
        "id": read_column(train_dataset, "id") if "id" in train_dataset.column_names else [""] * len(selector),
        "label": selector.labels.numpy(),
        "is_target": selector.is_target.numpy(),
        "clean": selector.clean.numpy(),
        "tau": selector.tau.numpy().tolist(),
        "last_py": selector.last_py.numpy().tolist(),
        "updates": selector.updates.numpy(),
        "changed_epoch": selector.changed_epoch.numpy(),
    }
    columns.update(extra or {})
    if selector.reference_labels is not None:
        columns["reference_label"] = selector.reference_labels.numpy()
    pq.write_table(pa.table(columns), output_dir / SELECTION_TABLE)
    (output_dir / SELECTION_HISTORY).write_text(json.dumps(selector.history, indent=1))


def read_selection_table(path: str | Path) -> pd.DataFrame:
    """A `selection.parquet` (or the one in a run folder) as a DataFrame."""
    import pandas as pd

    path = Path(path)
    return pd.read_parquet(path / SELECTION_TABLE if path.is_dir() else path)


def read_selection_history(output_dir: str | Path) -> list[dict[str, Any]]:
    """Per-epoch selection statistics: selection_history.json, else the selection entries of trainer_state.json.

    (The trainer logs every epoch's statistics, so `trainer_state.json`'s log_history holds them too; there the
    "epoch" key is the Trainer's fractional epoch at logging time.)
    """
    folder = Path(output_dir)
    history_path = folder / SELECTION_HISTORY
    if history_path.is_file():
        return list(json.loads(history_path.read_text()))
    state_path = folder / TRAINER_STATE
    if state_path.is_file():
        log = json.loads(state_path.read_text()).get("log_history", [])
        return [row for row in log if any(key.startswith("selection/") for key in row)]
    return []


def selection_summary(table: pd.DataFrame, class_names: Sequence[str] = EXPRESSIONS) -> dict[str, Any]:
    """Per-class auxiliary and selected counts, and the selection quality where reference labels are known."""
    from ..evaluation.metrics import selection_counts, selection_quality

    counts = selection_counts(table["label"], table["is_target"], table["clean"], len(class_names))
    per_class = {
        name: {"auxiliary": int(counts["auxiliary"][c]), "selected": int(counts["selected"][c])}
        for c, name in enumerate(class_names)
    }
    summary: dict[str, Any] = {"per_class": per_class}
    aux = table[~table["is_target"].astype(bool)]
    if "reference_label" in aux.columns:
        quality = selection_quality(aux["label"], aux["reference_label"], aux["clean"])
        if quality:
            summary["quality"] = quality
    return summary


def read_eval_metrics(output_dir: str | Path) -> dict[str, Any]:
    """The metrics of eval_metrics.json in a run folder (empty when there is none)."""
    path = Path(output_dir) / EVAL_METRICS
    return json.loads(path.read_text()) if path.is_file() else {}


def write_evaluation_report(
    output_dir: str | Path,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    class_names: Sequence[str],
    title: str,
    **record: Any,
) -> dict[str, Any]:
    """Accuracy, macro P/R/F1, per-class scores and the confusion matrix of predictions (Eq. 9-12).

    Written as eval_metrics.json (with `record`, e.g. model, dataset, split, appended) and confusion_matrix.png;
    returns what was written.
    """
    from ..evaluation.metrics import evaluate_predictions
    from .plots import plot_confusion_matrix

    names = list(class_names)
    metrics = {**evaluate_predictions(y_true, y_pred, names), **record}
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / EVAL_METRICS).write_text(json.dumps(metrics, indent=2))
    plot_confusion_matrix(metrics["confusion_matrix"], names, output_dir / CONFUSION_MATRIX, title=title)
    return metrics


def write_predictions(
    output_dir: str | Path, y_true: np.ndarray, logits: np.ndarray, class_names: Sequence[str]
) -> Path:
    """eval_predictions.parquet: per evaluation face (in evaluation-set order) its label, argmax and probabilities."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    logits = np.asarray(logits, dtype=np.float64)
    probabilities = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probabilities /= probabilities.sum(axis=-1, keepdims=True)
    columns: dict[str, Any] = {
        "index": np.arange(len(logits)),
        "label": np.asarray(y_true, dtype=np.int64),
        "prediction": logits.argmax(axis=-1),
    }
    columns.update({f"prob/{name}": probabilities[:, c].astype(np.float32) for c, name in enumerate(class_names)})
    path = Path(output_dir) / EVAL_PREDICTIONS
    pq.write_table(pa.table(columns), path)
    return path


def read_predictions(output_dir: str | Path) -> pd.DataFrame | None:
    """A run's eval_predictions.parquet (None when the run wrote none)."""
    import pandas as pd

    path = Path(output_dir) / EVAL_PREDICTIONS
    return pd.read_parquet(path) if path.is_file() else None


def write_training_report(output_dir: str | Path, train_dataset: Any = None) -> list[Path]:
    """Write class_distribution.png, clean_ratio.png and selection_grid.png into a training output folder.

    Reads ``selection.parquet`` and ``selection_history.json`` there; a missing file, a run without auxiliary
    data, or no `train_dataset` (faces for the grid) skips the figures concerned with a log line.
    """
    from .plots import history_series, plot_class_distribution, plot_clean_ratio_history, plot_selection_grid

    output_dir = Path(output_dir)
    table_path = output_dir / SELECTION_TABLE
    if not table_path.is_file():
        logger.info("training report skipped: %s not found", table_path)
        return []
    table = read_selection_table(table_path)
    if not (~table["is_target"].astype(bool)).any():
        logger.info("training report skipped: the run has no auxiliary data")
        return []
    written = [plot_class_distribution(table, output_dir / REPORT_FILES[0])]
    history = read_selection_history(output_dir)
    if history_series(history, "selection/aux_clean_ratio") is not None:
        written.append(plot_clean_ratio_history(history, output_dir / REPORT_FILES[1]))
    else:
        logger.info("clean_ratio.png skipped: no auxiliary clean ratio in %s or trainer_state.json", SELECTION_HISTORY)
    if train_dataset is not None and "image" in getattr(train_dataset, "column_names", ()):
        if len(train_dataset) != len(table):
            logger.warning(
                "selection_grid.png skipped: the training set has %d rows, %s has %d",
                len(train_dataset),
                table_path.name,
                len(table),
            )
        else:
            written.append(plot_selection_grid(train_dataset, table, output_dir / REPORT_FILES[2]))
    else:
        logger.info("selection_grid.png skipped: no training images given")
    for path in written:
        logger.info("wrote %s", path)
    return written
