"""The cleanlab anchor: confident learning's label issues in the auxiliary set, as a partition fixed before training.

`before_training` cross-validates plain trainings (`crossfit.crossfit_probabilities`) and runs cleanlab's own
`find_label_issues` (its defaults) on the out-of-sample probabilities of the auxiliary rows; training then keeps
what it keeps: the flagged faces leave the loss, or with `use_pairing` are mixed into clean partners (PAM) from
the first epoch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..data.columns import read_column
from ..errors import UserInputError
from .base import (
    PAIRING_KNOBS,
    USE_SELECTION,
    Batch,
    FrozenPartition,
    Knob,
    PlainTrainers,
    SelectionMode,
    VerdictColumn,
    refuse_without_selection,
)

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

logger = logging.getLogger(__name__)


@dataclass
class CleanlabVerdict:
    """cleanlab's verdict per training row: its side and how sure the rule is."""

    clean: np.ndarray  # bool: enters the loss (target rows always)
    score: np.ndarray  # margin of the given label: p(y) - max_j p(j) (0 when y is the most probable class)


class CleanlabMode(SelectionMode):
    name = "cleanlab"
    help = (
        "The anchor: cleanlab's find_label_issues on probabilities cross-validated over crossfit_folds folds, then "
        "training on what it keeps (with use_pairing, PAM mixes the flagged samples from the first epoch)."
    )
    card = (
        "**This model was trained in selection mode `cleanlab`:** the auxiliary samples were selected once, before "
        "training, by cleanlab's `find_label_issues` on cross-validated probabilities, not by Eq. 3-4."
    )
    knobs = (*PAIRING_KNOBS, USE_SELECTION, Knob("crossfit_folds"))
    verdict = (VerdictColumn("score"),)

    @classmethod
    def check(cls, args: TrainingArguments) -> None:
        refuse_without_selection(cls, args)

    @classmethod
    def before_training(cls, data: Dataset, *, args: TrainingArguments, plain_trainers: PlainTrainers) -> Dataset:
        """The joint set with cleanlab's verdict on the auxiliary rows as the frozen partition (`clean`, `score`):
        `plain_trainers` trains the probes (straight trainings with the run's model and schedule)."""
        from .crossfit import crossfit_probabilities

        probs = crossfit_probabilities(
            data,
            plain_trainers,
            args.crossfit_folds,
            args.seed,
            Path(args.output_dir) / "crossfit",
        )
        is_target = np.asarray(read_column(data, "is_target"), dtype=bool)
        verdict = cleanlab_issues(probs, np.asarray(read_column(data, "label")), is_target=is_target)
        logger.info(
            "cleanlab: %d of %d auxiliary samples kept",
            int((verdict.clean & ~is_target).sum()),
            int((~is_target).sum()),
        )
        return with_verdict(data, verdict)

    def __init__(self, trainer: Trainer) -> None:
        super().__init__(trainer)
        self.partition = FrozenPartition(self)
        data = trainer.train_dataset
        if "clean" not in data.column_names:
            raise ValueError("selection_mode 'cleanlab' needs the clean column (CleanlabMode.before_training)")
        self.selector.freeze(np.asarray(read_column(data, "clean")))

    def loss_weight(self, sample_index: torch.Tensor) -> torch.Tensor:
        return self.partition.weight(sample_index)

    def loss(self, model: torch.nn.Module, batch: Batch, weight: torch.Tensor) -> tuple[torch.Tensor, Any]:
        return self.partition.loss(model, batch)

    def verdict_columns(self) -> dict[str, np.ndarray]:
        return {"score": np.asarray(read_column(self.trainer.train_dataset, "score"))}


def cleanlab_issues(probs: np.ndarray, labels: np.ndarray, *, is_target: np.ndarray) -> CleanlabVerdict:
    """cleanlab's `find_label_issues` on the auxiliary rows (its defaults); target rows are kept as they are.

    `probs` is (N, C) out-of-sample probabilities, `labels` (N,) int, `is_target` (N,) bool.
    """
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
    return CleanlabVerdict(clean=~issues, score=score)


def with_verdict(data: Dataset, verdict: CleanlabVerdict) -> Dataset:
    """The joint set with the verdict as columns: `clean` (the frozen partition) and `score`."""
    from datasets import Value

    data = data.add_column("clean", verdict.clean.astype(bool).tolist(), feature=Value("bool"))
    return data.add_column("score", verdict.score.astype(np.float32).tolist(), feature=Value("float32"))
