"""SSPA-JT model: a ResNet or ARM feature extractor and the Mixture-of-Experts head of the paper (Eq. 1-2).

This file is copied into every saved model folder (``auto_map``), so it imports only transformers, torch and
its siblings ``configuration_sspa`` and ``pipeline_sspa`` (copied with it: the pipeline saved models name).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForImageClassification, PreTrainedModel, ResNetModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_sspa import ARM_KERNEL, ARM_STRIDE, ARM_UPSCALE, SSPAConfig
from .pipeline_sspa import CUSTOM_PIPELINES

TRANSITION_INIT = 3.0  # diagonal logit of the standard transition at initialisation


@dataclass
class SSPAOutput(ModelOutput):
    """Output of `SSPAForImageClassification`.

    `logits` are log(mean_i p_i), so softmax(logits) is the mean of the k expert probabilities (our test-time
    combination; the paper does not say how the experts combine at inference).
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    expert_logits: torch.Tensor | None = None  # (batch, k, C): FFN_i(f) * w_i, the argument of Eq. 2's softmax
    expert_probs: torch.Tensor | None = None  # (batch, k, C): p_i
    gate: torch.Tensor | None = None  # (batch, k): w
    features: torch.Tensor | None = None  # (batch, D): f
    auxiliary_log_probs: torch.Tensor | None = None  # (batch, k, C): log sum_j M[y, j] p_i(j), with a transition


class MixtureOfExperts(nn.Module):
    """Gate w = softmax(Linear(f)) over k experts (Eq. 1); expert i scores FFN_i(f) * w_i (Eq. 2, before softmax).

    The k single-layer experts are stored as one (k*C x D) linear map: row block i is expert i.
    """

    def __init__(self, feature_dim: int, num_labels: int, num_experts: int) -> None:
        super().__init__()
        self.num_experts, self.num_labels = num_experts, num_labels
        self.gate = nn.Linear(feature_dim, num_experts)
        self.experts = nn.Linear(feature_dim, num_experts * num_labels)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gate = self.gate(features).softmax(dim=-1)  # Eq. 1
        scores = self.experts(features).view(-1, self.num_experts, self.num_labels)
        return scores * gate.unsqueeze(-1), gate  # Eq. 2: p_i = softmax(FFN_i(f) * w_i)


class ARMFeature(nn.Module):
    """ARM (Shi et al. 2021): PixelShuffle(16), a shared single-channel de-albino conv, BatchNorm, affinity.

    The affinity adds `alpha` times the batch mean of the map. The published code averages over whatever batch
    it is given, also at test time; here the batch mean is tracked as a running buffer during training and the
    buffer is used in eval mode, so a face's prediction never depends on the other faces in the batch. With
    `sync_across_processes` (set by the trainer's `sync_batch_stats`) the training batch mean is over all processes.
    """

    sync_across_processes: bool = False

    def __init__(self, in_channels: int, side: int, momentum: float) -> None:
        super().__init__()
        self.shuffle = nn.PixelShuffle(ARM_UPSCALE)
        self.channels = in_channels // ARM_UPSCALE**2
        self.de_albino = nn.Conv2d(1, 1, kernel_size=ARM_KERNEL, stride=ARM_STRIDE, bias=False)
        self.norm = nn.BatchNorm2d(self.channels)
        self.alpha = nn.Parameter(torch.ones(1))
        self.momentum = momentum
        self.register_buffer("running_batch_mean", torch.zeros(side, side))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x = self.shuffle(hidden)
        batch, channels, height, width = x.shape
        x = self.de_albino(x.reshape(batch * channels, 1, height, width))  # the same kernel on every channel
        x = self.norm(x.reshape(batch, channels, *x.shape[-2:]))
        if self.training:
            batch_mean = _mean_across_processes(x) if self.sync_across_processes else x.mean(dim=(0, 1))
            with torch.no_grad():
                self.running_batch_mean.lerp_(batch_mean.detach().to(self.running_batch_mean.dtype), self.momentum)
        else:
            batch_mean = self.running_batch_mean.to(x.dtype)
        return (x.mean(dim=1) + self.alpha * batch_mean).flatten(1)


def _mean_across_processes(x: torch.Tensor) -> torch.Tensor:
    """x.mean(dim=(0, 1)) over the batches of all processes; gradients flow back to every process's samples."""
    from torch.distributed.nn.functional import all_reduce

    total = all_reduce(x.sum(dim=(0, 1)))
    count = torch.tensor(float(x.shape[0] * x.shape[1]), device=x.device)
    torch.distributed.all_reduce(count)
    return total / count


class SSPAPreTrainedModel(PreTrainedModel):
    """Weight initialisation and loading glue shared by SSPA models."""

    config: SSPAConfig
    config_class = SSPAConfig
    base_model_prefix = "sspa"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    _no_split_modules = ["ResNetConvLayer", "ResNetShortCut"]

    def _init_weights(self, module: nn.Module) -> None:
        """ResNet's own scheme (kaiming conv, unit BatchNorm, torch-default linear); ARM's buffer and alpha."""
        if isinstance(module, nn.Conv2d):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.Linear):
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                bound = 1 / math.sqrt(module.weight.shape[1])
                init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, nn.BatchNorm2d):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)
            if module.num_batches_tracked is not None:
                init.zeros_(module.num_batches_tracked)
        elif isinstance(module, ARMFeature):
            init.ones_(module.alpha)
            init.zeros_(module.running_batch_mean)
        elif getattr(module, "standard_transition", None) is not None:  # starts near identity: P(y = j | j) ~ 0.77
            with torch.no_grad():
                module.standard_transition.copy_(TRANSITION_INIT * torch.eye(module.config.num_labels))


class SSPAForImageClassification(SSPAPreTrainedModel):
    """Feature extractor E (ResNet or ARM) + MoE head; returns the k expert predictions and their mean."""

    # forward() takes no **kwargs and returns a per-batch mean loss: the Trainer must divide it by the
    # gradient-accumulation steps itself (it does so only when the model does not accept loss kwargs).
    accepts_loss_kwargs = False

    def __init__(self, config: SSPAConfig) -> None:
        super().__init__(config)
        if not getattr(config, "custom_pipelines", None):  # pipeline(..., trust_remote_code=True) runs ours
            config.custom_pipelines = copy.deepcopy(CUSTOM_PIPELINES)
        self.resnet = ResNetModel(config.backbone_config)
        self.arm = None
        if config.backbone == "arm":
            self.arm = ARMFeature(
                config.backbone_config.hidden_sizes[-1], config.arm_feature_side(), config.arm_momentum
            )
        self.moe = MixtureOfExperts(config.feature_dim, config.num_labels, config.num_experts)
        self.standard_transition = None
        if config.standard_transition:  # logits of M[y, j] = P(auxiliary label y | target-standard class j)
            self.standard_transition = nn.Parameter(torch.zeros(config.num_labels, config.num_labels))
        self.post_init()

    def extract_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """f: the pooled ResNet feature, or ARM's flattened affinity map."""
        out = self.resnet(pixel_values, return_dict=True)
        if self.arm is None:
            return out.pooler_output.flatten(1)
        return self.arm(out.last_hidden_state)

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
    ) -> SSPAOutput | tuple:
        features = self.extract_features(pixel_values)
        expert_logits, gate = self.moe(features)
        expert_log_probs = expert_logits.float().log_softmax(dim=-1)
        logits = torch.logsumexp(expert_log_probs, dim=1) - math.log(self.config.num_experts)
        if self.config.logit_adjustment is not None:  # predictions only: the losses read the experts' logits
            logits = logits + torch.tensor(self.config.logit_adjustment, dtype=logits.dtype, device=logits.device)
        loss = None
        if labels is not None:
            loss = expert_cross_entropy(expert_logits, labels).mean()
        auxiliary_log_probs = None
        if self.standard_transition is not None:  # log P(auxiliary label | x) = log sum_j M[y, j] p_i(j)
            log_m = self.standard_transition.float().log_softmax(dim=0)
            auxiliary_log_probs = torch.logsumexp(expert_log_probs.unsqueeze(-2) + log_m, dim=-1)
        output = SSPAOutput(
            loss=loss,
            logits=logits,
            expert_logits=expert_logits,
            expert_probs=expert_log_probs.exp(),
            gate=gate,
            features=features,
            auxiliary_log_probs=auxiliary_log_probs,
        )
        return output if return_dict is not False else output.to_tuple()


def expert_cross_entropy(
    expert_logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Per-sample (1/k) sum_i CE(p_i, y), the loss of Algorithm 3 lines 11 and 22; shape (batch,).

    `label_smoothing` (the paper's is 0) smooths each expert's target, as `TrainingArguments.label_smoothing_factor`.
    """
    batch, k, classes = expert_logits.shape
    per_expert = F.cross_entropy(
        expert_logits.float().reshape(batch * k, classes),
        labels.repeat_interleave(k),
        reduction="none",
        label_smoothing=label_smoothing,
    )
    return per_expert.view(batch, k).mean(dim=1)


def transition_nll(auxiliary_log_probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample -log sum_j M[y, j] p_i(j), averaged over the k experts (selection_mode 'transition'); (batch,)."""
    index = labels.view(-1, 1, 1).expand(-1, auxiliary_log_probs.shape[1], 1)
    return -auxiliary_log_probs.gather(2, index).squeeze(2).mean(dim=1)


# What the model class adds to the Auto classes: `AutoModelForImageClassification` finds it from an SSPAConfig, and
# `save_pretrained` writes it into `auto_map`. Done on import, which the first SSPAConfig triggers (configuration_sspa).
AutoModelForImageClassification.register(SSPAConfig, SSPAForImageClassification, exist_ok=True)
SSPAForImageClassification.register_for_auto_class("AutoModelForImageClassification")
