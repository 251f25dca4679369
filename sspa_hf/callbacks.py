"""SSPATrainer's callbacks and console lines: epoch boundaries, one line per selection epoch, quiet progress."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from .selection import SampleSelector

if TYPE_CHECKING:
    from .trainer import SSPATrainer


def say(line: str) -> None:
    """Print a line above the progress bar (not inside it)."""
    from tqdm.auto import tqdm

    tqdm.write(line)


def epoch_line(epoch: int, stats: dict[str, float], num_experts: int) -> str:
    """One readable line per selection epoch: clean ratio, selection precision/recall when known, mean tau."""
    parts = []
    if "selection/aux_clean_ratio" in stats:
        parts.append(f"auxiliary clean {100 * stats['selection/aux_clean_ratio']:.1f} %")
    for name in ("precision", "recall"):
        if f"selection/{name}" in stats:
            parts.append(f"{name} {100 * stats[f'selection/{name}']:.1f} %")
    taus = [stats[f"selection/mean_tau/expert_{i}"] for i in range(num_experts)]
    parts.append(f"mean tau {sum(taus) / len(taus):.3f}")
    return f"[selection] epoch {epoch + 1}: " + ", ".join(parts)


def stage_switch_line(selector: SampleSelector, id2label: dict[int, str], use_pairing: bool) -> str:
    """The end of the selection stage: what is frozen, kept / flagged auxiliary samples per class."""
    aux = ~selector.is_target
    counts = []
    for c in range(selector.num_classes):
        members = aux & (selector.labels == c)
        if members.any():
            kept = int(selector.clean[members].sum())
            counts.append(f"{id2label.get(c, c)} {kept}/{int(members.sum()) - kept}")
    then = "paired augmentation (PAM) mixes the flagged ones" if use_pairing else "the flagged ones leave the loss"
    return (
        f"[selection] partition frozen after {selector.selection_epochs} epochs; {then}. Auxiliary kept/flagged per "
        f"class: {', '.join(counts) or 'no auxiliary samples'}"
    )


def _without_selection(logs: dict[str, Any] | None) -> dict[str, Any] | None:
    """The logs less the per-epoch selection dict (`epoch_line` says it in one line); None if nothing is left."""
    logs = {k: v for k, v in (logs or {}).items() if not k.startswith(("selection/", "pairing/"))}
    return logs if set(logs) - {"epoch", "total_flos"} else None


class QuietProgressCallback(ProgressCallback):
    """The Trainer's progress bar, without the selection statistics."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if (logs := _without_selection(logs)) is not None:
            super().on_log(args, state, control, logs=logs, **kwargs)


class QuietPrinterCallback(PrinterCallback):
    """`disable_tqdm`'s printer, likewise."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if (logs := _without_selection(logs)) is not None:
            super().on_log(args, state, control, logs=logs, **kwargs)


QUIET = ((ProgressCallback, QuietProgressCallback), (PrinterCallback, QuietPrinterCallback))


class EpochCallback(TrainerCallback):
    """Epoch boundaries: partition commits and the augmentation's epoch."""

    def __init__(self, trainer: SSPATrainer) -> None:
        self.trainer = trainer

    def on_epoch_begin(self, args, state, control, **kwargs):
        epoch = math.floor(state.epoch + 1e-9)
        self.trainer._advance(epoch)
        self.trainer.mode.begin_epoch(epoch)
        self.trainer.train_augment.set_epoch(epoch)

    def on_epoch_end(self, args, state, control, **kwargs):
        self.trainer._advance(self.trainer.selector.epoch + 1)
