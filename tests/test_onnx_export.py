"""sspa-export-onnx: the exported file, run by onnxruntime, gives PyTorch's probabilities on batches of 1 and 8."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from sspa_hf import SSPAConfig, SSPAForImageClassification, make_image_processor
from sspa_hf.commands import export_onnx as export_command
from sspa_hf.model.onnx_export import onnx_probabilities

#: onnxruntime and PyTorch differ by float32 rounding only (measured: under 1e-7 on these models).
TOLERANCE = 1e-5
BACKBONES = {
    "resnet": {"layer_type": "basic", "depths": [1, 1, 1, 1], "hidden_sizes": [8, 16, 32, 64], "embedding_size": 8},
    "arm": {"layer_type": "basic", "depths": [1, 1, 1, 1], "hidden_sizes": [8, 16, 32, 256], "embedding_size": 8},
}


@pytest.mark.parametrize(
    ("backbone", "experts", "adjustment"),
    [("resnet", 3, None), ("resnet", 1, [0.0, 2.0, -1.0, 0.0, 0.5, 0.0, -3.0]), ("arm", 3, None)],
)
def test_onnx_probabilities_equal_pytorchs_on_batches_of_1_and_8(tmp_path, capsys, backbone, experts, adjustment):
    """`adjustment`: a transition_pam model's logit adjustment travels into the exported file."""
    torch.manual_seed(0)
    config = SSPAConfig(
        backbone=backbone,
        backbone_config=BACKBONES[backbone],
        image_size=64,
        num_experts=experts,
        logit_adjustment=adjustment,
    )
    model = SSPAForImageClassification(config).eval()
    with torch.no_grad():
        model.moe.experts.weight.mul_(30)  # spread the probabilities, so a mismatch shows
        for module in model.modules():  # trained-looking BatchNorm statistics and ARM batch mean
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
        if backbone == "arm":
            model.arm.running_batch_mean.normal_()
    model.save_pretrained(tmp_path / "model")
    make_image_processor(64).save_pretrained(tmp_path / "model")
    out = tmp_path / "model.onnx"
    assert export_command.main([str(tmp_path / "model"), str(out), "--check"]) == 0
    assert "batch 8: max |p_onnx - p_torch|" in capsys.readouterr().out
    pixels = torch.randn(8, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(pixel_values=pixels).logits.softmax(-1).numpy()
    assert not model.training  # exporting left the model in eval mode (the exporter restores the wrapper's mode)
    batch_of_8 = onnx_probabilities(out, pixels.numpy())
    one_by_one = np.concatenate([onnx_probabilities(out, pixels[i : i + 1].numpy()) for i in range(8)])
    assert expected.max() > 2 / 7  # far from uniform (1 / 7), so a mismatch shows
    assert np.abs(batch_of_8 - expected).max() < TOLERANCE
    assert np.abs(one_by_one - expected).max() < TOLERANCE  # batch-independent, ARM included


def test_output_name_and_missing_model_are_one_line_errors(tmp_path, capsys):
    assert export_command.main([str(tmp_path), str(tmp_path / "model.pt")]) == 2
    assert "must end with .onnx" in capsys.readouterr().err
    assert export_command.main([str(tmp_path / "nope"), str(tmp_path / "m.onnx")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
