"""How trained FERPlus models hold up on shifted faces: the validation faces rotated, blurred, cropped, darkened.

A proxy for faces from other data sets (which this project does not hold): each run's saved model sees every
validation face after one fixed, deterministic change, through its own image processor (what `pipeline` does).
Prints a table of accuracy / macro F1 / mean-class accuracy per run and change; writes it as JSON with --json.

    python benchmarks/ferplus/robustness.py RUN [RUN ...] [--data /work/ferplus_data/target] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from datasets import load_from_disk
from PIL import Image, ImageEnhance, ImageFilter

from sspa_hf.data.images import to_rgb
from sspa_hf.evaluation.metrics import classification_metrics

CHANGES: dict[str, Callable[[Image.Image], Image.Image]] = {
    "none": lambda im: im,
    "rotated 20 degrees": lambda im: im.rotate(20, resample=Image.Resampling.BILINEAR),
    "blurred (radius 1.5 px)": lambda im: im.filter(ImageFilter.GaussianBlur(1.5)),
    "cropped to the central 75 %": lambda im: im.crop(
        (im.width // 8, im.height // 8, im.width - im.width // 8, im.height - im.height // 8)
    ),
    "zoomed out (12 px border)": lambda im: _zoom_out(im, 12),
    "darker, less contrast": lambda im: ImageEnhance.Contrast(ImageEnhance.Brightness(im).enhance(0.6)).enhance(0.6),
}


def _zoom_out(image: Image.Image, border: int) -> Image.Image:
    canvas = Image.new("RGB", (image.width + 2 * border, image.height + 2 * border), (128, 128, 128))
    canvas.paste(image, (border, border))
    return canvas


def scores(run: Path, faces: list[Image.Image], labels: np.ndarray, names: list[str]) -> dict[str, dict]:
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    model = AutoModelForImageClassification.from_pretrained(run, trust_remote_code=True).eval()
    processor = AutoImageProcessor.from_pretrained(run, trust_remote_code=True)
    out = {}
    for change, apply in CHANGES.items():
        predictions = []
        with torch.no_grad():
            for start in range(0, len(faces), 256):
                batch = [apply(face) for face in faces[start : start + 256]]
                pixels = processor(images=batch, return_tensors="pt")["pixel_values"]
                predictions.append(model(pixel_values=pixels).logits.argmax(-1).numpy())
        metrics = classification_metrics(labels, np.concatenate(predictions), len(names), names)
        out[change] = {k: round(100 * metrics[k], 2) for k in ("accuracy", "macro_f1", "macro_recall")}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="saved model folders (sspa-train output_dir)")
    parser.add_argument("--data", type=Path, default=Path("benchmarks/out/ferplus/target"))
    parser.add_argument("--split", default="test", help="the prepared target's validation faces")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    split = load_from_disk(str(args.data))[args.split]
    names = split.features["label"].names
    faces = [to_rgb(image) for image in split["image"]]
    labels = np.asarray(split["label"])
    results = {str(run): scores(run, faces, labels, names) for run in args.runs}
    print("| run | change | accuracy | macro F1 | mean-class accuracy |\n| --- | --- | --- | --- | --- |")
    for run, table in results.items():
        for change, m in table.items():
            print(f"| {run} | {change} | {m['accuracy']:.2f} | {m['macro_f1']:.2f} | {m['macro_recall']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
