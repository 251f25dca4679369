"""selection_mode transition (sspa_hf/modes/transition.py): the learnt standard transition, its loss and verdict."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import TINY, augmented, joint_data, make_trainer, run_two_processes, training_batch

from sspa_hf import SSPAConfig, SSPAForImageClassification
from sspa_hf.model.modeling_sspa import TRANSITION_INIT, expert_cross_entropy


def _transition_model() -> SSPAForImageClassification:
    torch.manual_seed(0)
    config = SSPAConfig(backbone_config=TINY, num_experts=2, image_size=48, standard_transition=True)
    return SSPAForImageClassification(config)


def test_transition_explains_an_auxiliary_label_as_a_mixture_of_target_classes(tmp_path):
    model = _transition_model()
    with torch.no_grad():
        model.standard_transition.normal_()
    out = model(pixel_values=torch.randn(4, 3, 48, 48))
    m = model.standard_transition.softmax(dim=0)  # M[y, j] = P(auxiliary label y | target class j)
    expected = torch.einsum("yj,bkj->bky", m, out.expert_probs)  # P(y | x) = sum_j M[y, j] p_i(j | x)
    torch.testing.assert_close(out.auxiliary_log_probs.exp(), expected, rtol=1e-5, atol=1e-6)
    assert "auxiliary_log_probs" in model.config.keys_to_ignore_at_inference  # predictions stay the logits
    model.save_pretrained(tmp_path)
    reloaded = SSPAForImageClassification.from_pretrained(tmp_path)
    assert torch.equal(reloaded.standard_transition, model.standard_transition)
    fresh = SSPAForImageClassification(SSPAConfig(backbone_config=TINY, image_size=48))
    assert (
        fresh.standard_transition is None and fresh(pixel_values=torch.randn(1, 3, 48, 48)).auxiliary_log_probs is None
    )


def test_transition_loss_reads_target_labels_directly_and_auxiliary_labels_through_m(tmp_path):
    train_set, _ = joint_data(120, 120)
    trainer = make_trainer(tmp_path, train_set, k=2, selection_mode="transition")
    with torch.no_grad():
        trainer.model.standard_transition.normal_()
    batch = training_batch(trainer, list(range(100, 140)))  # 20 target rows, 20 auxiliary rows
    model = trainer.model.train()
    torch.manual_seed(1)
    loss = trainer.compute_loss(model, dict(batch))
    torch.manual_seed(1)
    with torch.no_grad():
        out = model(pixel_values=augmented(trainer, batch)["pixel_values"])
    labels = batch["labels"]
    target = expert_cross_entropy(out.expert_logits, labels)[:20]
    aux = -out.auxiliary_log_probs[20:].gather(2, labels[20:].view(-1, 1, 1).expand(-1, 2, 1)).squeeze(2).mean(1)
    torch.testing.assert_close(loss.detach(), torch.cat([target, aux]).mean(), rtol=1e-5, atol=1e-6)
    loss.backward()
    assert model.standard_transition.grad is not None and model.standard_transition.grad.abs().sum() > 0
    assert "standard_transition" not in trainer.get_decay_parameter_names(model)


def test_transition_verdict_is_the_posterior_argmax(tmp_path, monkeypatch):
    train_set, _ = joint_data(60, 60)
    trainer = make_trainer(tmp_path, train_set, k=2, selection_mode="transition")
    with torch.no_grad():  # auxiliary label 0 is given to faces of target class 0 or 1 alike; label 2 only to class 2
        trainer.model.standard_transition.fill_(-20.0)
        trainer.model.standard_transition[0, 0] = trainer.model.standard_transition[0, 1] = 0.0
        trainer.model.standard_transition[1, 1] = trainer.model.standard_transition[2, 2] = 0.0
        for j in range(3, 7):
            trainer.model.standard_transition[j, j] = 0.0
    aux = np.flatnonzero(~np.asarray(train_set["is_target"]))
    labels = np.asarray(train_set["label"])
    p = np.full((len(aux), 7), 0.01)
    p[:, 1] = 0.6  # every auxiliary face looks like class 1
    monkeypatch.setattr(trainer, "predict", lambda data: SimpleNamespace(predictions=np.log(p[: len(data)])))
    trainer.mode.finish()
    verdict = trainer.mode.transition.columns["target_standard_label"][aux]
    # q(j) ~ M[y, j] p(j): label 0 -> class 1 (M[0, 1] = M[0, 0], p(1) > p(0)); label 1 -> 1 (kept); label 2 -> 2
    expected = np.where(labels[aux] == 0, 1, labels[aux])
    np.testing.assert_array_equal(verdict, expected)
    assert trainer.selector.clean[aux].numpy().tolist() == (expected == labels[aux]).tolist()
    assert (trainer.mode.transition.columns["score"][aux][labels[aux] == 0] < 0).all()


@pytest.mark.slow
def test_two_processes_learn_one_standard_transition_and_give_one_verdict(tmp_path):
    states = run_two_processes(tmp_path, "--transition")
    for name, value in states[0].items():  # M is a parameter: DDP keeps it identical on every rank
        assert torch.equal(states[1][name], value), name
    init = torch.eye(7) * TRANSITION_INIT
    assert not torch.allclose(states[0]["standard_transition"], init)  # it learnt
    verdict, labels = states[0]["target_standard_label"], states[0]["labels"]
    assert verdict.shape == labels.shape == (101,) and int(states[0]["world_size"]) == 2
    assert torch.equal(states[0]["clean"], verdict == labels)
