"""What a selection mode is: one object that owns how the auxiliary labels enter the loss, and its state.

As timm's `TrainingTask` owns its loss and checkpoint state, a mode is built by the trainer once per training and
asked for everything that differs between modes: what the model needs, which knobs it reads (and their model-card
rows), what it does to the training set before training, each batch's per-sample loss and loss weight, its console
lines, the parameters it keeps out of weight decay, its checkpoint state and its verdict columns. Every mode keeps
a `SampleSelector`: the partition it trains on, its statistics and `selection.parquet`. A mode imports neither the
trainer nor the arguments: it is handed a `transformers.Trainer` and its `TrainingArguments`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from ..data.columns import read_column
from ..training.callbacks import say
from ..training.pairing import PairedMixup, allocate_across
from ..training.selection import SampleSelector

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

logger = logging.getLogger(__name__)

Batch = dict[str, torch.Tensor]  # pixel_values, labels, sample_index, is_target; "<view>_pixel_values"
#: Plain (straight) trainings for a mode's work before training: (training set, output folder) -> a ready Trainer.
PlainTrainers = Callable[["Dataset", Path], "Trainer"]


@dataclasses.dataclass(frozen=True)
class Knob:
    """A setting of the training arguments that only some modes read, and its row on the model card.

    `row` names the card row (default: the setting's name; None: shown in another knob's row); `value` renders
    it (default: the setting's value); `schedule`: a row of the schedule, beside the epochs (T_S), not among the
    method's settings. A mode lists the knobs it reads in `knobs`; it warns about the others.
    """

    name: str
    row: str | None = ""
    value: Callable[[Any], Any] | None = None
    schedule: bool = False

    def card_row(self, args: TrainingArguments) -> tuple[str, Any] | None:
        if self.row is None:
            return None
        return self.row or self.name, self.value(args) if self.value else getattr(args, self.name)


@dataclasses.dataclass(frozen=True)
class VerdictColumn:
    """A per-sample column a mode adds to selection.parquet; `sspa-export-selection` exports it under its name.

    `is_class`: a class under the target's standard (exported as a `ClassLabel`, so `hf:OUT?label_column=NAME`
    trains on it). A mode's column named like a default export (`score`) replaces it.
    """

    name: str
    is_class: bool = False


# Algorithm 1's knobs (selection) and PAM's (pairing, Algorithm 2): the parts modes compose their `knobs` from.
SELECTION_EPOCHS = Knob("selection_epochs", "selection_epochs (T_S)", schedule=True)
EMA_MOMENTUM = Knob("ema_momentum", "ema_momentum (eta)")
USE_SELECTION = Knob("use_selection", None)
FIX_TARGET = Knob("fix_target", None)
PAIRING_KNOBS = (
    Knob("mixup_alpha", "mixup alpha, beta", lambda args: f"{args.mixup_alpha}, {args.mixup_beta}"),
    Knob("mixup_beta", None),
    Knob("allocation"),
    Knob(
        "use_pairing",
        "use_selection / fix_target / use_pairing",
        lambda args: f"{args.use_selection} / {args.fix_target} / {args.use_pairing}",
    ),
)


class SelectionMode:
    """One way of training on target + auxiliary labels; subclasses fill in the class attributes and `loss`."""

    name: ClassVar[str]
    help: ClassVar[str]  # one sentence for --selection_mode's help
    card: ClassVar[str] = ""  # a paragraph for the model card's Method section (the paper's mode needs none)
    model_options: ClassVar[dict[str, Any]] = {}  # keyword arguments of build.build_model this mode needs
    knobs: ClassVar[tuple[Knob, ...]] = ()  # the knobs this mode reads, in the order of their card rows
    verdict: ClassVar[tuple[VerdictColumn, ...]] = ()  # the columns `verdict_columns` adds to selection.parquet
    no_decay: ClassVar[tuple[str, ...]] = ()  # parameter names (parts of) this mode keeps out of weight decay
    views: ClassVar[dict[str, tuple[str, ...]]] = {}  # augmented views beside the training one (data.augment)

    # ----- before training -----
    @classmethod
    def reads(cls) -> frozenset[str]:
        """The names of the knobs this mode reads."""
        return frozenset(knob.name for knob in cls.knobs)

    @classmethod
    def check(cls, args: TrainingArguments) -> None:
        """Refuse settings that cannot work with this mode (ValueError, one line); by default none."""

    @classmethod
    def card_rows(cls, args: TrainingArguments, schedule: bool = False) -> dict[str, Any]:
        """This mode's rows of the model card's hyperparameter table, one per knob it reads: the schedule's rows
        (`schedule`) or the method's."""
        rows = (knob.card_row(args) for knob in cls.knobs if knob.schedule == schedule)
        return dict(row for row in rows if row is not None)

    @classmethod
    def before_training(cls, data: Dataset, *, args: TrainingArguments, plain_trainers: PlainTrainers) -> Dataset:
        """The training set this mode trains on (cleanlab adds its verdict here); by default `data` itself."""
        return data

    # ----- during training -----
    def __init__(self, trainer: Trainer) -> None:
        self.trainer, self.args = trainer, trainer.args
        config, data = trainer.model.config, trainer.train_dataset
        self.num_classes = config.num_labels
        self.selector = SampleSelector(
            np.asarray(read_column(data, "label")),
            is_target=np.asarray(read_column(data, "is_target")),
            sources=read_column(data, "source"),
            num_experts=config.num_experts,
            num_classes=config.num_labels,
            selection_epochs=self.selection_epochs(),
            momentum=self.args.ema_momentum,
            fix_target=self.args.fix_target,
            reference_labels=(
                np.asarray(read_column(data, "reference_label")) if "reference_label" in data.column_names else None
            ),
        )

    def selection_epochs(self) -> int:
        """For how many epochs the selector runs Algorithm 1 (`selector.selecting`); 0: never (all but the paper's)."""
        return 0

    def loss_weight(self, sample_index: torch.Tensor) -> torch.Tensor:
        """(B,) float on the CPU: which samples of a batch enter the loss. The trainer divides the step's loss by
        the sum of these weights over the whole step, and `loss` weights its samples with the same tensor."""
        return torch.ones(len(sample_index))

    def loss(self, model: torch.nn.Module, batch: Batch, weight: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """(per-sample loss (B,), model outputs) of a training batch; `weight` is `loss_weight(sample_index)`."""
        raise NotImplementedError

    def begin_epoch(self, epoch: int) -> None:
        """At the start of each epoch (0-based), after the selector closed the previous ones (a stage switch)."""

    def epoch_closed(self, stats: dict[str, float]) -> None:
        """After the selector closed an epoch (`stats`, logged already): this mode's console lines, if any."""

    def say(self, line: str) -> None:
        """Print a console line, once (on the main process)."""
        if self.trainer.is_world_process_zero():
            say(line)

    # ----- after training, checkpoints -----
    def finish(self) -> None:
        """After the last step, before selection.parquet is written (transition's verdict pass)."""

    def verdict_columns(self) -> dict[str, np.ndarray]:
        """The per-sample columns (named in `verdict`) this mode adds to selection.parquet."""
        return {}

    def save(self, directory: str) -> None:
        self.selector.save(directory)

    def load(self, directory: str) -> None:
        self.selector.load(directory)

    # ----- shared pieces -----
    def cross_entropy(self, outputs: Any, labels: torch.Tensor) -> torch.Tensor:
        """Each expert's cross-entropy with the run's label smoothing, averaged over experts; (B,)."""
        from ..model.modeling_sspa import expert_cross_entropy  # on first use: the argument parser imports the modes

        return expert_cross_entropy(outputs.expert_logits, labels, self.args.label_smoothing_factor)


def refuse_without_selection(mode: type[SelectionMode], args: TrainingArguments) -> None:
    """A mode whose whole point is to flag auxiliary labels cannot run with use_selection off."""
    if not args.use_selection:
        raise ValueError(f"selection_mode {mode.name!r} selects auxiliary samples; use_selection is off")


class FrozenPartition:
    """A part a mode holds: training on a fixed clean / noisy partition (the selector's). Noisy samples leave the
    loss, or with `use_pairing` are mixed into clean partners (PAM, Algorithm 2). The paper's second stage;
    cleanlab's whole training; transition_pam's after T_S."""

    knobs = PAIRING_KNOBS

    def __init__(self, mode: SelectionMode) -> None:
        self.mode, self.trainer, self.args, self.selector = mode, mode.trainer, mode.args, mode.selector
        self.num_classes = mode.num_classes
        self.mixup = PairedMixup(
            self.num_classes, alpha=self.args.mixup_alpha, beta=self.args.mixup_beta, method=self.args.allocation
        )
        self._pairing_calls = (-1, 0)  # (global step, calls at that step): seeds PAM's random draws

    def weight(self, sample_index: torch.Tensor) -> torch.Tensor:
        """PAM: every sample of a batch that has a clean partner to mix with (none without); else the clean ones."""
        clean = self.selector.loss_mask(sample_index)
        if self.args.use_pairing:
            return torch.full((len(clean),), float(bool(clean.any())))
        return clean.float()

    def loss(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, Any]:
        pixels, labels, _ = self.inputs(batch)
        outputs = model(pixel_values=pixels)
        return self.mode.cross_entropy(outputs, labels), outputs

    def inputs(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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


# ----- what the registry asks of all modes together (modes/__init__.py passes the registered ones) -----
def all_knobs(modes: Iterable[type[SelectionMode]]) -> tuple[str, ...]:
    """Every knob some mode reads, in the order the modes list them."""
    return tuple(dict.fromkeys(knob.name for mode in modes for knob in mode.knobs))


def knob_defaults(args: TrainingArguments, names: Iterable[str]) -> dict[str, Any]:
    """The knobs `names` at their defaults, in the order of the arguments' fields: for a training that is given
    another mode (cleanlab's probes)."""
    names = set(names)
    return {field.name: field.default for field in dataclasses.fields(args) if field.name in names}


def warn_ignored(mode: type[SelectionMode], args: TrainingArguments, names: Iterable[str]) -> None:
    """Warn once about the knobs among `names` that are set away from their default but that `mode` does not read."""
    reads, defaults = mode.reads(), knob_defaults(args, names)
    ignored = [f"{n}={getattr(args, n)!r}" for n in defaults if n not in reads and getattr(args, n) != defaults[n]]
    if ignored:
        _warn_once(f"selection_mode {mode.name!r} ignores {', '.join(ignored)}")


def exported_columns(table: Any, modes: Iterable[type[SelectionMode]]) -> dict[str, tuple[np.ndarray, bool]]:
    """The columns `sspa-export-selection` writes from a selection table (pyarrow), each with whether it is a class.

    `consistent` is the partition's clean side; `score` Algorithm 1's margin, min over experts of p_i(y) - tau_i
    (> 0 means above every threshold), unless a mode wrote its own; then every mode's verdict column the table has.
    """

    def column(name: str) -> np.ndarray:
        return np.asarray(table.column(name).to_pylist())

    margin = (column("last_py") - column("tau")).min(axis=1)
    columns = {"consistent": (column("clean").astype(bool), False), "score": (margin, False)}
    for verdict in dict.fromkeys(v for mode in modes for v in mode.verdict):
        if verdict.name in table.column_names:
            columns[verdict.name] = (column(verdict.name), verdict.is_class)
    return columns


@functools.cache
def _warn_once(message: str) -> None:
    logger.warning(message)
