"""GlobalBatchShares: N processes get the one-process global batches, shared out, the last one too."""

from __future__ import annotations

import pytest
from accelerate.data_loader import BatchSamplerShard
from torch.utils.data import BatchSampler, SequentialSampler

from sspa_hf.training.global_batches import GlobalBatchShares


def _per_process(n: int, batch: int, processes: int, drop_last: bool = False) -> list[list[list[int]]]:
    """What each process's batch sampler gives, step by step."""
    return [list(_shares(n, batch, processes, r, drop_last)) for r in range(processes)]


def _shares(n: int, batch: int, processes: int, rank: int = 0, drop_last: bool = False) -> GlobalBatchShares:
    return GlobalBatchShares(
        SequentialSampler(range(n)),
        global_batch_size=batch,
        num_processes=processes,
        process_index=rank,
        drop_last=drop_last,
    )


@pytest.mark.parametrize(("n", "batch", "processes"), [(117, 32, 2), (2400, 64, 2), (100, 30, 3), (64, 32, 2)])
def test_each_step_is_the_one_process_batch_shared_out_with_nothing_repeated(n, batch, processes):
    one = list(BatchSampler(SequentialSampler(range(n)), batch, drop_last=False))
    ranks = _per_process(n, batch, processes)
    assert [len(steps) for steps in ranks] == [len(one)] * processes
    for step, expected in enumerate(one):
        shares = [ranks[r][step] for r in range(processes)]
        assert [i for share in shares for i in share] == expected  # in order: rank 0's share, then rank 1's ...
        assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_the_plain_per_process_batches_pad_the_last_step_with_repeated_faces():
    """Why the class exists: accelerate alone gives the second process 32 faces again at the end of 2,400."""
    per_device = BatchSampler(SequentialSampler(range(2400)), 32, drop_last=False)
    last = [list(BatchSamplerShard(per_device, num_processes=2, process_index=r))[-1] for r in (0, 1)]
    assert last[0] == list(range(2368, 2400)) and last[1] == list(range(32))
    assert [len(steps[-1]) for steps in _per_process(2400, 64, 2)] == [16, 16]


def test_len_and_drop_last_count_the_steps_the_iteration_gives():
    for n, batch, processes, drop_last in [
        (117, 32, 2, False),
        (117, 32, 2, True),
        (97, 32, 2, False),
        (96, 32, 3, False),
    ]:
        for rank in range(processes):
            shares = _shares(n, batch, processes, rank, drop_last)
            assert len(shares) == len(list(shares)), (n, batch, processes, rank, drop_last)
    assert [len(s) for s in _per_process(117, 32, 2, drop_last=True)] == [3, 3]  # the 21 faces are dropped
    # 97 = 3 x 32 + 1: one face cannot be shared by two processes, so that step goes (as drop_last would)
    assert [sum(map(len, s)) for s in _per_process(97, 32, 2)] == [48, 48]


def test_a_global_batch_smaller_than_the_processes_is_refused():
    with pytest.raises(ValueError, match="global batch of 1 cannot be shared by 2 processes"):
        _shares(10, 1, 2)
