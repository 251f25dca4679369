"""The cleanlab anchor: confident learning's label issues in the auxiliary set, as a frozen partition.

`cleanlab_issues` runs cleanlab's own `find_label_issues` (its defaults) on out-of-sample probabilities of the
auxiliary rows; `with_cleaning` turns the verdict into the columns `SSPATrainer` trains from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from datasets import Dataset, Value

from .errors import UserInputError


@dataclass
class Cleaning:
    """Per training row: its side and how sure the rule is."""

    clean: np.ndarray  # bool: enters the loss (target rows always)
    score: np.ndarray  # margin of the given label: p(y) - max_j p(j) (0 when y is the most probable class)


def cleanlab_issues(probs: np.ndarray, labels: np.ndarray, is_target: np.ndarray) -> Cleaning:
    """cleanlab's `find_label_issues` on the auxiliary rows (its defaults); target rows are kept as they are."""
    try:
        from cleanlab.filter import find_label_issues
    except ImportError as exc:
        raise UserInputError("selection_mode 'cleanlab' needs cleanlab: pip install 'sspa-hf[cleanlab]'") from exc
    aux = np.flatnonzero(~np.asarray(is_target, dtype=bool))
    issues = np.zeros(len(labels), dtype=bool)
    if len(aux):
        # n_jobs=1: cleanlab's default forks a process pool, which can deadlock in a process that already runs
        # torch's threads (seen here, in the test suite); one process is fast enough for any auxiliary set.
        issues[aux] = find_label_issues(labels=labels[aux], pred_probs=probs[aux], n_jobs=1)
    score = probs[np.arange(len(labels)), labels] - probs.max(axis=1)
    return Cleaning(clean=~issues, score=score)


def with_cleaning(data: Dataset, cleaning: Cleaning) -> Dataset:
    """The joint set with the verdict as columns: `clean` (the frozen partition) and `score`."""
    data = data.add_column("clean", cleaning.clean.astype(bool).tolist(), feature=Value("bool"))
    return data.add_column("score", cleaning.score.astype(np.float32).tolist(), feature=Value("float32"))
