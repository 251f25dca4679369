"""BatchNorm over the batches of all processes on any backend (gloo included), as one process over the whole batch.

torch's `SyncBatchNorm` runs on CUDA only. `AllReduceBatchNorm` all-reduces each channel's sum, sum of squares and
count with the differentiable `torch.distributed.nn.functional.all_reduce`, so the gradients of the global statistics
reach every process's samples; the counts make uneven batches (an empty one included) weigh by their size.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class AllReduceBatchNorm(_BatchNorm):
    """BatchNorm whose training statistics are those of the global batch; plain BatchNorm in eval or alone."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"AllReduceBatchNorm expects (N, C, ...) input, got {input.dim()} dimensions")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        if not (self.training and distributed and torch.distributed.get_world_size() > 1):
            return super().forward(input)
        from torch.distributed.nn.functional import all_reduce

        channels = input.shape[1]
        dims = [0, *range(2, input.dim())]
        # Sums in float64: E[x^2] - E[x]^2 then loses no more than the one-process two-pass variance does.
        local = torch.cat(
            [
                input.sum(dims, dtype=torch.float64),
                (input * input).sum(dims, dtype=torch.float64),
                input.new_full((1,), input.numel() // max(channels, 1), dtype=torch.float64),
            ]
        )
        total = all_reduce(local)
        count = total[-1].detach()
        mean = total[:channels] / count
        var = (total[channels : 2 * channels] / count - mean * mean).clamp(min=0.0)  # biased, as BatchNorm divides
        if self.track_running_stats and self.running_mean is not None:
            self._update_running_stats(mean.detach(), var.detach() * (count / (count - 1).clamp(min=1.0)))
        shape = (1, channels) + (1,) * (input.dim() - 2)
        scale = torch.rsqrt(var + self.eps).to(input.dtype)
        output = (input - mean.to(input.dtype).view(shape)) * scale.view(shape)
        if self.affine:
            output = output * self.weight.view(shape) + self.bias.view(shape)
        return output

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, unbiased_var: torch.Tensor) -> None:
        """The running statistics one process over the global batch would keep (momentum None: cumulative mean)."""
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
        self.running_var.lerp_(unbiased_var.to(self.running_var.dtype), factor)


def convert_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm of `module` by an `AllReduceBatchNorm` holding the same parameters and buffers."""
    converted = module
    if isinstance(module, _BatchNorm) and not isinstance(module, (AllReduceBatchNorm, nn.SyncBatchNorm)):
        converted = AllReduceBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        converted.load_state_dict(module.state_dict())
        converted.train(module.training)
        converted.to(next(iter(module.state_dict().values()), torch.empty(0)).device)
    for name, child in module.named_children():
        converted.add_module(name, convert_batchnorm(child))
    return converted


def synchronise_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Global BatchNorm statistics: torch's `SyncBatchNorm` on CUDA, `AllReduceBatchNorm` on any other device."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return convert_batchnorm(model)
