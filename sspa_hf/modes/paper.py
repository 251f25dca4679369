"""The paper's SSPA-JT (Algorithm 3): select during the first T_S epochs (Eq. 3-4), then PAM (Eq. 5-8).

The Table 5 ablation switches (`use_selection`, `fix_target`, `use_pairing`) are read here and nowhere else, and
so are the console lines of the selection stage: one per selection epoch, one at the stage switch.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch

from ..training.selection import SampleSelector
from .base import (
    EMA_MOMENTUM,
    FIX_TARGET,
    PAIRING_KNOBS,
    SELECTION_EPOCHS,
    USE_SELECTION,
    Batch,
    FrozenPartition,
    SelectionMode,
)

if TYPE_CHECKING:
    from transformers import Trainer, TrainingArguments

logger = logging.getLogger(__name__)


class PaperMode(SelectionMode):
    name = "paper"
    help = "Eq. 3-4 select during the first selection_epochs (T_S) epochs, then PAM mixes the flagged samples."
    knobs = (SELECTION_EPOCHS, EMA_MOMENTUM, *PAIRING_KNOBS, USE_SELECTION, FIX_TARGET)

    @classmethod
    def check(cls, args: TrainingArguments) -> None:
        """T_S must leave epochs for the paired-augmentation stage, unless PAM is off (then say what happens)."""
        if not args.use_selection or args.max_steps > 0 or args.selection_epochs < args.num_train_epochs:
            return
        if args.use_pairing:
            raise ValueError(
                f"selection_epochs ({args.selection_epochs}) must be smaller than num_train_epochs "
                f"({args.num_train_epochs:g}): paired augmentation (use_pairing) starts after T_S epochs and would "
                "never run; lower selection_epochs, or set use_pairing false to select during the whole run"
            )
        logger.warning(
            "selection_epochs (%d) >= num_train_epochs (%g): every epoch is a selection epoch and the partition is "
            "never frozen (use_pairing is off)",
            args.selection_epochs,
            args.num_train_epochs,
        )

    def __init__(self, trainer: Trainer) -> None:
        super().__init__(trainer)
        self.partition = FrozenPartition(self)  # the paired-augmentation stage, after T_S

    def selection_epochs(self) -> int:
        return self.args.selection_epochs if self.args.use_selection else 0

    def loss_weight(self, sample_index: torch.Tensor) -> torch.Tensor:
        if self.selector.selecting:  # the clean samples of the previous epoch's partition
            return self.selector.loss_mask(sample_index).float()
        return self.partition.weight(sample_index)

    def loss(self, model: torch.nn.Module, batch: Batch, weight: torch.Tensor) -> tuple[torch.Tensor, Any]:
        if not self.selector.selecting:
            return self.partition.loss(model, batch)
        # Algorithm 3 lines 9-14: one forward pass over the whole batch; the loss keeps the clean samples of the
        # previous epoch's partition (`weight`), and every sample's thresholds move (Algorithm 1).
        outputs = model(pixel_values=batch["pixel_values"])
        self._update_selection(batch["sample_index"], outputs.expert_probs, batch["labels"])
        return self.cross_entropy(outputs, batch["labels"]), outputs

    def epoch_closed(self, stats: dict[str, float]) -> None:
        """One line per selection epoch; at the last one, the partition that is frozen from then on."""
        closed, selection_epochs = int(stats["epoch"]), self.selector.selection_epochs
        if closed < selection_epochs:
            self.say(epoch_line(closed, stats, self.selector.num_experts))
        if closed == selection_epochs - 1:
            self.say(stage_switch_line(self.selector, self.trainer.model.config.id2label, self.args.use_pairing))

    def _update_selection(self, sample_index: torch.Tensor, expert_probs: torch.Tensor, labels: torch.Tensor) -> None:
        """Apply Algorithm 1 for the samples of this step on every process, in rank order."""
        accelerator = self.trainer.accelerator
        with torch.no_grad():
            rows = (sample_index.long(), expert_probs.detach().float(), labels.long())
            if accelerator.num_processes > 1:
                rows = tuple(accelerator.gather(accelerator.pad_across_processes(t, dim=0, pad_index=-1)) for t in rows)
                keep = rows[0] >= 0
                rows = tuple(t[keep] for t in rows)
            self.selector.update(*rows)


def epoch_line(epoch: int, stats: dict[str, float], num_experts: int) -> str:
    """One readable line per selection epoch: clean ratio, selection precision/recall when known, mean tau."""
    parts = []
    if "selection/aux_clean_ratio" in stats:
        parts.append(f"auxiliary clean {100 * stats['selection/aux_clean_ratio']:.1f} %")
    for name in ("precision", "recall"):
        if f"selection/{name}" in stats:
            parts.append(f"{name} {100 * stats[f'selection/{name}']:.1f} %")
    taus = [stats[f"selection/mean_tau/expert_{i}"] for i in range(num_experts)]
    parts.append(f"mean tau {sum(taus) / len(taus):.3f}")
    return f"[selection] epoch {epoch + 1}: " + ", ".join(parts)


def stage_switch_line(selector: SampleSelector, id2label: dict[int, str], use_pairing: bool) -> str:
    """The end of the selection stage: what is frozen, kept / flagged auxiliary samples per class."""
    aux = ~selector.is_target
    counts = []
    for c in range(selector.num_classes):
        members = aux & (selector.labels == c)
        if members.any():
            kept = int(selector.clean[members].sum())
            counts.append(f"{id2label.get(c, c)} {kept}/{int(members.sum()) - kept}")
    then = "paired augmentation (PAM) mixes the flagged ones" if use_pairing else "the flagged ones leave the loss"
    return (
        f"[selection] partition frozen after {selector.selection_epochs} epochs; {then}. Auxiliary kept/flagged per "
        f"class: {', '.join(counts) or 'no auxiliary samples'}"
    )
