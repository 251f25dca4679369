"""Sample Selection Module: Eq. 3-4 on hand-computed numbers, epoch semantics, D_T fixed, freezing, state I/O."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sspa_hf.errors import UserInputError
from sspa_hf.training.selection import SampleSelector


def _selector(**kwargs) -> SampleSelector:
    defaults = {
        "labels": np.array([0, 1, 2, 1]),
        "is_target": np.array([False, False, False, True]),
        "sources": ["aux", "aux", "aux", "target"],
        "num_experts": 2,
        "num_classes": 3,
        "selection_epochs": 2,
        "momentum": 0.9,
    }
    defaults.update(kwargs)
    return SampleSelector(**defaults)


# Rows: samples 0, 1, 3 (labels 0, 1, 1); experts 0 and 1.
PROBS = torch.tensor(
    [
        [[0.7, 0.2, 0.1], [0.5, 0.3, 0.2]],  # label 0: p(y) = (0.7, 0.5)
        [[0.6, 0.3, 0.1], [0.2, 0.7, 0.1]],  # label 1: p(y) = (0.3, 0.7)
        [[0.8, 0.1, 0.1], [0.1, 0.8, 0.1]],  # label 1 (target): p(y) = (0.1, 0.8)
    ]
)


def test_eq3_and_eq4_on_hand_computed_numbers():
    sel = _selector()
    torch.testing.assert_close(sel.tau, torch.full((4, 2), 1 / 3))
    sel.update(torch.tensor([0, 1, 3]), PROBS, torch.tensor([0, 1, 1]))
    # Eq. 3: tau = 0.9 * 1/3 + 0.1 * max_c p_i
    expected_tau = torch.tensor([[0.37, 0.35], [0.36, 0.37], [1 / 3, 1 / 3], [0.38, 0.38]])
    torch.testing.assert_close(sel.tau, expected_tau)
    # Eq. 4: clean iff p_i(y) > tau_i for every expert: 0.7>0.37 and 0.5>0.35; 0.3<0.36; 0.1<0.38
    assert sel.pending.tolist() == [True, False, True, False]
    torch.testing.assert_close(sel.last_py[1], torch.tensor([0.3, 0.7]))
    # The loss of this (first) epoch still uses the warm-up partition: everything clean.
    assert sel.loss_mask(torch.tensor([0, 1, 2, 3])).tolist() == [True, True, True, True]


def test_next_epoch_uses_the_partition_decided_in_this_one_and_target_stays_clean():
    sel = _selector()
    sel.update(torch.tensor([0, 1, 3]), PROBS, torch.tensor([0, 1, 1]))
    closed = sel.advance_to(1)
    assert len(closed) == 1 and sel.epoch == 1
    assert sel.loss_mask(torch.arange(4)).tolist() == [True, False, True, True]  # target 3 fixed clean
    assert sel.changed_epoch.tolist() == [-1, 0, -1, -1]
    assert closed[0]["selection/aux_clean_ratio"] == pytest.approx(2 / 3)
    assert closed[0]["selection/aux_clean_ratio/class_1"] == 0.0
    assert closed[0]["selection/target_clean_ratio"] == 1.0
    assert closed[0]["selection/mean_tau/expert_0"] == pytest.approx(float(sel.tau[:, 0].mean()))
    assert sel.advance_to(1) == []  # idempotent


def test_without_fixed_target_the_target_can_be_noisy():
    sel = _selector(fix_target=False)
    sel.update(torch.tensor([0, 1, 3]), PROBS, torch.tensor([0, 1, 1]))
    sel.advance_to(1)
    assert sel.loss_mask(torch.arange(4)).tolist() == [True, False, True, False]


def test_each_sample_updates_once_per_epoch_even_when_repeated():
    sel = _selector()
    sel.update(torch.tensor([0, 0, 1]), PROBS[[0, 1, 1]], torch.tensor([0, 0, 1]))
    sel.update(torch.tensor([0]), PROBS[[2]], torch.tensor([0]))  # a padded repeat later in the epoch
    torch.testing.assert_close(sel.tau[0], torch.tensor([0.37, 0.35]))
    assert sel.updates.tolist() == [1, 1, 0, 0]
    sel.advance_to(1)
    sel.update(torch.tensor([0]), PROBS[[0]], torch.tensor([0]))
    assert sel.updates.tolist() == [2, 1, 0, 0]


def test_partition_freezes_after_the_selection_epochs():
    sel = _selector(selection_epochs=1)
    sel.update(torch.tensor([0, 1, 3]), PROBS, torch.tensor([0, 1, 1]))
    sel.advance_to(1)
    assert not sel.selecting
    frozen_tau, frozen_clean = sel.tau.clone(), sel.clean.clone()
    sel.update(torch.tensor([1]), torch.tensor([[[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]]), torch.tensor([1]))
    sel.advance_to(3)
    torch.testing.assert_close(sel.tau, frozen_tau)
    assert torch.equal(sel.clean, frozen_clean) and len(sel.history) == 3


def test_disabled_selection_keeps_everything_clean():
    sel = _selector(selection_epochs=0)  # a mode that never selects
    sel.update(torch.tensor([0, 1, 3]), PROBS, torch.tensor([0, 1, 1]))
    sel.advance_to(2)
    assert sel.clean.all() and sel.updates.sum() == 0


def test_quality_against_reference_labels():
    # aux samples 0,1,2: consistent are 0 and 2 (label == reference); selection keeps 0 and 1.
    sel = _selector(reference_labels=np.array([0, 2, 2, 1]))
    sel.clean = torch.tensor([True, True, False, True])
    quality = sel.quality()
    assert quality["selection/precision"] == pytest.approx(0.5)
    assert quality["selection/recall"] == pytest.approx(0.5)
    assert quality["selection/f1"] == pytest.approx(0.5)


def test_state_round_trip_and_size_mismatch(tmp_path):
    sel = _selector()
    sel.update(torch.tensor([0, 1, 3]), PROBS, torch.tensor([0, 1, 1]))
    sel.advance_to(1)
    sel.update(torch.tensor([2]), PROBS[[0]], torch.tensor([2]))
    sel.created += torch.tensor([1, 0, 2])
    sel.save(tmp_path)
    other = _selector()
    other.load(tmp_path)
    for name, value in sel.state_dict().items():
        assert torch.equal(getattr(other, name), value), name
    assert other.epoch == 1 and other.history == sel.history
    bigger = _selector(labels=np.zeros(5, int), is_target=np.zeros(5, bool), sources=["a"] * 5)
    with pytest.raises(UserInputError, match="4 samples"):
        bigger.load(tmp_path)
    with pytest.raises(UserInputError, match=r"selection_state\.safetensors"):
        other.load(tmp_path / "nowhere")


def test_a_sample_not_seen_in_a_selection_epoch_keeps_its_side_and_is_counted(caplog):
    sel = _selector()
    sel.update(torch.tensor([0, 1, 3]), PROBS, torch.tensor([0, 1, 1]))
    sel.advance_to(1)
    assert sel.clean.tolist() == [True, False, True, True]
    tau_before = sel.tau.clone()
    with caplog.at_level("WARNING", logger="sspa_hf.training.selection"):
        # Epoch 1 sees sample 0 only (say the others fell in a dropped last batch): it turns noisy.
        sel.update(torch.tensor([0]), torch.tensor([[[0.1, 0.8, 0.1], [0.1, 0.8, 0.1]]]), torch.tensor([0]))
        (stats,) = sel.advance_to(2)
    assert sel.clean.tolist() == [False, False, True, True]  # samples 1, 2, 3 keep their side of epoch 0
    torch.testing.assert_close(sel.tau[1:], tau_before[1:])
    assert stats["selection/unseen"] == 3.0
    assert "did not see 3 of 4 samples" in caplog.text
    assert "selection/unseen" not in sel.advance_to(3)[0]  # frozen partition: nothing to see
