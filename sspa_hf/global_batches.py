"""Each step's global batch as one process draws it, cut into one share per process (the last one too).

Accelerate deals per-process batches round-robin and, when the epoch does not divide, pads the last step with
repeated samples (`even_batches`): N processes then see up to B - 1 faces an epoch that one process does not.
`GlobalBatchShares` yields, for every global batch of the one-process order, N consecutive shares whose sizes
differ by at most one; accelerate's round-robin then hands process r the r-th share of every step, and nothing
is padded. A last global batch with fewer faces than processes is dropped (at most N - 1 faces an epoch).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import BatchSampler, Sampler


class GlobalBatchShares(Sampler[list[int]]):
    """Batch sampler: the shares of `sampler`'s global batches of `batch_size`, `num_processes` per batch, in order.

    `sampler` is a public attribute (accelerate replaces it by its seedable sampler); `batch_size` is deliberately
    absent, so that accelerate's `BatchSamplerShard` takes the shares as they come (variable length) and pads none.
    """

    def __init__(self, sampler: Sampler[int], *, global_batch_size: int, num_processes: int, drop_last: bool):
        if global_batch_size < num_processes:
            raise ValueError(
                f"global batch of {global_batch_size} cannot be shared by {num_processes} processes "
                "(per_device_train_batch_size must be at least 1)"
            )
        self.sampler = sampler
        self.global_batch_size = global_batch_size
        self.num_processes = num_processes
        self.drop_last = drop_last

    def _global_batches(self) -> BatchSampler:
        return BatchSampler(self.sampler, self.global_batch_size, self.drop_last)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self._global_batches():
            if len(batch) < self.num_processes:  # some process would get no face: as drop_last does
                return
            for share in np.array_split(np.asarray(batch), self.num_processes):
                yield share.tolist()

    def __len__(self) -> int:
        batches = len(self._global_batches())
        if not self.drop_last and 0 < len(self.sampler) % self.global_batch_size < self.num_processes:
            batches -= 1  # the last batch, too short to share, is dropped
        return batches * self.num_processes
