"""Figures of a training run and of an evaluation: class distribution (paper Fig. 1), clean ratio over the
selection epochs, confusion matrix, and grids of auxiliary faces judged clean or noisy (paper Fig. 6).

Figures are drawn on matplotlib's Agg canvas without pyplot, so importing this module never changes the
user's backend and plotting works on machines without a display. Selection tables are pandas DataFrames (the
rows of ``selection.parquet``, see `sspa_hf.run.folder`); a pyarrow Table is converted on the way in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..data.images import open_image, to_rgb
from ..evaluation.metrics import selection_counts
from ..labels import EXPRESSIONS

_DPI = 110
_COLOURS = {"target": "#4C72B0", "auxiliary": "#DD8452", "selected": "#55A868"}


def _frame(table: Any) -> pd.DataFrame:
    """A pandas view of a selection table (DataFrame as is; anything with `to_pandas`, e.g. pyarrow, converted)."""
    if isinstance(table, pd.DataFrame):
        return table
    if hasattr(table, "to_pandas"):
        return table.to_pandas()
    raise TypeError(f"expected a pandas DataFrame (or pyarrow Table), got {type(table).__name__}")


def _save(fig: Figure, path: str | Path) -> Path:
    """Render `fig` with the Agg canvas into `path` (PNG), creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=_DPI, format="png")
    return path


def class_counts_table(table: Any, num_classes: int = len(EXPRESSIONS)) -> dict[str, np.ndarray]:
    """Per class: target, auxiliary and selected (clean) auxiliary sample counts."""
    frame = _frame(table)
    return selection_counts(frame["label"], frame["is_target"], frame["clean"], num_classes)


def plot_class_distribution(table: Any, path: str | Path, class_names: Sequence[str] = EXPRESSIONS) -> Path:
    """Grouped bars per class: target, auxiliary and selected (clean) auxiliary counts (the paper's Fig. 1)."""
    return _save(class_distribution_figure(table, class_names), path)


def class_distribution_figure(table: Any, class_names: Sequence[str] = EXPRESSIONS) -> Figure:
    """The figure of `plot_class_distribution`."""
    names = list(class_names)
    counts = class_counts_table(table, len(names))
    fig = Figure(figsize=(max(7.0, 1.25 * len(names)), 4.6), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(names))
    width = 0.27
    legends = {
        "target": f"target (n={int(counts['target'].sum())})",
        "auxiliary": f"auxiliary (n={int(counts['auxiliary'].sum())})",
        "selected": f"selected (clean) auxiliary (n={int(counts['selected'].sum())})",
    }
    for offset, key in zip((-width, 0.0, width), legends, strict=True):
        bars = ax.bar(x + offset, counts[key], width, label=legends[key], color=_COLOURS[key])
        ax.bar_label(bars, fontsize=7, padding=1)
    ax.set_xticks(x, names)
    ax.set_xlabel("expression class")
    ax.set_ylabel("training samples")
    ax.margins(y=0.08)
    ax.set_title("Training samples per class: target, auxiliary and selected (clean) auxiliary")
    fig.legend(loc="outside lower center", ncols=3, fontsize=9, frameon=False)
    return fig


def history_series(history: Sequence[Mapping[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(epochs, values) of the history entries that hold `key`, or None when none does."""
    rows = [(float(row.get("epoch", i)), float(row[key])) for i, row in enumerate(history) if key in row]
    if not rows:
        return None
    epochs, values = zip(*rows, strict=True)
    return np.asarray(epochs), np.asarray(values)


def plot_clean_ratio_history(
    history: Sequence[Mapping[str, Any]], path: str | Path, class_names: Sequence[str] = EXPRESSIONS
) -> Path:
    """Auxiliary clean ratio per class and overall over the epochs; selection precision/recall/F1 when logged.

    `history` is the list of per-epoch dicts of ``selection_history.json`` (keys ``selection/aux_clean_ratio``,
    ``selection/aux_clean_ratio/class_<c>``, optionally ``selection/precision``/``recall``/``f1``).
    Raises ValueError when no entry holds an auxiliary clean ratio.
    """
    return _save(clean_ratio_figure(history, class_names), path)


def clean_ratio_figure(history: Sequence[Mapping[str, Any]], class_names: Sequence[str] = EXPRESSIONS) -> Figure:
    """The figure of `plot_clean_ratio_history`."""
    overall = history_series(history, "selection/aux_clean_ratio")
    if overall is None:
        raise ValueError("the selection history holds no auxiliary clean ratio (was there auxiliary data?)")
    quality = {name: history_series(history, f"selection/{name}") for name in ("precision", "recall", "f1")}
    quality = {name: series for name, series in quality.items() if series is not None}
    fig = Figure(figsize=(11.0 if quality else 7.5, 4.6), layout="constrained")
    axes = fig.subplots(1, 2 if quality else 1, squeeze=False)[0]
    ax = axes[0]
    cmap = _class_colours(len(class_names))
    for c, name in enumerate(class_names):
        series = history_series(history, f"selection/aux_clean_ratio/class_{c}")
        if series is not None:
            ax.plot(*series, marker="o", markersize=3, linewidth=1.3, color=cmap[c], label=name)
    ax.plot(*overall, color="black", linewidth=2.4, label="all auxiliary")
    ax.set_ylim(-0.02, 1.05)
    ax.set_xlabel("epoch")
    ax.set_ylabel("clean ratio (selected / auxiliary samples)")
    ax.set_title("Auxiliary samples selected as clean, per class")
    ax.grid(alpha=0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8, title="auxiliary label", title_fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if quality:
        qax = axes[1]
        styles = {"precision": "-", "recall": "--", "f1": ":"}
        for name, series in quality.items():
            qax.plot(*series, linestyle=styles[name], marker="o", markersize=3, linewidth=1.6, label=name)
        qax.set_ylim(-0.02, 1.05)
        qax.set_xlabel("epoch")
        qax.xaxis.set_major_locator(MaxNLocator(integer=True))
        qax.set_ylabel("score")
        qax.set_title("Selection vs. target-standard labels\n(positive = auxiliary label agrees)", fontsize=10)
        qax.grid(alpha=0.3)
        qax.legend(fontsize=8, loc="lower right")
    return fig


def _class_colours(n: int) -> list:
    """n distinct colours (tab10)."""
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def plot_confusion_matrix(
    cm: Sequence[Sequence[int]] | np.ndarray,
    class_names: Sequence[str],
    path: str | Path,
    title: str = "Confusion matrix",
) -> Path:
    """Counts in every cell, colours normalised per row (the share of each true class predicted as each class)."""
    return _save(confusion_matrix_figure(cm, class_names, title), path)


def confusion_matrix_figure(
    cm: Sequence[Sequence[int]] | np.ndarray, class_names: Sequence[str], title: str = "Confusion matrix"
) -> Figure:
    """The figure of `plot_confusion_matrix`."""
    counts = np.asarray(cm, dtype=np.int64)
    n = len(class_names)
    if counts.shape != (n, n):
        raise ValueError(f"confusion matrix of shape {counts.shape} does not match {n} class names")
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=np.float64), where=totals > 0)
    side = max(5.0, 0.75 * n + 2.5)
    fig = Figure(figsize=(side + 1.2, side), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    colourbar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    colourbar.set_label("share of the true class (row-normalised)")
    for t in range(n):
        for p in range(n):
            colour = "white" if shares[t, p] > 0.5 else "black"
            ax.text(p, t, f"{counts[t, p]}\n{shares[t, p]:.0%}", ha="center", va="center", fontsize=8, color=colour)
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), [f"{name} ({int(total)})" for name, total in zip(class_names, totals[:, 0], strict=True)])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class (support)")
    ax.set_title(f"{title}\n(n={int(counts.sum())}, accuracy={np.trace(counts) / max(counts.sum(), 1):.1%})")
    return fig


def _face(value: Any) -> np.ndarray:
    """An RGB array of a dataset image value (decoded PIL image, or an `Image(decode=False)` dict)."""
    if isinstance(value, dict):
        value = open_image(value, str(value.get("path") or "image"))
    return np.asarray(to_rgb(value))


def _pick(rows: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Up to `count` of `rows`, drawn without replacement, in ascending order."""
    if len(rows) <= count:
        return np.sort(rows)
    return np.sort(rng.choice(rows, size=count, replace=False))


CLEAN_GROUP, NOISY_GROUP = "consistent (clean)", "inconsistent (noisy)"


def choose_selection_faces(table: Any, per_group: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
    """sample_index values of up to `per_group` auxiliary clean and noisy samples, drawn with `seed`, sorted."""
    frame = _frame(table)
    aux = frame[~frame["is_target"].to_numpy(dtype=bool)]
    clean = aux["clean"].to_numpy(dtype=bool)
    indices = aux["sample_index"].to_numpy(dtype=np.int64)
    rng = np.random.default_rng(seed)
    return {CLEAN_GROUP: _pick(indices[clean], per_group, rng), NOISY_GROUP: _pick(indices[~clean], per_group, rng)}


def plot_selection_grid(
    dataset: Any,
    table: Any,
    path: str | Path,
    per_group: int = 16,
    seed: int = 0,
    class_names: Sequence[str] = EXPRESSIONS,
) -> Path:
    """Two grids of auxiliary faces: judged consistent (clean) and inconsistent (noisy) (the paper's Fig. 6).

    `dataset` is the training set the table describes (row i = sample_index i, with an ``image`` column).
    Each face is captioned with its auxiliary label and, where the reference label is known (>= 0), the
    target-standard label, in red when they disagree. Faces are drawn with a generator seeded by `seed`.
    """
    return _save(selection_grid_figure(dataset, table, per_group, seed, class_names), path)


def selection_grid_figure(
    dataset: Any, table: Any, per_group: int = 16, seed: int = 0, class_names: Sequence[str] = EXPRESSIONS
) -> Figure:
    """The figure of `plot_selection_grid`."""
    frame = _frame(table)
    groups = choose_selection_faces(frame, per_group, seed)
    aux_clean = frame.loc[~frame["is_target"].to_numpy(dtype=bool), "clean"].to_numpy(dtype=bool)
    totals = {CLEAN_GROUP: int(aux_clean.sum()), NOISY_GROUP: int((~aux_clean).sum())}
    by_index = frame.set_index("sample_index")
    references = _reference_labels(dataset, by_index)
    cols = max(1, int(np.ceil(np.sqrt(per_group))))
    rows = max(1, int(np.ceil(per_group / cols)))
    fig = Figure(figsize=(2 * cols * 1.35 + 0.4, rows * 1.75 + 0.9), layout="constrained")
    fig.suptitle(
        "Auxiliary faces judged against the target annotation standard\n"
        "aux: auxiliary label; ref: target-standard label where known (red: they differ)",
        fontsize=11,
    )
    for subfig, (name, chosen) in zip(fig.subfigures(1, 2, wspace=0.04), groups.items(), strict=True):
        subfig.suptitle(f"{name}: {len(chosen)} of {totals[name]} shown", fontsize=11)
        axes = subfig.subplots(rows, cols, squeeze=False).ravel()
        for ax in axes:
            ax.set_axis_off()
        if len(chosen) == 0:
            axes[0].text(0.0, 0.5, "none", fontsize=11, transform=axes[0].transAxes)
            continue
        images = dataset.select([int(i) for i in chosen])["image"]
        for ax, index, image in zip(axes, chosen, images, strict=False):
            label = int(by_index.at[index, "label"])
            reference = references.get(int(index), -1)
            ax.imshow(_face(image))
            caption = f"aux: {class_names[label]}"
            colour = "black"
            if reference >= 0:
                caption += f"\nref: {class_names[reference]}"
                colour = "black" if reference == label else "#C0392B"
            ax.set_title(caption, fontsize=8, color=colour)
    return fig


def _reference_labels(dataset: Any, by_index: pd.DataFrame) -> dict[int, int]:
    """sample_index -> target-standard label, from the table's column or else the dataset's (-1 unknown)."""
    if "reference_label" in by_index.columns:
        return {int(i): int(r) for i, r in by_index["reference_label"].items()}
    if dataset is not None and "reference_label" in getattr(dataset, "column_names", ()):
        return dict(enumerate(int(r) for r in dataset["reference_label"]))
    return {}
