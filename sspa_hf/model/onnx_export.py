"""ONNX export of a saved SSPA model: pixel_values (N, 3, S, S) in, the pipeline's logits (N, C) out.

The TorchScript-based exporter (`dynamo=False`) is used: it needs only the `onnx` package (the dynamo exporter
also needs `onnxscript`), traces this model's plain tensor code completely, and writes one file with the weights.
ARM's batch mean is its running buffer in eval mode, so the exported graph is batch-independent.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

#: Opset 17: supported by every onnxruntime release since 1.13.
OPSET = 17
INPUT_NAME, OUTPUT_NAME = "pixel_values", "logits"


class LogitsOnly(nn.Module):
    """The model's `logits` (log of the mean expert probability; softmax gives the pipeline's scores)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).logits


def export_onnx(model: Any, output: str | Path, opset: int = OPSET) -> Path:
    """Write `model` (eval mode) as ONNX with a dynamic batch axis; returns the path written."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    side = int(model.config.image_size)
    example = torch.zeros(2, 3, side, side)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(
            LogitsOnly(model).eval(),  # the exporter restores the wrapper's mode, and with it the model's
            (example,),
            str(output),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
    return output


def onnx_probabilities(path: str | Path, pixel_values: Any) -> Any:
    """Softmax of the exported logits for a float32 (N, 3, S, S) array, with onnxruntime on the CPU."""
    import numpy as np
    import onnxruntime

    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise OSError(f"onnxruntime cannot load {path}: {exc}") from None
    logits = session.run([OUTPUT_NAME], {INPUT_NAME: np.asarray(pixel_values, dtype=np.float32)})[0]
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def parity(model: Any, path: str | Path, batch: int, seed: int = 0) -> float:
    """Max absolute difference between onnxruntime's and PyTorch's probabilities on a random batch."""
    import numpy as np

    side = int(model.config.image_size)
    pixel_values = torch.randn(batch, 3, side, side, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = model.eval()(pixel_values=pixel_values).logits.softmax(-1).numpy()
    return float(np.abs(onnx_probabilities(path, pixel_values.numpy()) - expected).max())
