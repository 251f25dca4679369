"""Selection modes: how the auxiliary labels enter the loss, one module per mode and one row each in `MODES`.

Adding a mode is one module (a `SelectionMode` subclass, see `base.py`) plus one row here, as for a data format in
`data.readers.FORMATS`; nothing else in the package branches on `selection_mode`.
"""

from __future__ import annotations

from .base import SelectionMode
from .cleanlab import CleanlabMode
from .paper import PaperMode
from .straight import StraightMode
from .transition import TransitionMode
from .transition_pam import TransitionPamMode

# Best first, as measured on FERPlus (docs/RESULTS.md); `paper` stays the default, `straight` is the baseline.
MODES: dict[str, type[SelectionMode]] = {
    mode.name: mode for mode in (TransitionMode, TransitionPamMode, PaperMode, CleanlabMode, StraightMode)
}


def get_mode(name: str) -> type[SelectionMode]:
    """The mode class registered under `name`; a ValueError naming the known ones otherwise."""
    if name not in MODES:
        raise ValueError(f"selection_mode must be one of {', '.join(MODES)}, got {name!r}")
    return MODES[name]


__all__ = ["MODES", "SelectionMode", "get_mode"]
