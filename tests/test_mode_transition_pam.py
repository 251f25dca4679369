"""selection_mode transition_pam (sspa_hf/modes/transition_pam.py): transition, then PAM on what its verdict flags."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import TINY, augmented, joint_data, make_trainer, training_batch

from sspa_hf import SSPAConfig, SSPAForImageClassification
from sspa_hf.errors import UserInputError
from sspa_hf.model.modeling_sspa import expert_cross_entropy
from sspa_hf.run.folder import VERDICT_STATE
from sspa_hf.training.pairing import pair_and_mix


def _judging_everything_class_1(trainer, monkeypatch) -> np.ndarray:
    """Every face looks like class 1 and M is uniform (it says nothing): the verdict relabels all but label 1."""
    with torch.no_grad():
        trainer.model.standard_transition.zero_()
    p = np.full((len(trainer.train_dataset), 7), 0.01)
    p[:, 1] = 0.6
    monkeypatch.setattr(trainer, "predict", lambda data: SimpleNamespace(predictions=np.log(p[: len(data)])))
    labels = np.asarray(trainer.train_dataset["label"])
    return np.asarray(trainer.train_dataset["is_target"]) | (labels == 1)  # the expected clean side


def test_the_verdict_freezes_the_partition_at_epoch_t_s_and_not_before(tmp_path, monkeypatch):
    train_set, _ = joint_data(60, 60)
    trainer = make_trainer(
        tmp_path, train_set, k=1, selection_mode="transition_pam", selection_epochs=2, prior_weight=0.5
    )
    expected = _judging_everything_class_1(trainer, monkeypatch)
    mode = trainer.mode
    mode.begin_epoch(1)
    assert mode.verdict_epoch is None and bool(trainer.selector.clean.all())  # transition: nothing flagged yet
    rows = torch.arange(len(train_set))
    assert torch.equal(mode.loss_weight(rows), torch.ones(len(rows)))
    mode.begin_epoch(2)
    assert mode.verdict_epoch == 2
    np.testing.assert_array_equal(trainer.selector.clean.numpy(), expected)
    assert 0 < int((~trainer.selector.clean).sum()) < 60
    mode.begin_epoch(3)  # judged once: a later epoch keeps the epoch-2 verdict
    assert mode.verdict_epoch == 2
    # From T_S the model predicts with logits + w log pi (pi: the target faces' prior, counts + 1), w = 0.5
    target = np.asarray(train_set["label"])[np.asarray(train_set["is_target"])]
    log_prior = np.log((np.bincount(target, minlength=7) + 1) / (len(target) + 7))
    np.testing.assert_allclose(trainer.model.config.logit_adjustment, 0.5 * log_prior, rtol=1e-6)


def test_the_logit_adjustment_moves_predictions_only_and_travels_with_the_model(tmp_path):
    torch.manual_seed(0)
    config = SSPAConfig(backbone_config=TINY, num_experts=2, image_size=48, standard_transition=True)
    model = SSPAForImageClassification(config).eval()
    pixels = torch.randn(3, 3, 48, 48)
    plain = model(pixel_values=pixels)
    model.config.logit_adjustment = [0.0, 1.0, 0.0, 0.0, -2.0, 0.0, 0.5]
    adjusted = model(pixel_values=pixels)
    torch.testing.assert_close(adjusted.logits - plain.logits, torch.tensor(model.config.logit_adjustment).expand(3, 7))
    assert torch.equal(adjusted.expert_logits, plain.expert_logits)  # what the losses read
    model.save_pretrained(tmp_path)
    reloaded = SSPAForImageClassification.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(reloaded(pixel_values=pixels).logits, adjusted.logits)
    with pytest.raises(ValueError, match=r"logit_adjustment needs one number per class \(7\), got 2"):
        SSPAConfig(backbone_config=TINY, logit_adjustment=[0.0, 1.0])


def test_after_the_verdict_flagged_faces_are_mixed_and_kept_auxiliary_faces_go_through_m(tmp_path, monkeypatch):
    train_set, _ = joint_data(120, 120)
    trainer = make_trainer(tmp_path, train_set, k=1, selection_mode="transition_pam", selection_epochs=1)
    clean = torch.as_tensor(_judging_everything_class_1(trainer, monkeypatch))
    trainer.mode.begin_epoch(1)
    with torch.no_grad():
        trainer.model.standard_transition.normal_()
    rows = list(range(100, 140))  # 20 target rows, 20 auxiliary rows
    batch = training_batch(trainer, rows)
    assert not bool(clean[rows].all()) and bool(clean[rows[20:]].any())  # some flagged, some kept
    monkeypatch.setattr(trainer.mode.partition, "_pairing_rng", lambda: np.random.default_rng(7))
    model = trainer.model.train()
    torch.manual_seed(1)
    loss = trainer.compute_loss(model, dict(batch))
    paired = pair_and_mix(
        augmented(trainer, batch)["pixel_values"], batch["labels"], clean[rows], rng=np.random.default_rng(7)
    )
    torch.manual_seed(1)
    with torch.no_grad():
        out = model(pixel_values=paired.pixel_values)
    labels = paired.labels
    ce = expert_cross_entropy(out.expert_logits, labels)
    nll = -out.auxiliary_log_probs.gather(2, labels.view(-1, 1, 1)).squeeze(2).mean(1)
    through_m = clean[rows] & ~batch["is_target"]
    torch.testing.assert_close(loss.detach(), torch.where(through_m, nll, ce).mean(), rtol=1e-5, atol=1e-6)
    assert int(trainer.selector.created.sum()) == int((~clean[rows]).sum())  # one mixture per flagged face


def test_without_pairing_the_flagged_faces_leave_the_loss(tmp_path, monkeypatch):
    train_set, _ = joint_data(60, 60)
    trainer = make_trainer(
        tmp_path, train_set, k=1, selection_mode="transition_pam", selection_epochs=1, use_pairing=False
    )
    clean = _judging_everything_class_1(trainer, monkeypatch)
    trainer.mode.begin_epoch(1)
    rows = torch.arange(len(train_set))
    np.testing.assert_array_equal(trainer.mode.loss_weight(rows).numpy(), clean.astype(np.float32))


def test_by_default_the_logits_are_left_alone(tmp_path, monkeypatch):
    train_set, _ = joint_data(30, 30)
    trainer = make_trainer(tmp_path, train_set, k=1, selection_mode="transition_pam", selection_epochs=1)
    assert trainer.args.prior_weight == 0.0
    _judging_everything_class_1(trainer, monkeypatch)
    trainer.mode.begin_epoch(1)
    assert trainer.model.config.logit_adjustment is None


def test_a_schedule_without_epochs_after_t_s_is_refused(tmp_path):
    train_set, _ = joint_data(20, 20)
    with pytest.raises(ValueError, match=r"selection_epochs \(4\) must be smaller than num_train_epochs \(4\)"):
        make_trainer(tmp_path, train_set, k=1, selection_mode="transition_pam", selection_epochs=4)


@pytest.mark.slow
def test_training_resumes_after_t_s_with_the_verdict_it_froze(tmp_path, monkeypatch):
    train_set, _ = joint_data(64, 64)
    common = {"selection_mode": "transition_pam", "num_train_epochs": 3, "selection_epochs": 1, "prior_weight": 0.5}
    trainer = make_trainer(tmp_path, train_set, k=1, save_strategy="epoch", **common)
    _judging_everything_class_1(trainer, monkeypatch)  # so that the verdict flags faces after one tiny epoch
    trainer.train()
    assert trainer.mode.verdict_epoch == 1 and int(trainer.selector.created.sum()) > 0
    checkpoints = sorted((tmp_path / "run").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert not (checkpoints[0] / VERDICT_STATE).exists()  # saved at the end of epoch 0, before the verdict
    second = checkpoints[1]
    assert (second / VERDICT_STATE).is_file()
    resumed = make_trainer(tmp_path, train_set, k=1, save_strategy="epoch", **common)
    resumed.train(resume_from_checkpoint=str(second))  # the stored verdict, not a new one (unpatched)
    assert resumed.mode.verdict_epoch == 1
    for name, value in trainer.mode.transition.columns.items():
        np.testing.assert_array_equal(resumed.mode.transition.columns[name], value)
    assert torch.equal(resumed.selector.clean, trainer.selector.clean)
    assert resumed.model.config.logit_adjustment == trainer.model.config.logit_adjustment is not None
    (second / VERDICT_STATE).unlink()
    broken = make_trainer(tmp_path, train_set, k=1, **common)
    with pytest.raises(UserInputError, match=VERDICT_STATE):
        broken.mode.load(str(second))
