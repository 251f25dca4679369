"""The joint builder: columns, numbering, fraction sampling (uniform / stratified), determinism."""

from __future__ import annotations

import numpy as np
import pytest
from datasets import Value
from helpers import tiny_split

from sspa_hf.data import JOINT_COLUMNS, build_joint, sample_fraction
from sspa_hf.errors import UserInputError
from sspa_hf.labels import class_label_feature

# a long-tailed auxiliary set: 40 happiness, 20 neutral, 10 sadness, 5 of the others (90 rows in all)
AUX_LABELS = [3] * 40 + [4] * 20 + [5] * 10 + [0] * 5 + [1] * 5 + [2] * 5 + [6] * 5


@pytest.fixture(scope="module")
def target():
    return tiny_split([i % 7 for i in range(14)], "target")


@pytest.fixture(scope="module")
def auxiliary():
    rng = np.random.default_rng(0)
    return tiny_split(list(rng.permutation(AUX_LABELS)), "aux", first_seed=100)


def test_columns_numbering_and_order(target, auxiliary):
    joint = build_joint(target, auxiliary, fraction=0.5, seed=0)
    assert joint.column_names == list(JOINT_COLUMNS)
    assert joint.features["label"] == class_label_feature()
    assert joint.features["is_target"] == Value("bool") and joint.features["sample_index"] == Value("int64")
    assert list(joint["sample_index"]) == list(range(14 + 45))
    assert list(joint["is_target"]) == [True] * 14 + [False] * 45
    assert list(joint["id"][:14]) == list(target["id"])
    assert set(joint["source"][14:]) == {"aux"}
    # auxiliary rows keep their own ids and labels, in their original order
    aux_ids = list(joint["id"][14:])
    positions = [int(i.split("_")[1]) for i in aux_ids]
    assert positions == sorted(positions)
    assert list(joint["label"][14:]) == [auxiliary["label"][p] for p in positions]
    assert np.asarray(joint[0]["image"]).shape == (8, 8, 3)


def test_fraction_is_seeded_deterministic_and_nested(target, auxiliary):
    def aux_ids(fraction, seed, stratified=False):
        joint = build_joint(target, auxiliary, fraction=fraction, seed=seed, stratified=stratified)
        return list(joint["id"][len(target) :])

    assert aux_ids(0.3, 7) == aux_ids(0.3, 7)
    assert aux_ids(0.3, 7) != aux_ids(0.3, 8)
    assert len(aux_ids(0.3, 7)) == 27
    assert set(aux_ids(0.2, 7)) < set(aux_ids(0.5, 7)) < set(aux_ids(1.0, 7))
    assert len(aux_ids(1.0, 7)) == 90
    assert aux_ids(0.4, 1, True) == aux_ids(0.4, 1, True)


def test_stratified_keeps_class_proportions(auxiliary):
    labels = np.asarray(auxiliary["label"])
    rows = sample_fraction(labels, 0.2, seed=3, stratified=True)
    assert len(rows) == 18
    assert np.bincount(labels[rows], minlength=7).tolist() == [1, 1, 1, 8, 4, 2, 1]
    # uniform sampling of the same size usually does not hit every class exactly
    uniform = [np.bincount(labels[sample_fraction(labels, 0.2, seed=s)], minlength=7).tolist() for s in range(10)]
    assert any(counts != [1, 1, 1, 8, 4, 2, 1] for counts in uniform)


def test_target_only_and_bad_fraction(target, auxiliary):
    joint = build_joint(target, None)
    assert len(joint) == 14 and all(joint["is_target"]) and joint.column_names == list(JOINT_COLUMNS)
    for fraction in (0.0, -0.1, 1.5):
        with pytest.raises(UserInputError, match=r"fraction .* is outside \(0, 1\]"):
            build_joint(target, auxiliary, fraction=fraction)
    with pytest.raises(UserInputError, match=r"the auxiliary split lacks column\(s\) source"):
        build_joint(target, auxiliary.remove_columns("source"), fraction=0.5)
