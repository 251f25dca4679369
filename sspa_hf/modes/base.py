"""What a selection mode is: one object that owns how the auxiliary labels enter the loss, and its state.

As timm's `TrainingTask` owns its loss and checkpoint state, a mode is built by `SSPATrainer` once per training
and asked for everything that differs between modes: what the model needs, which arguments it reads, how the
training set is prepared, each batch's per-sample loss and loss weight, its checkpoint state and its verdict.
Every mode keeps a `SampleSelector`: the partition it trains on, its statistics and `selection.parquet`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from ..data.columns import read_column
from ..pairing import PairedMixup, allocate_across
from ..selection import SampleSelector

if TYPE_CHECKING:
    from datasets import Dataset

    from ..arguments import ModelArguments, SSPATrainingArguments
    from ..trainer import SSPATrainer

logger = logging.getLogger(__name__)

# The SSPA settings of SSPATrainingArguments that only some modes read; a mode warns about the others it is given.
KNOBS = (
    "use_selection",
    "fix_target",
    "use_pairing",
    "selection_epochs",
    "ema_momentum",
    "mixup_alpha",
    "mixup_beta",
    "allocation",
    "crossfit_folds",
    "prior_weight",
)
Batch = dict[str, torch.Tensor]  # pixel_values, labels, sample_index, is_target


class SelectionMode:
    """One way of training on target + auxiliary labels; subclasses fill in the class attributes and `loss`."""

    name: ClassVar[str]
    help: ClassVar[str]  # one sentence for --selection_mode's help
    card: ClassVar[str] = ""  # a paragraph for the model card's Method section (the paper's mode needs none)
    model_options: ClassVar[dict[str, Any]] = {}  # keyword arguments of build.build_model this mode needs
    reads: ClassVar[frozenset[str]] = frozenset()  # the KNOBS this mode uses
    needs_selection: ClassVar[bool] = False  # refuses use_selection false (a mode beyond the paper that selects)

    # ----- before training -----
    @classmethod
    def check(cls, args: SSPATrainingArguments) -> None:
        """Refuse settings that cannot work (ValueError, one line); warn once about the knobs this mode ignores."""
        defaults = knob_defaults(args)
        ignored = [f"{n}={getattr(args, n)!r}" for n in KNOBS if n not in cls.reads and getattr(args, n) != defaults[n]]
        if ignored:
            _warn_once(f"selection_mode {cls.name!r} ignores {', '.join(ignored)}")
        if cls.needs_selection and not args.use_selection:
            raise ValueError(f"selection_mode {cls.name!r} selects auxiliary samples; use_selection is off")

    @classmethod
    def prepare(cls, data: Dataset, *, model_args: ModelArguments, args: SSPATrainingArguments) -> Dataset:
        """The training set this mode trains on (cleanlab adds its verdict here); by default `data` itself."""
        return data

    # ----- during training -----
    def __init__(self, trainer: SSPATrainer) -> None:
        self.trainer, self.args = trainer, trainer.args
        config, data = trainer.model.config, trainer.train_dataset
        self.num_classes = config.num_labels
        self.selector = SampleSelector(
            np.asarray(read_column(data, "label")),
            is_target=np.asarray(read_column(data, "is_target")),
            sources=read_column(data, "source"),
            num_experts=config.num_experts,
            num_classes=config.num_labels,
            selection_epochs=self.args.selection_epochs,
            momentum=self.args.ema_momentum,
            fix_target=self.args.fix_target,
            enabled=self.selects,
            reference_labels=(
                np.asarray(read_column(data, "reference_label")) if "reference_label" in data.column_names else None
            ),
        )

    @property
    def selects(self) -> bool:
        """Whether the selector runs Algorithm 1 (only the paper's mode does)."""
        return False

    def loss_weight(self, sample_index: torch.Tensor) -> torch.Tensor:
        """(B,) float on the CPU: which samples of a batch enter the loss. The trainer divides the step's loss by
        the sum of these weights over the whole step, and `loss` weights its samples with the same tensor."""
        return torch.ones(len(sample_index))

    def loss(self, model: torch.nn.Module, batch: Batch, weight: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """(per-sample loss (B,), model outputs) of a training batch; `weight` is `loss_weight(sample_index)`."""
        raise NotImplementedError

    def begin_epoch(self, epoch: int) -> None:
        """At the start of each epoch (0-based), after the selector closed the previous ones (a stage switch)."""

    # ----- after training, checkpoints -----
    def finish(self) -> None:
        """After the last step, before selection.parquet is written (transition's verdict pass)."""

    def verdict_columns(self) -> dict[str, np.ndarray]:
        """Per-sample columns this mode adds to selection.parquet (its margin, its relabels)."""
        return {}

    def save(self, directory: str) -> None:
        self.selector.save(directory)

    def load(self, directory: str) -> None:
        self.selector.load(directory)

    # ----- shared pieces -----
    def cross_entropy(self, outputs: Any, labels: torch.Tensor) -> torch.Tensor:
        """Each expert's cross-entropy with the run's label smoothing, averaged over experts; (B,)."""
        from ..modeling_sspa import expert_cross_entropy  # on first use: the argument parser imports the modes

        return expert_cross_entropy(outputs.expert_logits, labels, self.args.label_smoothing_factor)


class FrozenPartitionMode(SelectionMode):
    """A fixed clean / noisy partition: noisy samples leave the loss, or with `use_pairing` are mixed into clean
    partners (PAM, Algorithm 2). The paper's second stage; cleanlab's whole training."""

    def __init__(self, trainer: SSPATrainer) -> None:
        super().__init__(trainer)
        self.mixup = PairedMixup(
            self.num_classes, alpha=self.args.mixup_alpha, beta=self.args.mixup_beta, method=self.args.allocation
        )
        self._pairing_calls = (-1, 0)  # (global step, calls at that step): seeds PAM's random draws

    def partition_weight(self, sample_index: torch.Tensor) -> torch.Tensor:
        """PAM: every sample of a batch that has a clean partner to mix with (none without); else the clean ones."""
        clean = self.selector.loss_mask(sample_index)
        if self.args.use_pairing:
            return torch.full((len(clean),), float(bool(clean.any())))
        return clean.float()

    def partition_loss(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, Any]:
        pixels, labels, _ = self.paired_inputs(batch)
        outputs = model(pixel_values=pixels)
        return self.cross_entropy(outputs, labels), outputs

    def paired_inputs(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(pixels, labels, clean) of a batch under the frozen partition: with `use_pairing` its noisy samples
        replaced by PAM's mixtures (labelled as their clean partner, in place), otherwise the batch as it is."""
        pixels, labels = batch["pixel_values"], batch["labels"]
        clean = self.selector.loss_mask(batch["sample_index"]).to(pixels.device)
        if self.args.use_pairing:
            paired = self.mixup(
                pixels, labels, clean, rng=self._pairing_rng(), allocation=self._global_allocation(labels, clean)
            )
            self._record_pairs(paired.created, pixels.device)
            pixels, labels = paired.pixel_values, paired.labels
        return pixels, labels, clean

    def _pairing_rng(self) -> np.random.Generator:
        """PAM's random draws as a function of (seed, step, micro-batch, rank): resumable and reproducible."""
        step = self.trainer.state.global_step
        last, calls = self._pairing_calls
        calls = calls + 1 if last == step else 0
        self._pairing_calls = (step, calls)
        return np.random.default_rng([self.args.seed, step, calls, self.args.process_index])

    def _global_allocation(self, labels: torch.Tensor, clean: torch.Tensor) -> np.ndarray | None:
        """This process's share of Eq. 8 solved on the global batch (sync_batch_stats); None: solve it locally."""
        accelerator = self.trainer.accelerator
        if not self.args.sync_batch_stats or accelerator.num_processes == 1:
            return None
        classes = self.num_classes
        counts = torch.zeros(1, classes + 1, dtype=torch.long, device=labels.device)
        counts[0, :classes] = torch.bincount(labels[clean], minlength=classes)
        counts[0, classes] = int((~clean).sum())
        counts = accelerator.gather(counts).cpu().numpy()  # (processes, C + 1), in rank order
        return allocate_across(counts[:, :classes], counts[:, classes])[self.args.process_index]

    def _record_pairs(self, created: np.ndarray, device: torch.device) -> None:
        counts = torch.as_tensor(created, device=device)
        if self.trainer.accelerator.num_processes > 1:
            counts = self.trainer.accelerator.reduce(counts, reduction="sum")
        self.selector.created += counts.cpu()


def knob_defaults(args: SSPATrainingArguments) -> dict[str, Any]:
    """The KNOBS at their defaults: for a training that is given another mode (cleanlab's probes)."""
    defaults = {field.name: field.default for field in dataclasses.fields(args)}
    return {name: defaults[name] for name in KNOBS}


@functools.cache
def _warn_once(message: str) -> None:
    logger.warning(message)
