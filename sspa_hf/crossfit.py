"""Out-of-sample class probabilities for every training sample, by K-fold cross-validation (the cleanlab anchor).

A model never judges a face it has trained on: the rows are split into K folds (stratified by label), a fresh
model is trained K times without one fold, and each fold is predicted by the model that did not see it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset, Value
from transformers import Trainer

from .data.columns import read_column
from .errors import UserInputError
from .run_folder import CROSSFIT_PROBS

logger = logging.getLogger(__name__)


def assign_folds(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold id (0..K-1) of every row; seeded, and round-robin within each class so fold sizes differ by <= 1."""
    if folds < 2:
        raise UserInputError(f"crossfit: needs at least 2 folds, got {folds}")
    labels = np.asarray(labels)
    fold = np.zeros(len(labels), dtype=np.int64)
    rng = np.random.default_rng([seed, folds])
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        fold[rng.permutation(rows)] = np.arange(len(rows)) % folds
    return fold


def reindexed(data: Dataset, rows: np.ndarray) -> Dataset:
    """The rows as a training set of their own: `sample_index` renumbered 0..n-1 (SSPATrainer requires it)."""
    subset = data.select(rows).remove_columns("sample_index")
    return subset.add_column("sample_index", np.arange(len(rows), dtype=np.int64), feature=Value("int64"))


def crossfit_probabilities(
    data: Dataset, make_trainer: Callable[[Dataset, Path], Trainer], folds: int, seed: int, output_dir: Path
) -> np.ndarray:
    """(N, C) out-of-sample probabilities for the joint training set `data`; cached in `output_dir/CROSSFIT_PROBS`.

    `make_trainer(train_subset, fold_dir)` returns a ready trainer with a fresh model. A cache written for the
    same folds is reused, so an interrupted run resumes after the probes.
    """
    fold = assign_folds(np.asarray(read_column(data, "label")), folds, seed)
    cache = output_dir / CROSSFIT_PROBS
    if cache.is_file():
        stored = np.load(cache)
        if np.array_equal(stored["fold"], fold):
            logger.info("Cross-validated probabilities reused from %s", cache)
            return stored["probs"]
        logger.warning("%s was written for other folds or data; cross-validating again", cache)
    probs, is_main = None, True
    for k in range(folds):
        train_rows, predict_rows = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        logger.info(
            "Cross-validation %d/%d: training on %d rows, predicting %d",
            k + 1,
            folds,
            len(train_rows),
            len(predict_rows),
        )
        trainer = make_trainer(reindexed(data, train_rows), output_dir / f"fold-{k}")
        trainer.train()
        is_main = trainer.args.should_save
        logits = torch.as_tensor(np.asarray(trainer.predict(reindexed(data, predict_rows)).predictions))
        fold_probs = torch.softmax(logits.double(), dim=-1).numpy()
        if probs is None:
            probs = np.zeros((len(data), fold_probs.shape[1]))
        probs[predict_rows] = fold_probs
    if is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        np.savez(cache, probs=probs, fold=fold)
    return probs
