"""AllReduceBatchNorm: two gloo processes on two parts of a batch compute what one process does on the whole batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sspa_hf.training.sync_batchnorm import AllReduceBatchNorm, convert_batchnorm

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from sync_batchnorm_run import SPLIT, sync_batchnorm_case  # noqa: E402

# float32 forward and backward through three BatchNorms: the one-process reference and the all-reduced statistics sum
# in different orders, so they agree to float32 rounding, not bit for bit: rtol 1e-4 and an atol of 1e-6 times the
# largest value of the kind (outputs and input gradients of order 1; parameter gradients up to ~100, where those of
# the biases before a BatchNorm are 0 up to that rounding). Per-process BatchNorm misses by 1e-2 or more.
RTOL, ATOL = 1e-4, 1e-6


def _run_two_processes(tmp_path: Path, *flags: str) -> list[dict[str, torch.Tensor]]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parent)}
    port = str(29500 + (os.getpid() + 7 + len(flags)) % 1000)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port]
    command += [str(HERE / "sync_batchnorm_run.py"), str(tmp_path), *flags]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    return [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in (0, 1)]


def _one_process() -> dict[str, torch.Tensor]:
    model, batch, loss_weight = sync_batchnorm_case()
    x = batch.clone().requires_grad_(True)
    model.train()
    output = model(x)
    (output * loss_weight).sum().backward()
    state = {"output": output.detach(), "input_grad": x.grad}
    state.update({f"grad/{k}": p.grad for k, p in model.named_parameters()})
    state.update({f"buffer/{k}": v for k, v in model.state_dict().items() if "running" in k})
    return state


def _mismatches(ranks: list[dict[str, torch.Tensor]], whole: dict[str, torch.Tensor]) -> list[str]:
    """The names of the quantities where the two ranks together differ from the one process."""
    wrong = []
    grad_scale = max(float(v.abs().max()) for k, v in whole.items() if k.startswith("grad/"))
    for name, expected in whole.items():
        if name in ("output", "input_grad"):  # per sample: rank 0 holds the first rows, rank 1 the rest
            got = torch.cat([ranks[0][name], ranks[1][name]])
        else:  # parameter gradients summed over the ranks; running statistics, identical on both ranks
            got = ranks[0][name]
            if not torch.equal(ranks[1][name], got):
                wrong.append(f"{name} (ranks differ)")
        scale = grad_scale if name.startswith("grad/") else max(float(expected.abs().max()), 1.0)
        if not torch.allclose(got, expected, rtol=RTOL, atol=ATOL * scale):
            wrong.append(name)
    return wrong


@pytest.mark.slow
def test_two_processes_on_parts_of_a_batch_match_one_process_on_the_whole_batch(tmp_path):
    assert SPLIT[0] != SPLIT[1]  # uneven parts: the counts must weigh them
    whole = _one_process()
    assert _mismatches(_run_two_processes(tmp_path), whole) == []
    # Per-process BatchNorm (the behaviour before) fails the same comparison on everything the statistics touch.
    plain = set(_mismatches(_run_two_processes(tmp_path / "plain", "--plain"), whole))
    assert {"output", "input_grad", "buffer/1.running_mean", "buffer/1.running_var"} <= plain


def test_alone_or_in_eval_it_is_plain_batchnorm_with_the_same_state():
    model, batch, _ = sync_batchnorm_case()
    reference = sync_batchnorm_case()[0]
    converted = convert_batchnorm(model)
    assert sum(isinstance(m, AllReduceBatchNorm) for m in converted.modules()) == 3
    assert not any(type(m) in (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d) for m in converted.modules())
    assert list(converted.state_dict()) == list(reference.state_dict())  # checkpoints load either way
    for mode in ("train", "eval"):
        getattr(converted, mode)(), getattr(reference, mode)()
        torch.testing.assert_close(converted(batch), reference(batch), rtol=0, atol=0)
    for (name, a), b in zip(converted.state_dict().items(), reference.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
