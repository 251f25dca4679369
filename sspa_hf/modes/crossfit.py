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

from ..data.columns import read_column
from ..errors import UserInputError
from ..run.folder import CROSSFIT_PROBS

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


def with_fold_numbering(data: Dataset, fold: np.ndarray) -> Dataset:
    """`data` plus, per fold k, `_crossfit_train_k` (the row's number among the rows not in fold k, -1 in it) and
    `_crossfit_own` (its number within its own fold): each probe's rows get their sample_index 0..n-1 by a rename.

    Adding the columns to the whole set before selecting keeps the images where they are: `add_column` on a
    selection would first copy every selected image into memory (`flatten_indices`), 2 x N images in all.
    """
    folds = int(fold.max()) + 1
    own = np.zeros(len(fold), dtype=np.int64)
    for k in range(folds):
        rows = fold == k
        own[rows] = np.arange(int(rows.sum()))
        train = np.full(len(fold), -1, dtype=np.int64)
        train[~rows] = np.arange(int((~rows).sum()))
        data = data.add_column(f"_crossfit_train_{k}", train, feature=Value("int64"))
    return data.add_column("_crossfit_own", own, feature=Value("int64"))


def reindexed(data: Dataset, rows: np.ndarray, numbering: str) -> Dataset:
    """The rows as a training set of their own: `sample_index` is the `numbering` column (0..n-1 over `rows`)."""
    helpers = [c for c in data.column_names if c.startswith("_crossfit_") and c != numbering]
    subset = data.select(rows).remove_columns(["sample_index", *helpers])
    return subset.rename_column(numbering, "sample_index")


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
    numbered = with_fold_numbering(data, fold)
    for k in range(folds):
        train_rows, predict_rows = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        logger.info(
            "Cross-validation %d/%d: training on %d rows, predicting %d",
            k + 1,
            folds,
            len(train_rows),
            len(predict_rows),
        )
        trainer = make_trainer(reindexed(numbered, train_rows, f"_crossfit_train_{k}"), output_dir / f"fold-{k}")
        trainer.train()
        is_main = trainer.args.should_save
        held_out = reindexed(numbered, predict_rows, "_crossfit_own")
        logits = torch.as_tensor(np.asarray(trainer.predict(held_out).predictions))
        fold_probs = torch.softmax(logits.double(), dim=-1).numpy()
        if probs is None:
            probs = np.zeros((len(data), fold_probs.shape[1]))
        probs[predict_rows] = fold_probs
    if is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        np.savez(cache, probs=probs, fold=fold)
    return probs
