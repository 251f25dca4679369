"""The image processor saved beside every model: resize to the model's input size, RGB, normalise."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import ViTImageProcessorPil

# ImageNet statistics: what MS-Celeb-1M and ImageNet ResNet-18 checkpoints used by FER work were trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def make_image_processor(
    image_size: int, image_mean: Sequence[float] = IMAGENET_MEAN, image_std: Sequence[float] = IMAGENET_STD
) -> ViTImageProcessorPil:
    """Square resize (bilinear), grayscale/RGBA/palette to RGB, rescale to [0, 1], normalise.

    Saved under the type name "ViTImageProcessor", so `AutoImageProcessor` and `pipeline` load it with either the
    PIL or the torchvision backend.
    """
    from transformers import ViTImageProcessorPil  # 2 s of imports: not for the argument dataclasses' constants

    return ViTImageProcessorPil(
        do_resize=True,
        size={"height": image_size, "width": image_size},
        do_rescale=True,
        do_normalize=True,
        image_mean=list(image_mean),
        image_std=list(image_std),
        do_convert_rgb=True,
    )
