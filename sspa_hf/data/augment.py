"""Training augmentation in two halves: DataLoader workers decode and draw, the training device transforms.

A worker decodes a face to uint8 pixels of the input size and draws each sample's random parameters from
(seed, epoch, sample index), so a batch depends neither on the worker count nor on the processes, and a resume
mid-epoch repeats it bit for bit. The batch crosses the process boundary as uint8 (a quarter of float's bytes);
the operations of each view then run batched on the training device (`BatchAugment.apply`), and the result is
normalised as the image processor normalises. An operation is one function pair and one row of `OPERATIONS`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image as PILImage

from .images import to_rgb


class Geometry(NamedTuple):
    """The input side in pixels and the reflect padding around it for random crops."""

    size: int
    pad: int


@dataclasses.dataclass(frozen=True)
class Operation:
    """`draw(rng, geometry)`: one sample's parameters (`width` numbers), in the worker; `apply(images, params,
    geometry)`: the batch (B, H, W, 3) uint8 and its parameters (B, width) float64 on the host -> a new batch."""

    width: int
    draw: Callable[[np.random.Generator, Geometry], Sequence[float]]
    apply: Callable[[torch.Tensor, np.ndarray, Geometry], torch.Tensor]


# ----- crop: a random crop of the reflect-padded face -----
def _draw_crop(rng: np.random.Generator, geometry: Geometry) -> Sequence[float]:
    return rng.integers(0, 2 * geometry.pad + 1, size=2).tolist()  # top, left in the padded face


def reflect_pad(images: torch.Tensor, pad: int) -> torch.Tensor:
    """(B, H, W, C) -> (B, H + 2 pad, W + 2 pad, C), mirrored without repeating the edge (numpy's "reflect")."""
    batch, height, width, channels = images.shape
    out = images.new_empty(batch, height + 2 * pad, width + 2 * pad, channels)
    out[:, pad : pad + height, pad : pad + width] = images
    out[:, pad : pad + height, :pad] = images[:, :, 1 : pad + 1].flip(2)
    out[:, pad : pad + height, pad + width :] = images[:, :, width - pad - 1 : width - 1].flip(2)
    out[:, :pad] = out[:, pad + 1 : 2 * pad + 1].flip(1)
    out[:, pad + height :] = out[:, height - 1 : height + pad - 1].flip(1)
    return out


def _crop(images: torch.Tensor, params: np.ndarray, geometry: Geometry) -> torch.Tensor:
    size, pad = geometry
    if pad == 0:
        return images
    padded, out = reflect_pad(images, pad), torch.empty_like(images)
    for b, (top, left) in enumerate(params.astype(int).tolist()):
        out[b] = padded[b, top : top + size, left : left + size]
    return out


# ----- flip: a horizontal flip with probability 1/2 -----
def _draw_flip(rng: np.random.Generator, geometry: Geometry) -> Sequence[float]:
    return [float(rng.random() < 0.5)]


def _flip(images: torch.Tensor, params: np.ndarray, geometry: Geometry) -> torch.Tensor:
    out = images.clone()
    for b in np.flatnonzero(params[:, 0]).tolist():
        out[b] = images[b].flip(1)
    return out


# ----- colour: brightness, contrast and saturation factors in [0.6, 1.4] (PIL's ImageEnhance, batched) -----
def _draw_colour(rng: np.random.Generator, geometry: Geometry) -> Sequence[float]:
    return rng.uniform(0.6, 1.4, size=3).tolist()


def _colour(images: torch.Tensor, params: np.ndarray, geometry: Geometry) -> torch.Tensor:
    x = images.float()
    factor = torch.as_tensor(params, dtype=torch.float32, device=images.device).view(-1, 3, 1, 1, 1).unbind(1)
    x = x * factor[0]
    grey = x @ x.new_tensor([0.299, 0.587, 0.114])  # (B, H, W): ITU-R 601 luma, as PIL's "L"
    mean = grey.mean(dim=(1, 2), keepdim=True).unsqueeze(-1)
    x = (x - mean) * factor[1] + mean
    grey = (x @ x.new_tensor([0.299, 0.587, 0.114])).unsqueeze(-1)
    x = (x - grey) * factor[2] + grey
    return x.round_().clamp_(0, 255).to(torch.uint8)


# ----- rotate: a rotation by up to 30 degrees about the centre, edges mirrored -----
def _draw_rotate(rng: np.random.Generator, geometry: Geometry) -> Sequence[float]:
    return [rng.uniform(-30.0, 30.0)]


def _rotate(images: torch.Tensor, params: np.ndarray, geometry: Geometry) -> torch.Tensor:
    angle = torch.as_tensor(np.radians(params[:, 0]), dtype=torch.float32, device=images.device)
    cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)  # (B, 2, 3)
    x = images.permute(0, 3, 1, 2).float()
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    x = torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


# ----- erase: a grey square of 20-40 % of the side, anywhere on the face (Cutout) -----
def _draw_erase(rng: np.random.Generator, geometry: Geometry) -> Sequence[float]:
    side = int(rng.integers(math.ceil(0.2 * geometry.size), math.floor(0.4 * geometry.size) + 1))
    return [side, *rng.integers(0, geometry.size - side + 1, size=2).tolist()]


def _erase(images: torch.Tensor, params: np.ndarray, geometry: Geometry) -> torch.Tensor:
    out = images.clone()
    for b, (side, top, left) in enumerate(params.astype(int).tolist()):
        out[b, top : top + side, left : left + side] = 128
    return out


#: name -> operation; a view (`BatchAugment(views=...)`) is a sequence of these names.
OPERATIONS: dict[str, Operation] = {
    "crop": Operation(2, _draw_crop, _crop),
    "flip": Operation(1, _draw_flip, _flip),
    "colour": Operation(3, _draw_colour, _colour),
    "rotate": Operation(1, _draw_rotate, _rotate),
    "erase": Operation(3, _draw_erase, _erase),
}
#: The training view of every mode (the paper's augmentation) and the strong view of consistency training.
WEAK = ("crop", "flip")
STRONG = ("crop", "flip", "colour", "rotate", "erase")
VIEWS = {"weak": WEAK, "strong": STRONG}  # the choices of `train_augmentation`
TRAIN_VIEW = "pixel_values"  # the view every mode trains on; other views arrive as "<name>_pixel_values"


def params_key(view: str) -> str:
    return f"{view}_params"


def view_key(view: str) -> str:
    return view if view == TRAIN_VIEW else f"{view}_pixel_values"


class BatchAugment:
    """Configured once; `__call__(image, sample_index)` in the worker (decode, draw), `apply(batch)` on the device.

    Args:
        image_size: The model's input side; faces are resized to it (bilinear) when decoded.
        image_mean, image_std: The image processor's normalisation.
        padding: Reflect padding of the random crop, as a fraction of the side.
        seed: With the epoch and the sample index, the seed of every random parameter.
        views: Name -> operations; `TRAIN_VIEW` is the training view (`WEAK` by default). Each other view draws
            from its own stream, so adding one leaves the training view's draws unchanged.

    Call `set_epoch(e)` before creating the iterator of epoch `e` (the epoch is shared with worker processes).
    """

    def __init__(
        self,
        image_size: int,
        image_mean: Sequence[float],
        image_std: Sequence[float],
        padding: float = 0.125,
        seed: int = 0,
        views: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.geometry = Geometry(int(image_size), round(padding * int(image_size)))
        self.seed = int(seed)
        self.views = {TRAIN_VIEW: WEAK, **(views or {})}
        unknown = sorted({op for ops in self.views.values() for op in ops} - OPERATIONS.keys())
        if unknown:
            raise ValueError(f"unknown augmentation operation(s) {unknown}; known: {', '.join(OPERATIONS)}")
        std = torch.as_tensor(image_std, dtype=torch.float32).reshape(-1, 1, 1)
        # (x / 255 - mean) / std as one multiply and one subtract
        mean = torch.as_tensor(image_mean, dtype=torch.float32).reshape(-1, 1, 1)
        self._scale, self._shift = 1.0 / (255.0 * std), mean / std
        self._epoch = torch.zeros((), dtype=torch.long).share_memory_()

    @property
    def epoch(self) -> int:
        return int(self._epoch.item())

    def set_epoch(self, epoch: int) -> None:
        """Change the epoch everywhere: the tensor is shared with worker processes."""
        self._epoch.fill_(int(epoch))

    # ----- in the worker -----
    def __call__(self, image: PILImage.Image, sample_index: int = 0) -> dict[str, Any]:
        """RGB at the input size as (H, W, 3) uint8, and each view's parameters for this sample and epoch."""
        size = self.geometry.size
        image = to_rgb(image)
        if image.size != (size, size):
            image = image.resize((size, size), PILImage.Resampling.BILINEAR)
        item: dict[str, Any] = {TRAIN_VIEW: torch.from_numpy(np.array(image))}
        for stream, (name, operations) in enumerate(self.views.items()):
            rng = np.random.default_rng([self.seed, self.epoch, int(sample_index), *([stream] if stream else [])])
            drawn = [value for op in operations for value in OPERATIONS[op].draw(rng, self.geometry)]
            item[params_key(name)] = np.asarray(drawn, dtype=np.float64)
        return item

    # ----- on the training device -----
    def apply(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """The batch with each view's normalised (B, 3, H, W) float pixels in place of the uint8 faces and the
        parameters (`TRAIN_VIEW` as "pixel_values", another view as "<name>_pixel_values")."""
        faces = batch[TRAIN_VIEW]
        out = {key: value for key, value in batch.items() if not key.endswith("_params")}
        for name, operations in self.views.items():
            images, params, column = faces, np.asarray(batch[params_key(name)]), 0
            for op in operations:
                operation = OPERATIONS[op]
                images = operation.apply(images, params[:, column : column + operation.width], self.geometry)
                column += operation.width
            out[view_key(name)] = self.normalise(images)
        return out

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """(B, H, W, 3) uint8 -> (B, 3, H, W) float32, (x / 255 - mean) / std as the image processor computes it."""
        batch, height, width, channels = images.shape
        out = torch.empty(batch, channels, height, width, dtype=torch.float32, device=images.device)
        out.copy_(images.permute(0, 3, 1, 2))
        return out.mul_(self._scale.to(out.device)).sub_(self._shift.to(out.device))
