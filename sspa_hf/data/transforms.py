"""On-the-fly transforms and the torch Dataset that applies them in DataLoader worker processes.

Training randomness is a pure function of (seed, epoch, sample_index), so a batch does not depend on the number of
workers, prefetching, or a resume that skips batches. The epoch lives in shared memory so persistent workers see
`set_epoch` without being restarted.
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
    """Image -> float CHW tensor; `sample_index` seeds the randomness of training transforms."""

    def __call__(self, image: PILImage.Image, sample_index: int = 0) -> torch.Tensor: ...


class TrainAugment:
    """RGB, resize to `image_size`, random crop from a reflect-padded image, horizontal flip, normalise.

    Call `set_epoch(e)` before creating the iterator of epoch `e` (the DataLoader starts prefetching then).
    """

    def __init__(
        self,
        image_size: int,
        image_mean: Sequence[float],
        image_std: Sequence[float],
        padding: float = 0.125,
        seed: int = 0,
    ) -> None:
        self.image_size = int(image_size)
        self.pad = round(padding * self.image_size)
        self.seed = int(seed)
        mean = torch.as_tensor(image_mean, dtype=torch.float32).reshape(-1, 1, 1)
        std = torch.as_tensor(image_std, dtype=torch.float32).reshape(-1, 1, 1)
        # (x / 255 - mean) / std as one multiply and one subtract
        self._scale, self._shift = 1.0 / (255.0 * std), mean / std
        self._epoch = torch.zeros((), dtype=torch.long).share_memory_()

    @property
    def epoch(self) -> int:
        return int(self._epoch.item())

    def set_epoch(self, epoch: int) -> None:
        """Change the epoch everywhere: the tensor is shared with worker processes."""
        self._epoch.fill_(int(epoch))

    def __call__(self, image: PILImage.Image, sample_index: int = 0) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, self.epoch, int(sample_index)])
        top, left = rng.integers(0, 2 * self.pad + 1, size=2)
        flip = rng.random() < 0.5
        size = self.image_size
        image = to_rgb(image)
        if image.size != (size, size):
            image = image.resize((size, size), PILImage.Resampling.BILINEAR)
        pixels = np.asarray(image)
        if self.pad:
            pixels = np.pad(pixels, ((self.pad, self.pad), (self.pad, self.pad), (0, 0)), mode="reflect")
        pixels = pixels[top : top + size, left : left + size]
        if flip:
            pixels = pixels[:, ::-1]
        chw = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))
        return chw.to(torch.float32).mul_(self._scale).sub_(self._shift)


class EvalTransform:
    """Exactly the image processor's own preprocessing, as the pipeline does it: RGB, resize of the whole image to
    the square input size (no centre crop, so nothing of the face is cut off), rescale, normalise."""

    def __init__(self, image_processor: Any) -> None:
        self.image_processor = image_processor

    def set_epoch(self, epoch: int) -> None:
        """Nothing to do: evaluation is not random."""

    def __call__(self, image: PILImage.Image, sample_index: int = 0) -> torch.Tensor:
        return self.image_processor(images=to_rgb(image), return_tensors="pt")["pixel_values"][0]


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
            "pixel_values": self.transform(image, sample_index),
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


def collate_fer(batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack items into `pixel_values` (float), `labels` and `sample_index` (long), `is_target` (bool)."""
    return {
        "pixel_values": torch.stack([item["pixel_values"] for item in batch]).float(),
        "labels": torch.tensor([item["labels"] for item in batch], dtype=torch.long),
        "sample_index": torch.tensor([item["sample_index"] for item in batch], dtype=torch.long),
        "is_target": torch.tensor([item["is_target"] for item in batch], dtype=torch.bool),
    }
