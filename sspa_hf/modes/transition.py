"""Ours, beyond the paper: no auxiliary face is dropped; a learnt C x C matrix explains the auxiliary labels.

The model learns M[y, j] = P(auxiliary label y | target-standard class j) beside the classifier; a target label
enters the loss directly, an auxiliary label as -log sum_j M[y, j] p(j | x) (docs/method.md). `Transition` is that
part (the loss through M and the model's verdict), held by this mode and by `transition_pam`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .base import USE_SELECTION, Batch, SelectionMode, VerdictColumn, refuse_without_selection

if TYPE_CHECKING:
    from transformers import Trainer, TrainingArguments


class Transition:
    """A part a mode holds: the learnt standard transition M, the loss through it and the model's verdict."""

    model_options = {"standard_transition": True}  # the model learns M beside the classifier
    no_decay = ("standard_transition",)  # decay would pull M towards uniform, not towards 0
    verdict = (VerdictColumn("target_standard_label", is_class=True), VerdictColumn("score"))

    def __init__(self, mode: SelectionMode) -> None:
        self.mode, self.trainer, self.selector = mode, mode.trainer, mode.selector
        if not getattr(self.trainer.model.config, "standard_transition", False):
            raise ValueError(f"selection_mode {mode.name!r} needs a model built with standard_transition=True")
        self.columns: dict[str, np.ndarray] = {}  # the verdict's per-sample columns, once adopted

    def nll(self, outputs: Any, labels: torch.Tensor) -> torch.Tensor:
        """-log sum_j M[y, j] p(j | x) per sample, averaged over experts; (B,)."""
        from ..model.modeling_sspa import transition_nll  # on first use: the argument parser imports the modes

        return transition_nll(outputs.auxiliary_log_probs, labels)

    def loss(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, Any]:
        """Target labels through the cross-entropy, auxiliary labels through M."""
        outputs = model(pixel_values=batch["pixel_values"])
        labels = batch["labels"]
        per_sample = torch.where(
            batch["is_target"].to(labels.device), self.mode.cross_entropy(outputs, labels), self.nll(outputs, labels)
        )
        return per_sample, outputs

    def adopt_verdict(self) -> None:
        """The model's verdict (below) becomes the partition (`selector.clean`) and the verdict columns."""
        target_label, score = self.decide()
        self.selector.clean = torch.as_tensor(target_label == self.selector.labels.numpy())
        self.columns = {"target_standard_label": target_label, "score": score}

    def decide(self) -> tuple[np.ndarray, np.ndarray]:
        """The model's verdict on every auxiliary label: posterior q(j) ~ M[y, j] p(j | x) (eval mode).

        The label is consistent iff it is the most probable target class under q; otherwise q's argmax is its
        target-standard label. Returns (target-standard label (N,) int, score (N,) float: log q(y) minus the best
        other class, > 0 iff the given label wins); target rows keep their label, score 0.
        """
        trainer, data = self.trainer, self.trainer.train_dataset
        aux = np.flatnonzero(~self.selector.is_target.numpy())
        labels = self.selector.labels.numpy()
        target_label, score = labels.copy(), np.zeros(len(labels), dtype=np.float32)
        if len(aux):
            logits = np.asarray(trainer.predict(data.select(aux)).predictions, dtype=np.float64)
            log_p = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
            log_m = torch.log_softmax(
                trainer.accelerator.unwrap_model(trainer.model).standard_transition.detach().double().cpu(), dim=0
            ).numpy()
            log_q = log_p + log_m[labels[aux]]  # log M[y, j] + log p(j | x), up to a constant per row
            target_label[aux] = log_q.argmax(axis=1)
            given = log_q[np.arange(len(aux)), labels[aux]]
            others = np.where(np.eye(log_q.shape[1], dtype=bool)[labels[aux]], -np.inf, log_q)
            score[aux] = given - others.max(axis=1)  # > 0 iff the given label wins
        return target_label, score


class TransitionMode(SelectionMode):
    name = "transition"
    help = (
        "Ours, beyond the paper: no sample is dropped; the model learns M[y, j] = P(auxiliary label y | target "
        "class j) and an auxiliary label enters the loss as log sum_j M[y, j] p(j) (docs/method.md)."
    )
    card = (
        "**This model was trained beyond the paper, in selection mode `transition`:** no auxiliary sample was "
        "dropped; the model learnt a matrix M[y, j] = P(auxiliary label y | target class j) and read every auxiliary "
        'label through it, while its predictions p stay in the target\'s standard. "Kept" below means that an '
        "auxiliary label is the most probable target class of its face under M[y, j] p(j | x)."
    )
    model_options = Transition.model_options
    knobs = (USE_SELECTION,)
    verdict = Transition.verdict
    no_decay = Transition.no_decay

    @classmethod
    def check(cls, args: TrainingArguments) -> None:
        refuse_without_selection(cls, args)

    def __init__(self, trainer: Trainer) -> None:
        super().__init__(trainer)
        self.transition = Transition(self)
        self.selector.freeze(np.ones(len(self.selector), dtype=bool))  # nothing is dropped

    def loss(self, model: torch.nn.Module, batch: Batch, weight: torch.Tensor) -> tuple[torch.Tensor, Any]:
        return self.transition.loss(model, batch)

    def finish(self) -> None:
        """After training, the model's verdict becomes `selector.clean`, so the selection statistics report it."""
        self.transition.adopt_verdict()

    def verdict_columns(self) -> dict[str, np.ndarray]:
        return dict(self.transition.columns)
