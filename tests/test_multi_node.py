"""recipes/accelerate_configs/multi_node.yaml run as two machines on one host trains as two processes on one."""

from __future__ import annotations

import pytest
import torch
from helpers import run_two_processes


@pytest.mark.slow
def test_two_machines_train_bit_for_bit_like_two_processes_on_one_machine(tmp_path):
    """tests/distributed_run.py's selection stage with sync_batch_stats (global BatchNorm, Eq. 8 and batch means
    all-reduced across the machines): the same weights, selection state and augmented batches on every rank."""
    flags = ("--sync", "--selection-stage")
    one_machine = run_two_processes(tmp_path / "one_machine", *flags)
    two_machines = run_two_processes(tmp_path / "two_machines", *flags, machines=True)
    assert [int(state["world_size"]) for state in two_machines] == [2, 2]
    for rank in (0, 1):
        assert two_machines[rank].keys() == one_machine[rank].keys()
        for name, value in one_machine[rank].items():
            assert torch.equal(two_machines[rank][name], value), (rank, name)
    assert any(name.startswith("weights/") for name in one_machine[0])  # the weights are compared too
    # Each rank trained its own half of each batch: the comparison is not between two copies of one rank.
    assert not torch.equal(one_machine[0]["seen"][:, 1], one_machine[1]["seen"][:, 1])
