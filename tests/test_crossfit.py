"""sspa_hf/modes/crossfit.py: K-fold out-of-sample probabilities (fold bookkeeping, the probes' cache)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from datasets import Dataset
from helpers import label_table

from sspa_hf.modes.crossfit import assign_folds, crossfit_probabilities
from sspa_hf.run.folder import CROSSFIT_PROBS


class _FakeTrainer:
    """Predicts class `fold` for every row, and fails on a row it trained on."""

    def __init__(self, train: Dataset, output_dir: Path, log: list) -> None:
        self.fold = int(output_dir.name.removeprefix("fold-"))
        self.trained = set(train["id"])
        assert train["sample_index"] == list(range(len(train)))  # renumbered for SSPATrainer
        assert not [c for c in train.column_names if c.startswith("_crossfit")]
        # a view of the rows, not a copy: add_column on a selection would first copy its images (flatten_indices)
        assert train._indices is not None
        self.args = SimpleNamespace(should_save=True)
        log.append(self)

    def train(self) -> None:
        pass

    def predict(self, data: Dataset) -> SimpleNamespace:
        assert not self.trained & set(data["id"]), "a model predicted a row it trained on"
        assert data["sample_index"] == list(range(len(data)))  # renumbered for SSPATrainer
        assert data._indices is not None
        logits = np.full((len(data), 7), -30.0)
        logits[:, self.fold] = 30.0
        return SimpleNamespace(predictions=logits)


def test_folds_are_seeded_and_stratified():
    labels = np.array([0] * 10 + [1] * 7 + [2] * 5)
    fold = assign_folds(labels, 3, seed=0)
    assert set(fold) == {0, 1, 2}
    for c in range(3):  # round-robin within each class: fold sizes differ by at most one
        sizes = np.bincount(fold[labels == c], minlength=3)
        assert sizes.max() - sizes.min() <= 1
    assert np.array_equal(assign_folds(labels, 3, seed=0), fold)
    assert not np.array_equal(assign_folds(labels, 3, seed=1), fold)


def test_every_row_is_predicted_by_the_model_that_left_its_fold_out(tmp_path):
    data = label_table(35)
    log: list = []
    probs = crossfit_probabilities(data, lambda d, out: _FakeTrainer(d, out, log), 3, seed=1, output_dir=tmp_path)
    fold = assign_folds(np.asarray(data["label"]), 3, seed=1)
    assert len(log) == 3 and probs.shape == (35, 7)
    np.testing.assert_array_equal(probs.argmax(axis=1), fold)
    np.testing.assert_allclose(probs.max(axis=1), 1.0)
    # The cache answers a second call for the same folds without training anything.
    again = crossfit_probabilities(data, lambda *a: pytest.fail("trained again"), 3, 1, tmp_path)
    np.testing.assert_array_equal(again, probs)
    assert (tmp_path / CROSSFIT_PROBS).is_file()
