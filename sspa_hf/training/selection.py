"""Sample Selection Module (paper Section 3.2, Eq. 3-4, Algorithm 1) and the partition it maintains.

One object holds every per-sample quantity: thresholds tau (N x k), the clean/noisy partition used by the loss,
the partition being decided in the running epoch, and bookkeeping for logs, plots, checkpoints and audits.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from ..errors import UserInputError
from ..evaluation.metrics import selection_quality
from ..run.folder import SELECTION_STATE

logger = logging.getLogger(__name__)
_TENSORS = ("tau", "clean", "pending", "last_py", "updates", "updated_epoch", "changed_epoch", "created")


class SampleSelector:
    """Per-sample EMA thresholds and the clean set D_C of SSPA-JT.

    Epoch t uses the partition decided in epoch t-1 (all clean in epoch 0, the warm-up); during each of the
    first `selection_epochs` epochs every sample's thresholds are updated once from its training forward pass
    (Eq. 3) and its side for the next epoch is decided (Eq. 4). Afterwards the partition is frozen.

    `labels` (N,) int, `is_target` (N,) bool, `sources` (N,) str and `reference_labels` (N,) int (the label under
    the target's standard, where known: for the selection-quality statistics) describe the training set's rows.
    """

    def __init__(
        self,
        labels: np.ndarray,
        *,
        is_target: np.ndarray,
        sources: list[str],
        num_experts: int,
        num_classes: int,
        selection_epochs: int = 40,
        momentum: float = 0.95,
        fix_target: bool = True,
        reference_labels: np.ndarray | None = None,
    ) -> None:
        n = len(labels)
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        self.is_target = torch.as_tensor(np.asarray(is_target), dtype=torch.bool)
        self.sources = np.asarray(sources, dtype=object)
        self.reference_labels = None if reference_labels is None else torch.as_tensor(reference_labels).long()
        self.num_experts, self.num_classes = num_experts, num_classes
        self.selection_epochs, self.momentum = selection_epochs, momentum
        self.fix_target = fix_target
        self.epoch = 0  # the epoch being trained: updates go to it
        self.tau = torch.full((n, num_experts), 1.0 / num_classes)  # Algorithm 3 line 2: tau = 1/C
        self.clean = torch.ones(n, dtype=torch.bool)  # D_C^{t-1}: the loss partition of this epoch
        self.pending = torch.ones(n, dtype=torch.bool)  # D_C^t, being decided in this epoch
        self.last_py = torch.zeros(n, num_experts)  # last p_i(y) seen
        self.updates = torch.zeros(n, dtype=torch.long)  # EMA updates so far (one per selection epoch)
        self.updated_epoch = torch.full((n,), -1, dtype=torch.long)
        self.changed_epoch = torch.full((n,), -1, dtype=torch.long)
        self.created = torch.zeros(num_classes, dtype=torch.long)  # PAM mixtures created per class, all processes
        self.history: list[dict[str, float]] = []

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def selecting(self) -> bool:
        """True during the sample-selection (SS) stage, while Algorithm 1 runs: thresholds move and the partition can
        change. The one notion of "selecting": a mode that never selects gives `selection_epochs` 0."""
        return self.epoch < self.selection_epochs

    def freeze(self, clean: np.ndarray) -> None:
        """Use a partition decided before training (selection modes beyond the paper) from epoch 0, unchanged."""
        self.clean = torch.as_tensor(np.asarray(clean), dtype=torch.bool).clone()
        self.pending = self.clean.clone()
        self.selection_epochs = 0

    def loss_mask(self, indices: torch.Tensor) -> torch.Tensor:
        """Which of these samples are in the clean set used by this epoch's loss."""
        return self.clean[indices.cpu()]

    def update(self, indices: torch.Tensor, expert_probs: torch.Tensor, labels: torch.Tensor) -> None:
        """Algorithm 1 for a batch: Eq. 3 then Eq. 4, for samples not yet updated in this epoch.

        `expert_probs` is (batch, k, C) from the training forward pass. Rows of a sample seen twice in an
        epoch (a distributed sampler pads with repeats) after the first are ignored, so every sample moves
        its thresholds exactly once per epoch; give rows in the same order on every process.
        """
        if not self.selecting:
            return
        indices, probs, labels = indices.cpu().long(), expert_probs.detach().float().cpu(), labels.cpu().long()
        first = self.updated_epoch[indices] != self.epoch
        _, order = np.unique(indices.numpy(), return_index=True)
        unique_rows = torch.zeros(len(indices), dtype=torch.bool)
        unique_rows[torch.as_tensor(order)] = True
        keep = first & unique_rows
        indices, probs, labels = indices[keep], probs[keep], labels[keep]
        py = probs.gather(2, labels.view(-1, 1, 1).expand(-1, probs.shape[1], 1)).squeeze(2)  # p_i(y)
        tau = self.momentum * self.tau[indices] + (1 - self.momentum) * probs.amax(dim=2)  # Eq. 3
        self.tau[indices] = tau
        self.pending[indices] = (py > tau).all(dim=1)  # Eq. 4
        self.last_py[indices] = py
        self.updates[indices] += 1
        self.updated_epoch[indices] = self.epoch

    def advance_to(self, epoch: int) -> list[dict[str, float]]:
        """Close every epoch before `epoch`: the partition decided in it becomes the next epoch's loss partition.

        Idempotent, so it can run both at an epoch's end and at the next one's start (a checkpoint saved on an
        epoch's last step resumes at the following epoch without the end-of-epoch event). Returns the
        statistics of each closed epoch.
        """
        closed = []
        while self.epoch < epoch:
            selecting, unseen = self.selecting, 0
            if selecting:
                new = self.pending.clone()
                if self.fix_target:
                    new |= self.is_target  # "D_T fixed": target samples are always clean
                self.changed_epoch[new != self.clean] = self.epoch
                self.clean = new
                self.pending = new.clone()
                # A sample the epoch never reached (dataloader_drop_last, max_steps) keeps its thresholds and side.
                unseen = int((self.updated_epoch != self.epoch).sum())
                if unseen:
                    logger.warning(
                        "selection epoch %d did not see %d of %d samples (dataloader_drop_last or max_steps): "
                        "they keep their thresholds and their side",
                        self.epoch,
                        unseen,
                        len(self),
                    )
            stats = {"epoch": float(self.epoch), **self.statistics()}
            if selecting:
                stats["selection/unseen"] = float(unseen)
            self.history.append(stats)
            closed.append(stats)
            self.epoch += 1
        return closed

    def statistics(self) -> dict[str, float]:
        """Auxiliary clean ratio overall, per class and per source; mean thresholds per expert; selection quality."""
        stats: dict[str, float] = {}
        aux = ~self.is_target
        if aux.any():
            stats["selection/aux_clean_ratio"] = float(self.clean[aux].float().mean())
            for c in range(self.num_classes):
                members = aux & (self.labels == c)
                if members.any():
                    stats[f"selection/aux_clean_ratio/class_{c}"] = float(self.clean[members].float().mean())
            for source in sorted(set(self.sources[aux.numpy()])):
                members = aux & torch.as_tensor(self.sources == source)
                stats[f"selection/aux_clean_ratio/{source}"] = float(self.clean[members].float().mean())
        if self.is_target.any():
            stats["selection/target_clean_ratio"] = float(self.clean[self.is_target].float().mean())
        for i in range(self.num_experts):
            stats[f"selection/mean_tau/expert_{i}"] = float(self.tau[:, i].mean())
        stats.update(self.quality())
        if self.created.any():
            for c in range(self.num_classes):
                stats[f"pairing/created/class_{c}"] = float(self.created[c])
        return stats

    def quality(self) -> dict[str, float]:
        """Precision, recall and F1 of the auxiliary clean set against known consistency (label == reference)."""
        if self.reference_labels is None:
            return {}
        aux = ~self.is_target
        quality = selection_quality(
            self.labels[aux].numpy(), self.reference_labels[aux].numpy(), self.clean[aux].numpy()
        )
        return {f"selection/{key}": quality[key] for key in ("precision", "recall", "f1") if key in quality}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name).contiguous() for name in _TENSORS}

    def save(self, directory: str | Path) -> Path:
        """Write the state to `directory/selection_state.safetensors` (tensors + epoch and history as metadata)."""
        from safetensors.torch import save_file

        path = Path(directory) / SELECTION_STATE
        metadata = {"epoch": str(self.epoch), "history": json.dumps(self.history), "num_samples": str(len(self))}
        save_file(self.state_dict(), str(path), metadata=metadata)
        return path

    def load(self, directory: str | Path) -> None:
        """Restore a state written by `save`; the sample count must match the training set."""
        from safetensors import safe_open

        path = Path(directory) / SELECTION_STATE
        if not path.is_file():
            raise UserInputError(f"{path} not found: the checkpoint was not written by SSPATrainer")
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata()
            if int(metadata["num_samples"]) != len(self):
                raise UserInputError(
                    f"{path} holds the selection state of {metadata['num_samples']} samples, but the training "
                    f"set has {len(self)}: resume with the same data arguments"
                )
            for name in _TENSORS:
                setattr(self, name, handle.get_tensor(name))
        self.epoch = int(metadata["epoch"])
        self.history = json.loads(metadata["history"])
