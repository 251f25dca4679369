"""The paper's SSPA-JT (Algorithm 3): select during the first T_S epochs (Eq. 3-4), then PAM (Eq. 5-8).

The Table 5 ablation switches (`use_selection`, `fix_target`, `use_pairing`) are read here and nowhere else.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch

from .base import KNOBS, Batch, FrozenPartitionMode

if TYPE_CHECKING:
    from ..arguments import SSPATrainingArguments

logger = logging.getLogger(__name__)


class PaperMode(FrozenPartitionMode):
    name = "paper"
    help = "Eq. 3-4 select during the first selection_epochs (T_S) epochs, then PAM mixes the flagged samples."
    reads = frozenset(KNOBS) - {"crossfit_folds", "prior_weight"}

    @classmethod
    def check(cls, args: SSPATrainingArguments) -> None:
        """T_S must leave epochs for the paired-augmentation stage, unless PAM is off (then say what happens)."""
        super().check(args)
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

    @property
    def selects(self) -> bool:
        return self.args.use_selection

    def loss_weight(self, sample_index: torch.Tensor) -> torch.Tensor:
        if self.selector.selecting:  # the clean samples of the previous epoch's partition
            return self.selector.loss_mask(sample_index).float()
        return self.partition_weight(sample_index)

    def loss(self, model: torch.nn.Module, batch: Batch, weight: torch.Tensor) -> tuple[torch.Tensor, Any]:
        if not self.selector.selecting:
            return self.partition_loss(model, batch)
        # Algorithm 3 lines 9-14: one forward pass over the whole batch; the loss keeps the clean samples of the
        # previous epoch's partition (`weight`), and every sample's thresholds move (Algorithm 1).
        outputs = model(pixel_values=batch["pixel_values"])
        self._update_selection(batch["sample_index"], outputs.expert_probs, batch["labels"])
        return self.cross_entropy(outputs, batch["labels"]), outputs

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
