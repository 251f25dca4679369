"""The selection-mode registry (sspa_hf/modes): one row per mode, no branching elsewhere, every mode end to end."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from helpers import TINY_FLAGS, joint_data, make_trainer, training_batch

from sspa_hf import SSPAForImageClassification
from sspa_hf.arguments import SSPATrainingArguments
from sspa_hf.commands.train import main
from sspa_hf.modes import MODES
from sspa_hf.pairing import pair_and_mix
from sspa_hf.run_folder import CROSSFIT_PROBS

PACKAGE = Path(__file__).resolve().parent.parent / "sspa_hf"


def test_nothing_outside_the_registry_branches_on_the_selection_mode():
    branching = re.compile(r"selection_mode\s*(==|!=|\bin\b|\bnot in\b)")
    found = [
        f"{path.relative_to(PACKAGE)}:{number}"
        for path in PACKAGE.rglob("*")
        if path.suffix in (".py", ".md") and "modes" not in path.relative_to(PACKAGE).parts
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if branching.search(line)
    ]
    assert found == []


def test_every_registered_mode_is_offered_and_an_unknown_one_is_refused(tmp_path):
    help_text = next(f for f in SSPATrainingArguments.__dataclass_fields__.values() if f.name == "selection_mode")
    for name in MODES:
        assert f"'{name}'" in help_text.metadata["help"]
    with pytest.raises(
        ValueError, match="selection_mode must be one of transition, transition_pam, paper, cleanlab, straight"
    ):
        SSPATrainingArguments(output_dir=str(tmp_path), selection_mode="oracle")


def test_a_mode_warns_about_the_settings_it_ignores_and_refuses_what_cannot_work(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="sspa_hf.modes.base"):
        SSPATrainingArguments(output_dir=str(tmp_path), selection_mode="transition", ema_momentum=0.9, mixup_beta=1.5)
    assert "selection_mode 'transition' ignores ema_momentum=0.9, mixup_beta=1.5" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sspa_hf.modes.base"):
        SSPATrainingArguments(output_dir=str(tmp_path), ema_momentum=0.9, mixup_beta=1.5)  # the paper reads both
    assert "ignores" not in caplog.text
    with pytest.raises(ValueError, match="'cleanlab' selects auxiliary samples; use_selection is off"):
        SSPATrainingArguments(output_dir=str(tmp_path), selection_mode="cleanlab", use_selection=False)


def test_straight_mode_trains_exactly_like_the_paper_mode_with_every_module_off(tmp_path):
    train_set, _ = joint_data(60, 60)
    schedule = {"num_train_epochs": 2, "selection_epochs": 1, "k": 1}
    straight = make_trainer(tmp_path / "a", train_set, selection_mode="straight", **schedule)
    off = make_trainer(tmp_path / "b", train_set, use_selection=False, use_pairing=False, **schedule)
    straight.train()
    off.train()
    for (name, a), b in zip(straight.model.state_dict().items(), off.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert not straight.selector.enabled and bool(straight.selector.clean.all())


def test_the_step_denominator_counts_the_weights_the_loss_uses(tmp_path):
    train_set, _ = joint_data(60, 60)
    trainer = make_trainer(tmp_path, train_set, k=1)
    mode, rows = trainer.mode, torch.arange(50, 90)
    trainer.selector.clean[60:70] = False
    assert mode.loss_weight(rows).tolist() == trainer.selector.clean[rows].float().tolist()  # selection stage
    trainer.selector.epoch = trainer.args.selection_epochs  # PA stage: every sample of the mixed batch
    batch = training_batch(trainer, rows.tolist())
    clean = trainer.selector.loss_mask(rows)
    paired = pair_and_mix(batch["pixel_values"], batch["labels"], clean, rng=np.random.default_rng(0))
    assert torch.equal(mode.loss_weight(rows), paired.loss_weight) and bool(paired.loss_weight.all())
    trainer.selector.clean[rows] = False  # nothing clean to mix with: nothing enters the loss
    paired = pair_and_mix(
        batch["pixel_values"], batch["labels"], trainer.selector.loss_mask(rows), rng=np.random.default_rng(0)
    )
    assert torch.equal(mode.loss_weight(rows), paired.loss_weight) and not bool(paired.loss_weight.any())


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["transition", "transition_pam", "cleanlab"])
def test_beyond_modes_train_end_to_end_and_report_their_verdict(tmp_path, mode):
    out = tmp_path / "run"
    assert main([*TINY_FLAGS, "--output_dir", str(out), "--selection_mode", mode, "--num_experts", "1"]) == 0
    table = pq.read_table(out / "selection.parquet").to_pandas()
    assert (table.updates == 0).all() and (table.changed_epoch == -1).all()  # no Eq. 3-4: the verdict is the mode's
    assert table.clean[table.is_target].all() and "score" in table
    assert f"selection mode `{mode}`" in (out / "README.md").read_text()  # the model card says how it was trained
    if mode.startswith("transition"):  # transition_pam: its verdict at epoch T_S = 1, the partition it trained on
        assert (table.clean == (table.target_standard_label == table.label)).all()
        assert SSPAForImageClassification.from_pretrained(out).config.standard_transition
    else:
        assert (out / "crossfit" / CROSSFIT_PROBS).is_file()
