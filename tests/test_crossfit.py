"""Selection beyond the paper: cross-fitted out-of-sample probabilities, the cleaning rules, and the sspa-train mode."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest
from datasets import ClassLabel, Dataset, Features, Value

from sspa_hf.cleaning import class_thresholds, cleanlab_issues, target_calibrated, with_cleaning
from sspa_hf.commands.train import main
from sspa_hf.crossfit import PROBS_FILE, assign_folds, crossfit_probabilities
from sspa_hf.labels import EXPRESSIONS

from test_train_command import TINY_FLAGS


def _table(n_target: int, n_aux: int) -> Dataset:
    n = n_target + n_aux
    labels = np.arange(n) % 7
    features = Features(
        {
            "id": Value("string"),
            "label": ClassLabel(names=list(EXPRESSIONS)),
            "is_target": Value("bool"),
            "sample_index": Value("int64"),
        }
    )
    return Dataset.from_dict(
        {
            "id": [f"row{i}" for i in range(n)],
            "label": labels.tolist(),
            "is_target": [i < n_target for i in range(n)],
            "sample_index": list(range(n)),
        },
        features=features,
    )


class _FakeTrainer:
    """Remembers the ids it trained on; predicts class `fold` for every row, and fails on a row it trained on."""

    def __init__(self, train: Dataset, output_dir: Path, log: list) -> None:
        self.fold = int(output_dir.name.removeprefix("fold-"))
        self.trained = set(train["id"])
        self.args = SimpleNamespace(should_save=True)
        log.append(self)

    def train(self) -> None:
        pass

    def predict(self, data: Dataset) -> SimpleNamespace:
        assert not self.trained & set(data["id"]), "a model predicted a row it trained on"
        assert data["sample_index"] == list(range(len(data)))  # renumbered for SSPATrainer
        logits = np.full((len(data), 7), -30.0)
        logits[:, self.fold] = 30.0
        return SimpleNamespace(predictions=logits)


def test_folds_are_stratified_and_cover_only_what_is_trained_on():
    labels = np.array([0] * 10 + [1] * 7 + [2] * 5)
    is_target = np.arange(22) < 15
    fold = assign_folds(is_target, labels, 2, "target", seed=0)
    assert (fold[~is_target] == -1).all() and set(fold[is_target]) == {0, 1}
    for c in (0, 1):  # round-robin within each class: fold sizes differ by at most one
        sizes = np.bincount(fold[is_target & (labels == c)], minlength=2)
        assert abs(int(sizes[0]) - int(sizes[1])) <= 1
    everything = assign_folds(is_target, labels, 3, "all", seed=0)
    assert set(everything) == {0, 1, 2}
    assert np.array_equal(assign_folds(is_target, labels, 3, "all", seed=0), everything)  # seeded


@pytest.mark.parametrize("fit_on", ["target", "all"])
def test_every_row_is_predicted_by_models_that_never_saw_it(tmp_path, fit_on):
    data = _table(21, 14)
    log: list = []
    probs = crossfit_probabilities(
        data, lambda d, out: _FakeTrainer(d, out, log), 3, fit_on, seed=1, output_dir=tmp_path
    )
    fold = assign_folds(np.asarray(data["is_target"]), np.asarray(data["label"]), 3, fit_on, seed=1)
    assert len(log) == 3 and probs.shape == (35, 7)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    for row in range(35):
        if fold[row] >= 0:  # predicted by the one model that left its fold out
            assert probs[row].argmax() == fold[row] and probs[row].max() == pytest.approx(1.0)
        else:  # never trained on: the mean of every fold model
            np.testing.assert_allclose(probs[row, :3], 1 / 3, atol=1e-9)
    # The cache answers a second call for the same folds without training anything.
    again = crossfit_probabilities(data, lambda *a: pytest.fail("retrained"), 3, fit_on, 1, tmp_path)
    np.testing.assert_array_equal(again, probs)
    assert (tmp_path / PROBS_FILE).is_file()


def test_target_calibrated_rule_keeps_relabels_and_flags():
    # Class 0 is easy (target faces of class 0 get p(0) = 0.8); class 1 is hard (its target faces get p(1) = 0.2).
    probs = np.array(
        [
            [0.80, 0.10, 0.10],  # target, label 0
            [0.60, 0.20, 0.20],  # target, label 1 (the model barely knows class 1)
            [0.55, 0.25, 0.20],  # aux labelled 1: p(1) = 0.25 beats t_1 = 0.2 -> scaled 1.25 > 0.55 / 0.8: kept
            [0.90, 0.05, 0.05],  # aux labelled 1: 0.05 / 0.2 < 0.9 / 0.8 -> class 0 wins and clears t_0: relabel
            [0.40, 0.05, 0.55],  # aux labelled 1: class 2 wins (t_2 = 1, no target face) but 0.55 < 1: flagged
        ]
    )
    labels = np.array([0, 1, 1, 1, 1])
    is_target = np.array([True, True, False, False, False])
    np.testing.assert_allclose(class_thresholds(probs, labels, is_target), [0.8, 0.2, 1.0])
    result = target_calibrated(probs, labels, is_target, relabel=True)
    assert result.clean.tolist() == [True, True, True, True, False]
    assert result.label.tolist() == [0, 1, 1, 0, 1]
    assert result.relabelled.tolist() == [False, False, False, True, False]
    assert result.score[2] > 0 > result.score[3]
    no_relabel = target_calibrated(probs, labels, is_target, relabel=False)
    assert no_relabel.clean.tolist() == [True, True, True, False, False] and not no_relabel.relabelled.any()


def test_cleanlab_flags_auxiliary_labels_its_probabilities_contradict():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    probs = np.full((300, 3), 0.05)
    probs[np.arange(300), labels] = 0.9
    wrong = np.arange(200, 230)  # auxiliary rows whose given label the model firmly rejects
    labels = labels.copy()
    labels[wrong] = (labels[wrong] + 1) % 3
    is_target = np.arange(300) < 100
    result = cleanlab_issues(probs, labels, is_target)
    assert not result.clean[wrong].any()
    assert result.clean[is_target].all() and result.clean[100:200].all()


def test_cleaned_set_trains_with_the_new_labels_and_keeps_the_given_ones():
    data = _table(3, 4)
    cleaning = target_calibrated(np.eye(7)[[0, 1, 2, 3, 3, 5, 0]], np.asarray(data["label"]), np.asarray(data["is_target"]), True)
    cleaned = with_cleaning(data, cleaning)
    assert cleaned["given_label"] == data["label"]
    assert cleaned["label"] == [0, 1, 2, 3, 3, 5, 0]
    assert cleaned.features["label"] == data.features["label"]
    assert cleaned["clean"] == cleaning.clean.tolist()


@pytest.mark.slow
def test_crossfit_mode_trains_once_on_a_partition_frozen_from_the_start(tmp_path):
    out = tmp_path / "run"
    flags = [*TINY_FLAGS, "--output_dir", str(out), "--selection_mode", "crossfit", "--num_train_epochs", "3"]
    assert main(flags) == 0
    table = pq.read_table(out / "selection.parquet").to_pandas()
    assert (table.updates == 0).all()  # no Eq. 3-4 update: the partition came from the probes
    assert (table.changed_epoch == -1).all()
    assert table.clean[table.is_target].all()
    relabelled = table.target_standard_label != table.label
    assert not relabelled[table.is_target].any()
    assert (table.clean | ~relabelled).all()  # a relabelled face is trained on (clean)
    assert (out / "crossfit" / PROBS_FILE).is_file() and (out / "crossfit" / "fold-1").is_dir()
