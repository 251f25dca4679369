"""selection_mode consistency: transition's loss on the weak view plus a teacher's target learnt on a strong view."""

from __future__ import annotations

import pytest
import torch
from helpers import augmented, joint_data, make_trainer, run_two_processes, training_batch

from sspa_hf.model.modeling_sspa import expert_cross_entropy, transition_nll
from sspa_hf.run.folder import CONSISTENCY_STATE
from sspa_hf.training.arguments import SSPATrainingArguments


def _trainer(tmp_path, **settings):
    train_set, _ = joint_data(120, 120)
    trainer = make_trainer(tmp_path, train_set, k=1, selection_mode="consistency", **settings)
    with torch.no_grad():
        trainer.model.standard_transition.normal_()
    return trainer


def _expected(trainer, batch, *, hard: bool, threshold: float = 0.0, on_target: bool = False):
    """The per-sample loss written out: both views through the model in eval mode (no batch statistics)."""
    model, labels, is_target = trainer.model, batch["labels"], batch["is_target"]
    with torch.no_grad():
        weak = model(pixel_values=batch["pixel_values"])
        strong = model(pixel_values=batch["strong_pixel_values"])
    supervised = torch.where(
        is_target, expert_cross_entropy(weak.expert_logits, labels), transition_nll(weak.auxiliary_log_probs, labels)
    )
    log_m = torch.log_softmax(model.standard_transition.float(), dim=0)
    q = torch.softmax(weak.logits.log_softmax(1) + log_m[labels], dim=1)
    q = torch.where(is_target[:, None], torch.nn.functional.one_hot(labels, q.shape[1]).float(), q)
    log_p = strong.expert_logits.log_softmax(-1)[:, 0]
    if hard:
        confidence, target = q.max(1)
        consistency = -log_p.gather(1, target[:, None]).squeeze(1) * (confidence >= threshold)
    else:
        consistency = -(q * log_p).sum(1)
    return supervised + torch.where(is_target & (not on_target), 0.0, consistency), q


@pytest.mark.parametrize("on_target", [False, True])
@pytest.mark.parametrize("targets", ["hard", "soft"])
def test_auxiliary_faces_learn_the_teachers_posterior_through_m_on_the_strong_view(tmp_path, targets, on_target):
    trainer = _trainer(
        tmp_path,
        consistency_targets=targets,
        consistency_threshold=0.3,
        distribution_alignment=False,
        consistency_on_target=on_target,
    )
    batch = augmented(trainer, training_batch(trainer, list(range(100, 140))))  # 20 target, 20 auxiliary rows
    assert not torch.equal(batch["pixel_values"], batch["strong_pixel_values"])
    model = trainer.model.eval()
    per_sample, _ = trainer.mode.loss(model, batch, torch.ones(40))
    expected, q = _expected(trainer, batch, hard=targets == "hard", threshold=0.3, on_target=on_target)
    torch.testing.assert_close(per_sample.detach(), expected, rtol=1e-5, atol=1e-6)
    if targets == "hard":  # the mask is exercised: some auxiliary faces below the threshold, some above
        confident = q[20:].max(1).values >= 0.3
        assert bool(confident.any()) and not bool(confident.all())


def test_without_a_teacher_the_strong_view_learns_the_given_labels(tmp_path):
    trainer = _trainer(tmp_path, consistency_targets="labels", consistency_on_target=True)
    batch = augmented(trainer, training_batch(trainer, list(range(100, 140))))
    per_sample, _ = trainer.mode.loss(trainer.model.eval(), batch, torch.ones(40))
    labels, is_target = batch["labels"], batch["is_target"]
    with torch.no_grad():
        views = [trainer.model(pixel_values=batch[key]) for key in ("pixel_values", "strong_pixel_values")]
    expected = sum(
        torch.where(
            is_target, expert_cross_entropy(v.expert_logits, labels), transition_nll(v.auxiliary_log_probs, labels)
        )
        for v in views
    )
    torch.testing.assert_close(per_sample.detach(), expected, rtol=1e-5, atol=1e-6)


def test_distribution_alignment_moves_the_targets_towards_the_target_prior(tmp_path):
    trainer = _trainer(tmp_path, consistency_targets="soft")
    part = trainer.mode.consistency
    batch = augmented(trainer, training_batch(trainer, list(range(100, 140))))
    log_p = torch.zeros(40, 7)  # a teacher without an opinion: the targets are M's columns for each label
    before = part.mean_target.clone()
    targets = part.teacher_targets(log_p, batch)
    torch.testing.assert_close(targets.sum(1), torch.ones(40))
    assert torch.equal(targets[:20], torch.nn.functional.one_hot(batch["labels"][:20], 7).float())  # target faces
    trainer.args.distribution_alignment = False
    raw = part.teacher_targets(log_p, batch)[20:]
    assert not torch.equal(part.mean_target, before)  # the running mean saw this batch's auxiliary targets
    expected = torch.nn.functional.normalize(raw * (part.prior / part.mean_target), p=1, dim=1)
    torch.testing.assert_close(targets[20:], expected, rtol=1e-5, atol=1e-6)


def test_the_running_mean_of_the_targets_comes_back_from_a_checkpoint(tmp_path):
    trainer = _trainer(tmp_path)
    batch = augmented(trainer, training_batch(trainer, list(range(100, 132))))
    trainer.mode.loss(trainer.model.train(), batch, torch.ones(32))
    part = trainer.mode.consistency
    assert not torch.equal(part.mean_target, torch.full((7,), 1 / 7))
    trainer.mode.save(str(tmp_path))
    other = _trainer(tmp_path / "other")
    other.mode.load(str(tmp_path))
    assert torch.equal(other.mode.consistency.mean_target, part.mean_target)
    (tmp_path / CONSISTENCY_STATE).unlink()
    with pytest.raises(Exception, match=CONSISTENCY_STATE):
        other.mode.load(str(tmp_path))


def test_consistency_settings_are_checked(tmp_path):
    with pytest.raises(ValueError, match="consistency_targets must be one of"):
        SSPATrainingArguments(output_dir=str(tmp_path), selection_mode="consistency", consistency_targets="fuzzy")
    with pytest.raises(ValueError, match="train_augmentation must be one of"):
        SSPATrainingArguments(output_dir=str(tmp_path), train_augmentation="medium")


@pytest.mark.slow
def test_consistency_trains_end_to_end_and_resumes_bit_for_bit(tmp_path):
    train_set, _ = joint_data(64, 64)
    common = {"selection_mode": "consistency", "num_train_epochs": 2, "k": 1}
    full = make_trainer(tmp_path / "full", train_set, save_strategy="no", **common)
    full.train()
    first = make_trainer(tmp_path / "part", train_set, save_strategy="epoch", **common)
    first.train()
    checkpoint = sorted((tmp_path / "part" / "run").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[0]
    assert (checkpoint / CONSISTENCY_STATE).is_file()
    resumed = make_trainer(tmp_path / "part", train_set, save_strategy="no", **common)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert torch.equal(full.mode.consistency.mean_target, resumed.mode.consistency.mean_target)


@pytest.mark.slow
def test_two_processes_hold_one_running_mean_of_the_targets(tmp_path):
    states = run_two_processes(tmp_path, "--consistency")
    assert int(states[0]["world_size"]) == 2
    for name, value in states[0].items():  # the alignment's mean is reduced over processes
        if name.startswith("weights/") and "running_" in name:
            continue  # each process's last BatchNorm update is its own (DDP broadcasts them at the next forward)
        assert torch.equal(states[1][name], value), name
    assert not torch.allclose(states[0]["mean_target"], torch.full((7,), 1 / 7))  # it moved
