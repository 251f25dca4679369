"""Straight combination: every sample with its own label, the baseline every other mode must beat."""

from __future__ import annotations

from typing import Any

import torch

from .base import Batch, SelectionMode


class StraightMode(SelectionMode):
    name = "straight"
    help = "No selection: target and auxiliary samples with their own labels (the naive merge)."
    card = (
        "**This model was trained in selection mode `straight`:** no sample selection and no paired augmentation; "
        "every sample entered the loss with its own label (straight combination, the baseline)."
    )

    def loss(self, model: torch.nn.Module, batch: Batch, weight: torch.Tensor) -> tuple[torch.Tensor, Any]:
        outputs = model(pixel_values=batch["pixel_values"])
        return self.cross_entropy(outputs, batch["labels"]), outputs
