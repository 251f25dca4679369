"""Draw README's results figure: accuracy against macro F1 and mean-class accuracy per selection mode on FERPlus.

The figures are copied from docs/RESULTS.md (section 1), not recomputed: seed means ± half the range over the
seeds. Per-seed values and per-seed mean-class accuracy were not recorded for these runs (their per-face
prediction files did not survive their machines), so each mode is one point with its range, not a dot per seed.

    python benchmarks/ferplus/figure.py                  # writes docs/figures/modes_trade_off.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

Point = tuple[float, float, float, float]  # x mean, x half range, y mean, y half range

MODES = ("straight", "paper", "transition", "transition_pam", "perfect selection")
COLOURS = {
    "straight": "#7f7f7f",
    "paper": "#1f77b4",
    "transition": "#d62728",
    "transition_pam": "#ff7f0e",
    "perfect selection": "#2ca02c",
    "cleanlab": "#9467bd",
}

# docs/RESULTS.md, "20 epochs, seeds 1-5": (accuracy, macro F1) on validation and on the withheld faces.
TWENTY_EPOCHS: dict[str, dict[str, Point]] = {
    "validation": {
        "straight": (71.52, 0.61, 54.07, 0.89),
        "paper": (71.56, 1.22, 52.37, 0.83),
        "transition": (73.90, 0.44, 55.45, 0.65),
        "transition_pam": (71.46, 0.64, 58.28, 1.38),
        "perfect selection": (75.00, 0.38, 56.99, 1.04),
    },
    "withheld": {
        "straight": (72.15, 0.11, 54.06, 0.27),
        "paper": (72.04, 0.61, 52.74, 0.53),
        "transition": (74.59, 0.55, 55.50, 0.76),
        "transition_pam": (71.33, 0.44, 54.32, 0.60),
        "perfect selection": (75.11, 0.50, 56.64, 0.64),
    },
}

# docs/RESULTS.md, "40 epochs, seeds 1-3" (another machine than the 20-epoch runs).
FORTY_EPOCHS: dict[str, dict[str, Point]] = {
    "validation": {
        "straight": (73.79, 0.72, 61.86, 1.26),
        "paper": (74.98, 0.22, 56.13, 0.13),
        "transition": (76.00, 0.39, 63.73, 0.32),
        "transition_pam": (74.59, 0.46, 62.08, 1.27),
        "perfect selection": (77.10, 0.27, 64.36, 1.68),
    },
    "withheld": {
        "straight": (73.31, 0.51, 58.63, 0.50),
        "paper": (75.09, 0.08, 56.62, 0.22),
        "transition": (76.16, 0.49, 60.89, 0.54),
        "transition_pam": (74.22, 0.26, 59.04, 0.38),
        "perfect selection": (78.00, 0.33, 63.33, 1.11),
    },
}

# docs/RESULTS.md, "Every macro score and per-class recall": (accuracy, mean-class accuracy = macro recall),
# validation, 20 epochs, seeds 1-2, the first measurement (before transition_pam existed).
MEAN_CLASS: dict[str, Point] = {
    "straight": (71.64, 0.61, 56.62, 0.74),
    "paper": (72.13, 0.03, 51.54, 0.07),
    "transition": (74.11, 0.25, 56.21, 0.27),
    "cleanlab": (71.72, 0.16, 55.64, 1.08),
    "perfect selection": (74.98, 0.38, 55.80, 0.03),
}


def _draw(axis: plt.Axes, points: dict[str, Point], filled: bool, label_modes: bool) -> None:
    """One marker per mode with its half-range bars; filled for the withheld faces, open for validation."""
    for mode, (x, dx, y, dy) in points.items():
        colour = COLOURS[mode]
        axis.errorbar(
            x,
            y,
            xerr=dx,
            yerr=dy,
            fmt="o" if filled else "s",
            color=colour,
            markerfacecolor=colour if filled else "white",
            markersize=7,
            capsize=2,
            label=mode if label_modes else None,
        )


def draw(output: Path) -> None:
    """Write the three-panel figure to `output`."""
    figure, axes = plt.subplots(1, 3, figsize=(15, 5))
    for axis, (title, table) in zip(
        axes[:2], (("20 epochs, seeds 1-5", TWENTY_EPOCHS), ("40 epochs, seeds 1-3", FORTY_EPOCHS)), strict=True
    ):
        _draw(axis, table["withheld"], filled=True, label_modes=True)
        _draw(axis, table["validation"], filled=False, label_modes=False)
        axis.set(title=f"{title}\nfilled: withheld faces, open: validation", xlabel="accuracy (%)")
        axis.set_ylabel("macro F1 (%)")
        axis.grid(alpha=0.3)
    axes[0].legend(loc="lower right", fontsize=8)
    _draw(axes[2], MEAN_CLASS, filled=False, label_modes=True)
    axes[2].set(
        title="20 epochs, seeds 1-2, validation\n(the one record of mean-class accuracy)",
        xlabel="accuracy (%)",
        ylabel="mean-class accuracy = macro recall (%)",
    )
    axes[2].legend(loc="lower right", fontsize=8)
    axes[2].grid(alpha=0.3)
    figure.suptitle("FERPlus target + FER2013-labelled auxiliary: seed means, bars = half the range over seeds")
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=80)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("docs/figures/modes_trade_off.png"))
    draw(parser.parse_args().output)


if __name__ == "__main__":
    main()
