"""Load pretrained backbone weights: torchvision-style ResNet state dicts (MS-Celeb-1M, ImageNet) or Hub models.

FER repos ship ResNet-18 checkpoints as ``{"state_dict": ...}``, with ``module.``-prefixed keys, or bare. Any
of the three loads here; a key that does not find its place is an error, never a silent partial load.
"""

from __future__ import annotations

import logging
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import UserInputError, first_line
from .modeling_sspa import SSPAForImageClassification

logger = logging.getLogger(__name__)

# torchvision's classifier (and identity-classifier) heads: not part of the backbone, dropped on purpose.
_HEAD_KEY = re.compile(r"^(fc|classifier|logits)\.")
_BLOCK_KEY = re.compile(r"^layer(\d+)\.(\d+)\.(conv|bn)(\d+)\.(.+)$")
_SHORTCUT_KEY = re.compile(r"^layer(\d+)\.(\d+)\.downsample\.([01])\.(.+)$")
_STEM_KEY = re.compile(r"^(conv1|bn1)\.(.+)$")


@dataclass
class LoadReport:
    """What happened to each key of a loaded state dict."""

    loaded: list[str] = field(default_factory=list)
    dropped_head: list[str] = field(default_factory=list)


def torchvision_to_transformers(key: str) -> str | None:
    """Map a torchvision ResNet key onto transformers' `ResNetModel` layout; None for a key of another layout."""
    if match := _STEM_KEY.match(key):
        part = "convolution" if match[1] == "conv1" else "normalization"
        return f"embedder.embedder.{part}.{match[2]}"
    if match := _BLOCK_KEY.match(key):
        stage, block, kind, index, rest = int(match[1]) - 1, match[2], match[3], int(match[4]) - 1, match[5]
        part = "convolution" if kind == "conv" else "normalization"
        return f"encoder.stages.{stage}.layers.{block}.layer.{index}.{part}.{rest}"
    if match := _SHORTCUT_KEY.match(key):
        stage, block, index, rest = int(match[1]) - 1, match[2], match[3], match[4]
        part = "convolution" if index == "0" else "normalization"
        return f"encoder.stages.{stage}.layers.{block}.shortcut.{part}.{rest}"
    return None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file or a torch checkpoint with `weights_only=True`; unwrap `state_dict`/`module.`."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"backbone weights: no such file {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            obj = load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types for a corrupt header
            raise UserInputError(f"backbone weights: {path} is not a readable safetensors file ({exc})") from exc
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
            raise UserInputError(
                f"backbone weights: {path} is not a state dict that loads with weights_only=True ({first_line(exc)}); "
                "arbitrary pickled objects are refused"
            ) from exc
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj:
        raise UserInputError(f"backbone weights: {path} holds a {type(obj).__name__}, not a state dict")
    bad = [key for key, value in obj.items() if not isinstance(key, str) or not isinstance(value, torch.Tensor)]
    if bad:
        raise UserInputError(f"backbone weights: {path} is not a state dict (entry {bad[0]!r} is not a tensor)")
    return {key.removeprefix("module."): value for key, value in obj.items()}


def load_backbone_weights(model: SSPAForImageClassification, path: str | Path) -> LoadReport:
    """Load a torchvision-style (or transformers-style) ResNet state dict into `model.resnet`, strictly.

    Every backbone parameter must be filled and every key of the file must be used (its classifier head
    aside); otherwise the error lists the missing, unexpected and mis-shaped keys.
    """
    state = read_state_dict(path)
    target = model.resnet.state_dict()
    report, converted, unexpected = LoadReport(), {}, []
    for key, value in state.items():
        if _HEAD_KEY.match(key):
            report.dropped_head.append(key)
            continue
        bare = key.removeprefix("resnet.")  # a transformers ResNet state dict needs no conversion
        name = bare if bare in target else torchvision_to_transformers(key)
        if name is None or name not in target:
            unexpected.append(key)
        else:
            converted[name] = (key, value)
    missing = sorted(set(target) - set(converted))
    mismatched = [
        f"{src} {tuple(value.shape)} -> {name} {tuple(target[name].shape)}"
        for name, (src, value) in converted.items()
        if value.shape != target[name].shape
    ]
    if missing or unexpected or mismatched:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if keys:
                more = f" (+{len(keys) - 5} more)" if len(keys) > 5 else ""
                parts.append(f"{len(keys)} {label}: {', '.join(keys[:5])}{more}")
        layout = model.config.backbone_config
        raise UserInputError(
            f"backbone weights: {path} does not fit the configured backbone "
            f"(hidden_sizes={layout.hidden_sizes}, depths={layout.depths}): " + "; ".join(parts)
        )
    model.resnet.load_state_dict({name: value for name, (_, value) in converted.items()}, strict=True)
    report.loaded = sorted(converted)
    logger.warning(
        "Loaded %d backbone tensors from %s; dropped its classifier head (%s).",
        len(report.loaded),
        path,
        ", ".join(report.dropped_head) or "none",
    )
    return report


def load_hub_backbone(model: SSPAForImageClassification, name_or_path: str) -> None:
    """Copy the weights of a transformers ResNet (e.g. "microsoft/resnet-18") into `model.resnet`.

    The model must have been built with that checkpoint's `ResNetConfig` (see `SSPAConfig(backbone_config=...)`).
    """
    from transformers import ResNetModel

    source = ResNetModel.from_pretrained(name_or_path)
    missing, unexpected = model.resnet.load_state_dict(source.state_dict(), strict=False)
    if missing or unexpected:
        raise UserInputError(
            f"backbone {name_or_path!r} does not fit the configured backbone: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
