"""The RGB view of any decoded image, the one conversion training, evaluation, sspa-predict and pipeline share.

Copied into every saved model folder beside pipeline_sspa.py, so it imports nothing from ``sspa_hf``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB view of any image: grayscale, palette (with transparency), RGBA, CMYK, 16-bit (top 8 bits kept).

    PIL's own `convert("RGB")` clips 16-bit values at 255, which turns most of a 16-bit photo white."""
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I;16"):
        image = Image.fromarray((np.asarray(image, dtype=np.uint16) >> 8).astype(np.uint8))
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")
