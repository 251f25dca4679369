"""One image path: `pipeline(..., trust_remote_code=True)` and sspa-predict convert every image to RGB the same way
as training does (`sspa_hf.model.pixels.to_rgb`), 16-bit grey PNGs included."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import TINY_BACKBONE as TINY
from PIL import Image

from sspa_hf import SSPAConfig, SSPAForImageClassification, make_image_processor
from sspa_hf.commands import predict as predict_command
from sspa_hf.model.pixels import to_rgb


def test_a_16_bit_grey_png_scores_the_same_through_pipeline_and_sspa_predict(tmp_path):
    from transformers import pipeline

    torch.manual_seed(3)
    model = SSPAForImageClassification(SSPAConfig(backbone_config=TINY, image_size=48)).eval()
    with torch.no_grad():
        model.moe.experts.weight.mul_(30)
    model.save_pretrained(tmp_path / "model")
    make_image_processor(48).save_pretrained(tmp_path / "model")
    assert (tmp_path / "model" / "pipeline_sspa.py").is_file() and (tmp_path / "model" / "pixels.py").is_file()
    ramp = np.linspace(0, 65535, 48 * 48).reshape(48, 48).astype(np.uint16)  # full 16-bit range
    path = tmp_path / "grey16.png"
    Image.fromarray(ramp).save(path)
    with Image.open(path) as image:
        assert image.mode.startswith("I;16")
        pixels = make_image_processor(48)(to_rgb(image), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        expected = model(pixel_values=pixels).logits.softmax(-1)[0]
    classifier = pipeline("image-classification", model=str(tmp_path / "model"), trust_remote_code=True)
    through_pipeline = {row["label"]: row["score"] for row in classifier(str(path), top_k=7)}
    out = tmp_path / "preds.json"
    assert predict_command.main([str(tmp_path / "model"), str(path), "--top_k", "7", "--output", str(out)]) == 0
    through_predict = {p["label"]: p["score"] for p in json.loads(out.read_text())[0]["predictions"]}
    for i, label in model.config.id2label.items():
        assert through_pipeline[label] == pytest.approx(float(expected[i]), abs=1e-6)
        assert through_predict[label] == pytest.approx(float(expected[i]), abs=1e-6)
