"""SSPATrainer's callbacks and console output: epoch boundaries, `say` (a mode's console lines), quiet progress.

Nothing here imports the trainer: the epoch callback is handed an object with the hooks it calls (`Epochs`).
"""

from __future__ import annotations

import math
from typing import Any, Protocol

from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback


def say(line: str) -> None:
    """Print a line above the progress bar (not inside it)."""
    from tqdm.auto import tqdm

    tqdm.write(line)


def _without_selection(logs: dict[str, Any] | None) -> dict[str, Any] | None:
    """The logs less the per-epoch selection dict (a mode's console lines say it); None if nothing is left."""
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


class Epochs(Protocol):
    """What the epoch callback drives (an `SSPATrainer`): the selector's epochs, the mode and the augmentation."""

    mode: Any
    selector: Any
    train_augment: Any

    def _advance(self, epoch: int) -> None: ...


class EpochCallback(TrainerCallback):
    """Epoch boundaries: partition commits and the augmentation's epoch."""

    def __init__(self, trainer: Epochs) -> None:
        self.trainer = trainer

    def on_epoch_begin(self, args, state, control, **kwargs):
        epoch = math.floor(state.epoch + 1e-9)
        self.trainer._advance(epoch)
        self.trainer.mode.begin_epoch(epoch)
        self.trainer.train_augment.set_epoch(epoch)

    def on_epoch_end(self, args, state, control, **kwargs):
        self.trainer._advance(self.trainer.selector.epoch + 1)
