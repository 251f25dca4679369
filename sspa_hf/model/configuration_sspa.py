"""Configuration of the SSPA-JT model: backbone (ResNet or ARM), Mixture-of-Experts head, input size.

This file is copied into every saved model folder (``auto_map``), so it imports nothing from ``sspa_hf``.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from transformers import PretrainedConfig, ResNetConfig

# Canonical expression order; the same tuple as sspa_hf.labels.EXPRESSIONS (repeated here so that this file
# stays self-contained when loaded with trust_remote_code=True).
_EXPRESSIONS = ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")
BACKBONES = ("resnet", "arm")
# ARM's PixelShuffle(16) folds 256 channels into one; de-albino convolution kernel and stride (Shi et al. 2021).
ARM_UPSCALE, ARM_KERNEL, ARM_STRIDE = 16, 32, 8


#: The ResNet-18 layout (basic blocks, 2-2-2-2), the default backbone (and the `ModelArguments` defaults).
RESNET18: dict[str, Any] = {
    "layer_type": "basic",
    "depths": [2, 2, 2, 2],
    "hidden_sizes": [64, 128, 256, 512],
    "embedding_size": 64,
}


def resnet18_config(**overrides: Any) -> ResNetConfig:
    """The ResNet-18 layout as a transformers `ResNetConfig`."""
    return ResNetConfig(**{**RESNET18, **overrides})


def resnet_output_size(backbone: ResNetConfig, image_size: int) -> int:
    """Spatial side of ResNet's last feature map for a square input (stem conv s2, max-pool s2, strided stages)."""
    side = (image_size + 2 * 3 - 7) // 2 + 1  # 7x7 conv, stride 2, padding 3
    side = (side + 2 * 1 - 3) // 2 + 1  # 3x3 max-pool, stride 2, padding 1
    for stage in range(len(backbone.depths)):
        if stage > 0 or backbone.downsample_in_first_stage:
            side = (side + 2 * 1 - 3) // 2 + 1  # 3x3 (or 1x1 shortcut) conv with stride 2
    return side


class SSPAConfig(PretrainedConfig):
    """Config of `SSPAForImageClassification`.

    Args:
        backbone: "resnet" (global average-pooled ResNet feature) or "arm" (ARM de-albino + affinity feature).
        backbone_config: a `ResNetConfig` or its dict; ResNet-18 by default.
        num_experts: k, the number of experts of the Mixture-of-Experts head (1 = a plain linear classifier).
        image_size: square input side in pixels; ARM's feature size follows it.
        arm_momentum: momentum of ARM's running batch mean (like BatchNorm's), used in eval mode.
        standard_transition: learn a C x C matrix M[y, j] = P(auxiliary label y | target-standard class j) that
            explains the auxiliary labels during training (selection_mode "transition"); unused at inference.
        logit_adjustment: C numbers added to the logits (Menon et al. 2021's logit adjustment; selection_mode
            "transition_pam" sets it), so that `pipeline`, `sspa-eval` and ONNX predict with it; None: none.
    """

    model_type = "sspa"
    sub_configs = {"backbone_config": ResNetConfig}  # saved as a nested dict, loaded back as a ResNetConfig
    # Only `logits` is gathered at evaluation (Trainer.predict); the rest of SSPAOutput stays on the device.
    keys_to_ignore_at_inference = ["expert_logits", "expert_probs", "gate", "features", "auxiliary_log_probs"]

    def __init__(
        self,
        backbone: str = "resnet",
        backbone_config: ResNetConfig | dict | None = None,
        num_experts: int = 3,
        image_size: int = 224,
        arm_momentum: float = 0.1,
        standard_transition: bool = False,
        logit_adjustment: list[float] | None = None,
        **kwargs: Any,
    ) -> None:
        if "id2label" not in kwargs and "num_labels" not in kwargs:
            kwargs["id2label"] = dict(enumerate(_EXPRESSIONS))
        super().__init__(**kwargs)
        if self.id2label and not getattr(self, "label2id", None):  # transformers 5 leaves it None: name -> id
            self.label2id = {name: int(i) for i, name in self.id2label.items()}
        if backbone not in BACKBONES:
            raise ValueError(f"SSPAConfig: unknown backbone {backbone!r}; expected one of {BACKBONES}")
        if not isinstance(num_experts, int) or num_experts < 1:
            raise ValueError(f"SSPAConfig: num_experts must be an integer >= 1, got {num_experts!r}")
        if isinstance(backbone_config, dict):
            backbone_config = ResNetConfig(**backbone_config)
        self.backbone = backbone
        self.backbone_config = backbone_config if backbone_config is not None else resnet18_config()
        self.num_experts = num_experts
        self.image_size = image_size
        self.arm_momentum = arm_momentum
        self.standard_transition = bool(standard_transition)
        if logit_adjustment is not None and len(logit_adjustment) != self.num_labels:
            raise ValueError(
                f"SSPAConfig: logit_adjustment needs one number per class ({self.num_labels}), "
                f"got {len(logit_adjustment)}"
            )
        self.logit_adjustment = None if logit_adjustment is None else [float(v) for v in logit_adjustment]
        if backbone == "arm":
            self.arm_feature_side()  # validates channels and input size early, with a message naming them
        register_model_class()

    def arm_feature_side(self) -> int:
        """Side of ARM's square affinity map: ResNet map x16 (PixelShuffle), then the de-albino conv."""
        channels = self.backbone_config.hidden_sizes[-1]
        if channels % (ARM_UPSCALE**2):
            raise ValueError(
                f"SSPAConfig: ARM needs the last ResNet stage to have a multiple of {ARM_UPSCALE**2} channels "
                f"(PixelShuffle({ARM_UPSCALE})), got hidden_sizes[-1]={channels}"
            )
        shuffled = resnet_output_size(self.backbone_config, self.image_size) * ARM_UPSCALE
        if shuffled < ARM_KERNEL:
            raise ValueError(
                f"SSPAConfig: image_size={self.image_size} is too small for ARM (the shuffled map is {shuffled} px, "
                f"the de-albino kernel {ARM_KERNEL} px); use image_size >= 48"
            )
        return (shuffled - ARM_KERNEL) // ARM_STRIDE + 1

    @property
    def feature_dim(self) -> int:
        """Length of the feature vector f fed to the MoE head (512 for ResNet-18; 121 for ARM at 224 px)."""
        if self.backbone == "arm":
            return self.arm_feature_side() ** 2
        return self.backbone_config.hidden_sizes[-1]


def register_model_class() -> None:
    """Import the installed package's model module, which registers `SSPAForImageClassification` with
    `AutoModelForImageClassification`: every Auto path (`from_pretrained`, `from_config`, `pipeline`) makes the
    config before it looks the model class up, so `import sspa_hf` need not import the model. A saved folder's copy
    of this file (trust_remote_code) leaves it to the folder's `auto_map`."""
    model_module = f"{__package__}.modeling_sspa"
    if (__package__ or "").startswith("sspa_hf.") and model_module not in sys.modules:
        importlib.import_module(model_module)
