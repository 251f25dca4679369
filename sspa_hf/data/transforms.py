"""The torch Dataset that decodes faces in DataLoader worker processes, the evaluation transform, the collator.

Training items are uint8 faces plus their random parameters (`augment.BatchAugment`); the trainer augments them
batched on the training device. Evaluation items are the image processor's own float pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch
from datasets import Dataset, Image
from PIL import Image as PILImage

from .images import image_name, open_image, to_rgb


class Transform(Protocol):
    """Image -> the item's pixel fields: evaluation's float (3, H, W) `pixel_values`, or training's uint8 faces and
    random parameters (`augment.BatchAugment`); `sample_index` seeds the randomness of training."""

    def __call__(self, image: PILImage.Image, sample_index: int = 0) -> dict[str, Any]: ...


class EvalTransform:
    """Exactly the image processor's own preprocessing, as the pipeline does it: RGB, resize of the whole image to
    the square input size (no centre crop, so nothing of the face is cut off), rescale, normalise."""

    def __init__(self, image_processor: Any) -> None:
        self.image_processor = image_processor

    def set_epoch(self, epoch: int) -> None:
        """Nothing to do: evaluation is not random."""

    def __call__(self, image: PILImage.Image, sample_index: int = 0) -> dict[str, Any]:
        return {"pixel_values": self.image_processor(images=to_rgb(image), return_tensors="pt")["pixel_values"][0]}


class FERTorchDataset(torch.utils.data.Dataset):
    """A joint or plain split as a torch Dataset of `{pixel_values, labels, sample_index, is_target}` items.

    Images are decoded lazily, one item (or one `__getitems__` batch) at a time, from the split's Arrow data; a split
    without `sample_index` / `is_target` uses the row position / True.
    """

    def __init__(self, hf_dataset: Dataset, transform: Transform) -> None:
        columns = [c for c in ("image", "label", "sample_index", "is_target", "id") if c in hf_dataset.column_names]
        self._ds = hf_dataset.select_columns(columns).cast_column("image", Image(decode=False))
        self.transform = transform

    def __len__(self) -> int:
        return len(self._ds)

    def set_epoch(self, epoch: int) -> None:
        """Forward the epoch to the transform (shared with worker processes)."""
        if hasattr(self.transform, "set_epoch"):
            self.transform.set_epoch(epoch)

    def _item(self, position: int, row: dict[str, Any]) -> dict[str, Any]:
        name = image_name(row["image"], f"id {row['id']}" if row.get("id") else f"row {position}")
        sample_index = int(row["sample_index"]) if "sample_index" in row else position
        image = open_image(row["image"], name)
        return {
            **self.transform(image, sample_index),
            "labels": int(row["label"]),
            "sample_index": sample_index,
            "is_target": bool(row.get("is_target", True)),
        }

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        return self._item(index, self._ds[index])

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """Fetch a whole batch in one Arrow read (the DataLoader calls this when it exists)."""
        indices = [int(i) for i in indices]
        batch = self._ds[indices]
        keys = list(batch)
        return [self._item(pos, {k: batch[k][j] for k in keys}) for j, pos in enumerate(indices)]


def collate_fer(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack items: `pixel_values` (float, or uint8 faces for training), `labels` and `sample_index` (long),
    `is_target` (bool); augmentation parameters (`*_params`) as (B, k) numpy arrays, which stay on the host."""
    out: dict[str, Any] = {
        "pixel_values": torch.stack([item["pixel_values"] for item in batch]),
        "labels": torch.tensor([item["labels"] for item in batch], dtype=torch.long),
        "sample_index": torch.tensor([item["sample_index"] for item in batch], dtype=torch.long),
        "is_target": torch.tensor([item["is_target"] for item in batch], dtype=torch.bool),
    }
    for key in batch[0]:
        if key.endswith("_params"):
            out[key] = np.stack([item[key] for item in batch])
    return out
