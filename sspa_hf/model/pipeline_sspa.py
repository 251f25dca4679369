"""The image-classification pipeline saved with every model: transformers' own, with this project's RGB conversion.

transformers' `load_image` converts with PIL's `convert("RGB")` before the image processor sees the image, which
clips 16-bit images; this pipeline converts with `to_rgb` instead, as training and sspa-predict do. Saved models
name it in `config.custom_pipelines`, so `pipeline("image-classification", model=..., trust_remote_code=True)`
runs it. Copied into every saved model folder, so it imports nothing from ``sspa_hf`` but `pixels`.
"""

from __future__ import annotations

from typing import Any

from PIL import Image, ImageOps
from transformers import ImageClassificationPipeline

from .pixels import to_rgb

TASK = "image-classification"
#: What a model config names under `custom_pipelines` (read by `transformers.pipeline`).
CUSTOM_PIPELINES = {
    TASK: {
        "impl": "pipeline_sspa.SSPAImageClassificationPipeline",
        "pt": ["AutoModelForImageClassification"],
        "tf": [],
        "type": "image",
    }
}


def load_rgb(image: Any) -> Any:
    """A path or PIL image, decoded, upright by its EXIF orientation and in RGB (`to_rgb`); arrays pass through."""
    if isinstance(image, str):
        with Image.open(image) as opened:
            opened.load()
            image = opened.copy() if opened.getexif().get(0x0112, 1) == 1 else ImageOps.exif_transpose(opened)
    elif isinstance(image, Image.Image) and image.getexif().get(0x0112, 1) != 1:
        image = ImageOps.exif_transpose(image)
    return to_rgb(image) if isinstance(image, Image.Image) else image


class SSPAImageClassificationPipeline(ImageClassificationPipeline):
    """`ImageClassificationPipeline` whose images are converted to RGB by `to_rgb`, not by PIL's clipping convert."""

    def preprocess(self, image: Any, timeout: float | None = None) -> Any:
        if isinstance(image, str) and image.startswith(("http://", "https://", "data:")):
            return super().preprocess(image, timeout=timeout)
        model_inputs = self.image_processor(images=load_rgb(image), return_tensors="pt")
        return model_inputs.to(self.dtype)
