"""The selection-mode registry (sspa_hf/modes): one row per mode, no branching elsewhere, every mode end to end."""

from __future__ import annotations

import ast
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from helpers import TINY_FLAGS, augmented, joint_data, make_trainer, training_batch

from sspa_hf import SSPAForImageClassification
from sspa_hf.commands.export_selection import selection_columns
from sspa_hf.commands.train import main
from sspa_hf.modes import MODES, Knob, SelectionMode, VerdictColumn
from sspa_hf.run.folder import CROSSFIT_PROBS
from sspa_hf.run.modelcard import _hyperparameters
from sspa_hf.training.arguments import SSPATrainingArguments
from sspa_hf.training.pairing import pair_and_mix

PACKAGE = Path(__file__).resolve().parent.parent / "sspa_hf"


def _mentions_the_mode(node: ast.AST) -> bool:
    """`selection_mode` (a name or an attribute) or a registered mode's name (a string) anywhere in `node`."""
    return any(
        (isinstance(n, ast.Name) and n.id == "selection_mode")
        or (isinstance(n, ast.Attribute) and n.attr == "selection_mode")
        or (isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value in MODES)
        for n in ast.walk(node)
    )


def _branches_on_the_mode(source: str) -> list[int]:
    """Lines that compare or match on the selection mode, or look something up by a mode's name."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if (
            (isinstance(node, ast.Compare) and _mentions_the_mode(node))
            or (isinstance(node, ast.Match) and _mentions_the_mode(node.subject))
            or (isinstance(node, ast.Dict) and any(k is not None and _mentions_the_mode(k) for k in node.keys))
            or (isinstance(node, ast.Subscript) and _mentions_the_mode(node.slice))
        ):
            found.append(node.lineno)
    return found


def _template_branches(source: str) -> list[int]:
    """The same in a Jinja template: a comparison or test on `selection_mode` or a mode's name."""
    from jinja2 import Environment, nodes

    def mentions(node) -> bool:
        return any(
            (isinstance(n, nodes.Name) and n.name == "selection_mode")
            or (isinstance(n, nodes.Const) and n.value in MODES)
            for n in node.find_all((nodes.Name, nodes.Const))
        )

    tree = Environment().parse(source)
    return [node.lineno for node in tree.find_all(nodes.Compare) if mentions(node)]


def test_the_branching_check_sees_a_branch_on_the_mode():
    assert _branches_on_the_mode("if args.selection_mode == 'paper':\n    pass") == [1]
    assert _branches_on_the_mode("match args.selection_mode:\n    case _:\n        pass") == [1]
    assert _branches_on_the_mode("x = {'transition': 1}[name]") == [1]
    assert _branches_on_the_mode("ok = mode.name in MODES and args.selection_mode") == []
    assert _template_branches("{% if selection_mode == 'cleanlab' %}x{% endif %}") == [1]


def test_nothing_outside_the_registry_branches_on_the_selection_mode():
    found = [
        f"{path.relative_to(PACKAGE)}:{line}"
        for path in sorted(PACKAGE.rglob("*"))
        if "modes" not in path.relative_to(PACKAGE).parts
        for line in (
            _branches_on_the_mode(path.read_text())
            if path.suffix == ".py"
            else _template_branches(path.read_text())
            if path.parent.name == "templates"
            else []
        )
    ]
    assert found == []


def test_every_registered_mode_is_offered_and_an_unknown_one_is_refused(tmp_path):
    help_text = next(f for f in SSPATrainingArguments.__dataclass_fields__.values() if f.name == "selection_mode")
    with pytest.raises(ValueError, match="selection_mode must be one of") as refused:
        SSPATrainingArguments(output_dir=str(tmp_path), selection_mode="oracle")
    for name in MODES:
        assert f"'{name}'" in help_text.metadata["help"] and name in str(refused.value).split("got")[0]


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
    assert not straight.selector.selecting and bool(straight.selector.clean.all())


def test_the_step_denominator_counts_the_weights_the_loss_uses(tmp_path):
    train_set, _ = joint_data(60, 60)
    trainer = make_trainer(tmp_path, train_set, k=1)
    mode, rows = trainer.mode, torch.arange(50, 90)
    trainer.selector.clean[60:70] = False
    assert mode.loss_weight(rows).tolist() == trainer.selector.clean[rows].float().tolist()  # selection stage
    trainer.selector.epoch = trainer.args.selection_epochs  # PA stage: every sample of the mixed batch
    batch = training_batch(trainer, rows.tolist())
    clean = trainer.selector.loss_mask(rows)
    paired = pair_and_mix(
        augmented(trainer, batch)["pixel_values"], batch["labels"], clean, rng=np.random.default_rng(0)
    )
    assert torch.equal(mode.loss_weight(rows), paired.loss_weight) and bool(paired.loss_weight.all())
    trainer.selector.clean[rows] = False  # nothing clean to mix with: nothing enters the loss
    paired = pair_and_mix(
        augmented(trainer, batch)["pixel_values"],
        batch["labels"],
        trainer.selector.loss_mask(rows),
        rng=np.random.default_rng(0),
    )
    assert torch.equal(mode.loss_weight(rows), paired.loss_weight) and not bool(paired.loss_weight.any())


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["transition", "transition_pam", "consistency", "cleanlab"])
def test_beyond_modes_train_end_to_end_and_report_their_verdict(tmp_path, mode):
    out = tmp_path / "run"
    assert main([*TINY_FLAGS, "--output_dir", str(out), "--selection_mode", mode, "--num_experts", "1"]) == 0
    table = pq.read_table(out / "selection.parquet").to_pandas()
    assert (table.updates == 0).all() and (table.changed_epoch == -1).all()  # no Eq. 3-4: the verdict is the mode's
    assert table.clean[table.is_target].all() and "score" in table
    assert f"selection mode `{mode}`" in (out / "README.md").read_text()  # the model card says how it was trained
    if mode != "cleanlab":  # transition_pam: its verdict at epoch T_S = 1, the partition it trained on
        assert (table.clean == (table.target_standard_label == table.label)).all()
        assert SSPAForImageClassification.from_pretrained(out).config.standard_transition
    else:
        assert (out / "crossfit" / CROSSFIT_PROBS).is_file()


@dataclass
class _DampedArguments(SSPATrainingArguments):
    """The one argument field of the mode below."""

    damping: float = field(default=0.0, metadata={"help": "d of selection_mode 'damped'."})


class _DampedMode(SelectionMode):
    """A throwaway mode with a new hyperparameter: straight, each auxiliary loss times 1 - d."""

    name = "damped"
    help = "Straight combination, each auxiliary sample's loss times 1 - damping."
    knobs = (Knob("damping", "damping (d)"),)
    verdict = (VerdictColumn("damped_weight"),)
    no_decay = ("moe.gate",)

    @classmethod
    def check(cls, args) -> None:
        if not 0.0 <= args.damping < 1.0:
            raise ValueError(f"damping must be in [0, 1), got {args.damping}")

    def loss(self, model, batch, weight):
        outputs = model(pixel_values=batch["pixel_values"])
        factor = torch.where(batch["is_target"], 1.0, 1.0 - self.args.damping).to(batch["labels"].device)
        return self.cross_entropy(outputs, batch["labels"]) * factor, outputs

    def epoch_closed(self, stats) -> None:
        self.say(f"[damped] epoch {int(stats['epoch']) + 1} closed at d = {self.args.damping}")

    def verdict_columns(self):
        weights = np.where(self.selector.is_target.numpy(), 1.0, 1.0 - self.args.damping)
        return {"damped_weight": weights.astype(np.float32)}


def test_a_new_mode_with_a_new_hyperparameter_is_one_class_one_row_and_one_field(tmp_path, monkeypatch, caplog, capsys):
    monkeypatch.setitem(MODES, _DampedMode.name, _DampedMode)  # the one row
    with caplog.at_level(logging.WARNING, logger="sspa_hf.modes.base"):  # its knob: the other modes warn
        _DampedArguments(output_dir=str(tmp_path), damping=0.25)
    assert "selection_mode 'paper' ignores damping=0.25" in caplog.text
    with pytest.raises(ValueError, match=r"damping must be in \[0, 1\), got 1.5"):
        _DampedArguments(output_dir=str(tmp_path), selection_mode="damped", damping=1.5)
    args = _DampedArguments(output_dir=str(tmp_path), selection_mode="damped", damping=0.25)
    assert _hyperparameters(args)["damping (d)"] == 0.25  # its card row, only on its own card
    assert "damping (d)" not in _hyperparameters(_DampedArguments(output_dir=str(tmp_path)))

    train_set, _ = joint_data(30, 30)
    trainer = make_trainer(
        tmp_path, train_set, k=1, arguments=_DampedArguments, selection_mode="damped", damping=0.25, num_train_epochs=1
    )
    decaying = trainer.get_decay_parameter_names(trainer.model)
    assert "moe.experts.weight" in decaying and "moe.gate.weight" not in decaying  # its decay exclusion
    capsys.readouterr()
    trainer.train()
    assert "[damped] epoch 1 closed at d = 0.25" in capsys.readouterr().out  # its console line
    exported = selection_columns(pq.read_table(Path(trainer.args.output_dir) / "selection.parquet"))
    values, is_class = exported["damped_weight"]  # its exported column, beside the shared ones
    assert not is_class and sorted(set(values.tolist())) == [0.75, 1.0] and {"consistent", "score"} <= set(exported)
