"""Each step's global batch as one process draws it, cut into one share per process (the last one too).

Accelerate deals per-process batches round-robin and, when the epoch does not divide, pads the last step with
repeated samples (`even_batches`): N processes then see up to B - 1 faces an epoch that one process does not.
`GlobalBatchShares` cuts every global batch of the one-process order into N consecutive shares whose sizes differ
by at most one and gives process r the r-th share of every step; nothing is padded. A last global batch with
fewer faces than processes is dropped (at most N - 1 faces an epoch).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import BatchSampler, Sampler
from transformers.trainer_pt_utils import BatchRebalanceSampler


class GlobalBatchShares(BatchRebalanceSampler):
    """Batch sampler of one process: its share of each of `sampler`'s global batches of `global_batch_size`.

    A `BatchRebalanceSampler` only as the Trainer knows a batch sampler that is already rank-aware:
    `Trainer._get_dataloader` passes it as the loader's `batch_sampler` and keeps accelerate from sharding it
    again (none of the parent's state is used). `sampler` is a public attribute: accelerate replaces it by its
    seedable sampler, so every process draws the same order.
    """

    def __init__(
        self, sampler: Sampler[int], *, global_batch_size: int, num_processes: int, process_index: int, drop_last: bool
    ):
        if global_batch_size < num_processes:
            raise ValueError(
                f"global batch of {global_batch_size} cannot be shared by {num_processes} processes "
                "(per_device_train_batch_size must be at least 1)"
            )
        self.sampler = sampler
        self.global_batch_size = global_batch_size
        self.num_processes = num_processes
        self.process_index = process_index
        self.drop_last = drop_last

    def _global_batches(self) -> BatchSampler:
        return BatchSampler(self.sampler, self.global_batch_size, self.drop_last)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self._global_batches():
            if len(batch) < self.num_processes:  # some process would get no face: as drop_last does
                return
            yield np.array_split(np.asarray(batch), self.num_processes)[self.process_index].tolist()

    def __len__(self) -> int:
        batches = len(self._global_batches())
        if not self.drop_last and 0 < len(self.sampler) % self.global_batch_size < self.num_processes:
            batches -= 1  # the last batch, too short to share, is dropped
        return batches
