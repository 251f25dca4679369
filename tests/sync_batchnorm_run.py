"""Run by test_sync_batchnorm.py under torchrun with two gloo processes: each rank's forward and backward on its part.

`sync_batchnorm_run.py OUT [--plain]`: rank r takes its rows of the batch `sync_batchnorm_case()` builds (uneven
parts), does one training forward and backward with BatchNorm synchronised (or, with --plain, per process as before)
and saves its outputs, input gradients, parameter gradients (summed over the ranks) and running statistics.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from sspa_hf.training.sync_batchnorm import synchronise_batchnorm

SPLIT = (5, 3)  # rows of rank 0 and rank 1: uneven on purpose


def sync_batchnorm_case() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """A conv / BatchNorm / ReLU stack (2-D and 1-D BatchNorm), a batch and the weights of a linear loss on it."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.Conv2d(4, 6, 3),
        torch.nn.BatchNorm2d(6, momentum=0.3),
        torch.nn.Flatten(),
        torch.nn.BatchNorm1d(6 * 4 * 4),
    )
    batch = torch.randn(sum(SPLIT), 3, 8, 8) * 2 + 0.5
    loss_weight = torch.randn(sum(SPLIT), 6 * 4 * 4)
    return model, batch, loss_weight


def main(out: Path, plain: bool) -> None:
    torch.distributed.init_process_group("gloo")
    rank = torch.distributed.get_rank()
    model, batch, loss_weight = sync_batchnorm_case()
    if not plain:
        model = synchronise_batchnorm(model, torch.device("cpu"))
    rows = slice(sum(SPLIT[:rank]), sum(SPLIT[: rank + 1]))
    x = batch[rows].clone().requires_grad_(True)
    model.train()
    output = model(x)
    (output * loss_weight[rows]).sum().backward()  # the ranks' losses add up to the whole batch's
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    for grad in grads.values():
        torch.distributed.all_reduce(grad)
    state = {"output": output.detach(), "input_grad": x.grad, **{f"grad/{k}": v for k, v in grads.items()}}
    state.update({f"buffer/{k}": v.clone() for k, v in model.state_dict().items() if "running" in k})
    out.mkdir(parents=True, exist_ok=True)
    torch.save(state, out / f"rank{rank}.pt")
    # As sspa-train leaves (commands/train.py): both ranks reach the end before either destroys its group, or the
    # one still in gloo's teardown can abort ("terminate called without an active exception"; seen under load).
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), plain="--plain" in sys.argv[2:])
