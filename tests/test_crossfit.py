"""Selection modes beyond the paper: the learnt standard transition, and the cleanlab anchor on cross-validated
probabilities (fold bookkeeping, cleanlab's verdict, both modes end to end through sspa-train)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from datasets import ClassLabel, Dataset, Features, Value
from helpers import TINY, TINY_FLAGS, joint_data, make_trainer, training_batch

from sspa_hf import SSPAConfig, SSPAForImageClassification
from sspa_hf.commands.train import main
from sspa_hf.crossfit import PROBS_FILE, assign_folds, crossfit_probabilities
from sspa_hf.labels import EXPRESSIONS
from sspa_hf.modeling_sspa import expert_cross_entropy
from sspa_hf.modes.cleanlab import cleanlab_issues, with_cleaning


def _table(n: int) -> Dataset:
    features = Features(
        {"id": Value("string"), "label": ClassLabel(names=list(EXPRESSIONS)), "sample_index": Value("int64")}
    )
    rows = {"id": [f"row{i}" for i in range(n)], "label": [i % 7 for i in range(n)], "sample_index": list(range(n))}
    return Dataset.from_dict(rows, features=features)


class _FakeTrainer:
    """Predicts class `fold` for every row, and fails on a row it trained on."""

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
    data = _table(35)
    log: list = []
    probs = crossfit_probabilities(data, lambda d, out: _FakeTrainer(d, out, log), 3, seed=1, output_dir=tmp_path)
    fold = assign_folds(np.asarray(data["label"]), 3, seed=1)
    assert len(log) == 3 and probs.shape == (35, 7)
    np.testing.assert_array_equal(probs.argmax(axis=1), fold)
    np.testing.assert_allclose(probs.max(axis=1), 1.0)
    # The cache answers a second call for the same folds without training anything.
    again = crossfit_probabilities(data, lambda *a: pytest.fail("trained again"), 3, 1, tmp_path)
    np.testing.assert_array_equal(again, probs)
    assert (tmp_path / PROBS_FILE).is_file()


def test_cleanlab_flags_auxiliary_labels_its_probabilities_contradict():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    probs = np.full((300, 3), 0.05)
    probs[np.arange(300), labels] = 0.9
    wrong = np.arange(200, 230)  # auxiliary rows whose given label the model firmly rejects
    labels[wrong] = (labels[wrong] + 1) % 3
    result = cleanlab_issues(probs, labels, is_target=np.arange(300) < 100)
    assert not result.clean[wrong].any()
    assert result.clean[:200].all() and result.clean[230:].all()
    assert (result.score[wrong] < 0).all() and (result.score[:200] == 0).all()
    columns = with_cleaning(_table(300), result)
    assert columns["clean"] == result.clean.tolist() and columns.features["clean"] == Value("bool")


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
        out = model(pixel_values=batch["pixel_values"])
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
    verdict = trainer.mode.judgement["target_standard_label"][aux]
    # q(j) ~ M[y, j] p(j): label 0 -> class 1 (M[0, 1] = M[0, 0], p(1) > p(0)); label 1 -> 1 (kept); label 2 -> 2
    expected = np.where(labels[aux] == 0, 1, labels[aux])
    np.testing.assert_array_equal(verdict, expected)
    assert trainer.selector.clean[aux].numpy().tolist() == (expected == labels[aux]).tolist()
    assert (trainer.mode.judgement["score"][aux][labels[aux] == 0] < 0).all()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["transition", "cleanlab"])
def test_beyond_modes_train_end_to_end_and_report_their_verdict(tmp_path, mode):
    out = tmp_path / "run"
    assert main([*TINY_FLAGS, "--output_dir", str(out), "--selection_mode", mode, "--num_experts", "1"]) == 0
    table = pq.read_table(out / "selection.parquet").to_pandas()
    assert (table.updates == 0).all() and (table.changed_epoch == -1).all()  # no Eq. 3-4: the verdict is the mode's
    assert table.clean[table.is_target].all() and "score" in table
    assert f"selection mode `{mode}`" in (out / "README.md").read_text()  # the model card says how it was trained
    if mode == "transition":
        assert (table.clean == (table.target_standard_label == table.label)).all()
        assert SSPAForImageClassification.from_pretrained(out).config.standard_transition
    else:
        assert (out / "crossfit" / PROBS_FILE).is_file()
