"""Selection modes: how the auxiliary labels enter the loss, one module per mode and one row each in `MODES`.

Adding a mode is one module (a `SelectionMode` subclass, see `base.py`) plus one row here, as for a data format in
`data.readers.FORMATS`, and an argument field for each new knob; nothing else in the package branches on
`selection_mode`. What concerns all modes together (every knob, the exported columns) is asked of this registry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from . import base
from .base import Knob, SelectionMode, VerdictColumn
from .cleanlab import CleanlabMode
from .consistency import ConsistencyMode
from .paper import PaperMode
from .straight import StraightMode
from .transition import TransitionMode
from .transition_pam import TransitionPamMode

if TYPE_CHECKING:
    from transformers import TrainingArguments

# Best first, as measured on FERPlus (docs/RESULTS.md); `paper` stays the default, `straight` is the baseline.
MODES: dict[str, type[SelectionMode]] = {
    mode.name: mode
    for mode in (ConsistencyMode, TransitionMode, TransitionPamMode, PaperMode, CleanlabMode, StraightMode)
}


def get_mode(name: str) -> type[SelectionMode]:
    """The mode class registered under `name`; a ValueError naming the known ones otherwise."""
    if name not in MODES:
        raise ValueError(f"selection_mode must be one of {', '.join(MODES)}, got {name!r}")
    return MODES[name]


def knobs() -> tuple[str, ...]:
    """Every knob: the settings some registered mode reads (each mode ignores the others)."""
    return base.all_knobs(MODES.values())


def check(args: TrainingArguments) -> None:
    """Refuse what the run's mode cannot work with (ValueError, one line); warn once about the knobs it ignores."""
    mode = get_mode(args.selection_mode)
    base.warn_ignored(mode, args, knobs())
    mode.check(args)


def knob_defaults(args: TrainingArguments) -> dict[str, Any]:
    """Every knob at its default: the settings of a training that is given another mode (cleanlab's probes)."""
    return base.knob_defaults(args, knobs())


def exported_columns(table: Any) -> dict[str, tuple[np.ndarray, bool]]:
    """What `sspa-export-selection` writes from a selection table: (values, is a class) per column name."""
    return base.exported_columns(table, MODES.values())


__all__ = ["MODES", "Knob", "SelectionMode", "VerdictColumn", "check", "exported_columns", "get_mode", "knobs"]
