"""Ours: `transition` for the first T_S epochs, then the paper's PAM on the auxiliary faces its verdict flags.

A class-level M can explain a rare class away (auxiliary "disgust" fitted as M[disgust | anger] p(anger)), so the
target-standard head never learns to predict it. At epoch T_S the model's verdict (`Transition.decide`)
freezes the partition; from then on every flagged face is mixed into a clean partner drawn so that each batch's
class histogram becomes as flat as possible (Eq. 5-8, Algorithm 2), the paper's own remedy for the tail classes.
Target faces and mixtures enter the loss with their labels, kept auxiliary faces still through M. Flat batches
teach the head a flatter prior than the target's; with `prior_weight` w > 0 it predicts with logits + w log pi.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import UserInputError
from ..run.folder import VERDICT_STATE
from .base import (
    PAIRING_KNOBS,
    SELECTION_EPOCHS,
    USE_SELECTION,
    Batch,
    FrozenPartition,
    Knob,
    SelectionMode,
    refuse_without_selection,
)
from .transition import Transition

if TYPE_CHECKING:
    from transformers import Trainer, TrainingArguments


def class_log_prior(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """log pi, (C,): the class frequencies of `labels` (N,) with one extra count per class (no log 0)."""
    return np.log((np.bincount(labels, minlength=num_classes) + 1) / (len(labels) + num_classes))


class TransitionPamMode(SelectionMode):
    name = "transition_pam"
    help = (
        "Ours: transition for the first selection_epochs (T_S) epochs; then its verdict freezes the partition and "
        "PAM mixes every flagged auxiliary face into a clean partner chosen to flatten the batch's classes."
    )
    card = (
        "**This model was trained beyond the paper, in selection mode `transition_pam`:** for the first T_S epochs "
        "the model learnt a matrix M[y, j] = P(auxiliary label y | target class j) and read every auxiliary label "
        "through it; then its own verdict (the most probable target class under M[y, j] p(j | x)) flagged the "
        "auxiliary labels it did not keep, and the paper's PAM mixed each flagged face into a clean partner of a "
        "rare class for the remaining epochs. With `prior_weight` w > 0 it predicts with logits + w log pi (pi: "
        "the target faces' class prior; `config.logit_adjustment`), trading tail recall back for accuracy. "
        '"Kept" below is that verdict at epoch T_S.'
    )
    knobs = (SELECTION_EPOCHS, *PAIRING_KNOBS, USE_SELECTION, Knob("prior_weight", "prior_weight (w)"))
    model_options = Transition.model_options
    verdict = Transition.verdict
    no_decay = Transition.no_decay

    @classmethod
    def check(cls, args: TrainingArguments) -> None:
        refuse_without_selection(cls, args)
        if args.max_steps <= 0 and args.selection_epochs >= args.num_train_epochs:
            raise ValueError(
                f"selection_mode 'transition_pam': selection_epochs ({args.selection_epochs}) must be smaller than "
                f"num_train_epochs ({args.num_train_epochs:g}), or the verdict never freezes the partition"
            )

    def __init__(self, trainer: Trainer) -> None:
        super().__init__(trainer)
        self.transition = Transition(self)  # the first T_S epochs, and the kept auxiliary faces after
        self.selector.freeze(np.ones(len(self.selector), dtype=bool))  # nothing is dropped before the verdict
        self.partition = FrozenPartition(self)  # PAM on the verdict's partition, from epoch T_S
        self.verdict_epoch: int | None = None  # the epoch whose start froze the partition

    def begin_epoch(self, epoch: int) -> None:
        """At epoch T_S: the verdict of the model so far becomes the partition of every later epoch."""
        if self.verdict_epoch is not None or epoch < self.args.selection_epochs:
            return
        self.transition.adopt_verdict()
        self.verdict_epoch = epoch
        self._adjust_logits()
        flagged = int((~self.selector.clean).sum())
        aux = int((~self.selector.is_target).sum())
        self.say(f"epoch {epoch}: the transition verdict flags {flagged} of {aux} auxiliary labels; PAM mixes them")

    def _adjust_logits(self) -> None:
        """Predictions from now on: logits + w log pi, pi the target faces' class prior (counts + 1).

        PAM's batches are flat, so the head learns a flatter prior than the target's; w = 1 would give it back in
        full (the Bayes correction from a uniform prior), w = 0 keeps the flat one. Losses read the experts' logits,
        so training is unchanged; `config.logit_adjustment` goes with the saved model to `pipeline` and ONNX.
        """
        log_prior = class_log_prior(self.selector.labels.numpy()[self.selector.is_target.numpy()], self.num_classes)
        config = self.trainer.accelerator.unwrap_model(self.trainer.model).config
        config.logit_adjustment = (self.args.prior_weight * log_prior).tolist() if self.args.prior_weight else None

    def loss_weight(self, sample_index: torch.Tensor) -> torch.Tensor:
        if self.verdict_epoch is None:
            return super().loss_weight(sample_index)
        return self.partition.weight(sample_index)

    def loss(self, model: torch.nn.Module, batch: Batch, weight: torch.Tensor) -> tuple[torch.Tensor, Any]:
        if self.verdict_epoch is None:
            return self.transition.loss(model, batch)
        pixels, labels, clean = self.partition.inputs(batch)
        outputs = model(pixel_values=pixels)
        through_m = clean & ~batch["is_target"].to(pixels.device)  # kept auxiliary faces, unmixed
        per_sample = torch.where(through_m, self.transition.nll(outputs, labels), self.cross_entropy(outputs, labels))
        return per_sample, outputs

    def finish(self) -> None:
        """The partition trained on stays (the epoch-T_S verdict); a run that never reached T_S is decided now."""
        if self.verdict_epoch is None:
            self.transition.adopt_verdict()

    def verdict_columns(self) -> dict[str, np.ndarray]:
        return dict(self.transition.columns)

    def save(self, directory: str) -> None:
        super().save(directory)
        if self.verdict_epoch is not None:
            from safetensors.numpy import save_file

            arrays = {k: np.ascontiguousarray(v) for k, v in self.transition.columns.items()}
            # "judged_at": the key checkpoints have always carried
            save_file(arrays, str(Path(directory) / VERDICT_STATE), metadata={"judged_at": str(self.verdict_epoch)})

    def load(self, directory: str) -> None:
        super().load(directory)
        path = Path(directory) / VERDICT_STATE
        if self.selector.epoch > self.args.selection_epochs and not path.is_file():
            raise UserInputError(f"{path} not found: a transition_pam checkpoint after epoch T_S keeps its verdict")
        if path.is_file():
            from safetensors import safe_open
            from safetensors.numpy import load_file

            self.transition.columns = load_file(str(path))
            with safe_open(str(path), "np") as f:
                self.verdict_epoch = int(f.metadata()["judged_at"])
            self._adjust_logits()
