"""Figures: class distribution (Fig. 1), clean ratio history, confusion matrix, selection grids (Fig. 6), report."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import Dataset, Features, Image, Value
from matplotlib.colors import to_hex
from PIL import Image as PILImage

from sspa_hf.labels import EXPRESSIONS
from sspa_hf.run.folder import read_selection_history, write_training_report
from sspa_hf.run.plots import (
    CLEAN_GROUP,
    NOISY_GROUP,
    choose_selection_faces,
    class_counts_table,
    class_distribution_figure,
    clean_ratio_figure,
    confusion_matrix_figure,
    plot_confusion_matrix,
    selection_grid_figure,
)


def _table(n_target: int = 20, n_aux: int = 40, seed: int = 0) -> pd.DataFrame:
    """A selection table like training writes: targets first, then auxiliary rows, half of them clean."""
    rng = np.random.default_rng(seed)
    n = n_target + n_aux
    labels = rng.integers(0, 7, n)
    reference = labels.copy()
    reference[n_target + 1 :: 3] = (labels[n_target + 1 :: 3] + 1) % 7  # every third auxiliary row disagrees
    reference[n_target + 2 :: 7] = -1  # some unknown
    reference[:n_target] = labels[:n_target]
    clean = np.ones(n, dtype=bool)
    clean[n_target:] = rng.random(n_aux) < 0.5
    return pd.DataFrame(
        {
            "sample_index": np.arange(n),
            "source": ["t"] * n_target + ["a"] * n_aux,
            "id": [f"id{i}" for i in range(n)],
            "label": labels,
            "is_target": np.arange(n) < n_target,
            "clean": clean,
            "tau": [[0.2, 0.3]] * n,
            "last_py": [[0.5, 0.4]] * n,
            "updates": np.full(n, 3),
            "changed_epoch": np.full(n, -1),
            "reference_label": reference,
        }
    )


def _faces(n: int, size: int = 24) -> Dataset:
    """`n` small RGB images of distinct flat colours (row i has red value i), as an `Image` column."""
    images = [PILImage.new("RGB", (size, size), (i % 256, 80, 160)) for i in range(n)]
    return Dataset.from_dict(
        {"image": images, "x": list(range(n))}, features=Features({"image": Image(), "x": Value("int64")})
    )


def _history(with_quality: bool = True) -> list[dict]:
    history = []
    for epoch in range(4):
        row = {"epoch": float(epoch), "selection/aux_clean_ratio": 1.0 - 0.1 * epoch}
        for c in range(7):
            if c != 1:  # no auxiliary disgust sample: no key, like SampleSelector.statistics
                row[f"selection/aux_clean_ratio/class_{c}"] = 1.0 - 0.05 * epoch * (c + 1) / 7
        if with_quality:
            row.update({"selection/precision": 0.7 + 0.05 * epoch, "selection/recall": 1.0 - 0.1 * epoch})
            row["selection/f1"] = 0.8
        history.append(row)
    return history


def _texts(fig) -> list[str]:
    return [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))]


def test_class_counts_and_distribution_figure_show_every_count_and_name():
    table = _table()
    counts = class_counts_table(table)
    labels, target, clean = table["label"].to_numpy(), table["is_target"].to_numpy(), table["clean"].to_numpy()
    for c in range(7):
        assert counts["target"][c] == np.sum((labels == c) & target)
        assert counts["auxiliary"][c] == np.sum((labels == c) & ~target)
        assert counts["selected"][c] == np.sum((labels == c) & ~target & clean)
    fig = class_distribution_figure(pa.Table.from_pandas(table))  # pyarrow tables are accepted too
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == list(EXPRESSIONS)
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == [
        "target (n=20)",
        "auxiliary (n=40)",
        f"selected (clean) auxiliary (n={int(counts['selected'].sum())})",
    ]
    heights = [[int(bar.get_height()) for bar in container] for container in ax.containers]
    assert heights == [counts["target"].tolist(), counts["auxiliary"].tolist(), counts["selected"].tolist()]
    bar_labels = [t.get_text() for t in ax.texts]
    assert bar_labels == [str(v) for key in ("target", "auxiliary", "selected") for v in counts[key]]


def test_clean_ratio_history_has_a_line_per_class_plus_overall_and_a_quality_panel():
    history = _history()
    fig = clean_ratio_figure(history)
    assert len(fig.axes) == 2
    ratio_ax, quality_ax = fig.axes
    lines = {line.get_label(): line for line in ratio_ax.get_lines()}
    assert set(lines) == {name for i, name in enumerate(EXPRESSIONS) if i != 1} | {"all auxiliary"}
    np.testing.assert_allclose(lines["all auxiliary"].get_ydata(), [1.0, 0.9, 0.8, 0.7])
    np.testing.assert_allclose(lines["surprise"].get_xdata(), [0, 1, 2, 3])
    np.testing.assert_allclose(lines["surprise"].get_ydata(), [1.0 - 0.05 * e for e in range(4)])
    assert {line.get_label() for line in quality_ax.get_lines()} == {"precision", "recall", "f1"}
    assert ratio_ax.get_xlabel() == "epoch" and "clean ratio" in ratio_ax.get_ylabel()
    assert len(clean_ratio_figure(_history(with_quality=False)).axes) == 1
    with pytest.raises(ValueError, match="no auxiliary clean ratio"):
        clean_ratio_figure([{"epoch": 0.0, "selection/target_clean_ratio": 1.0}])


def test_confusion_matrix_shows_counts_with_row_normalised_colours(tmp_path):
    cm = np.array([[5, 5, 0], [0, 0, 0], [1, 2, 7]])
    fig = confusion_matrix_figure(cm, ["a", "b", "c"], title="Test split")
    ax = fig.axes[0]
    shares = np.asarray(ax.images[0].get_array())
    np.testing.assert_allclose(shares, [[0.5, 0.5, 0], [0, 0, 0], [0.1, 0.2, 0.7]])
    cells = [t.get_text() for t in ax.texts]
    assert cells[0] == "5\n50%" and cells[8] == "7\n70%" and cells[4] == "0\n0%"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a (10)", "b (0)", "c (10)"]
    assert "Test split" in ax.get_title() and "n=20" in ax.get_title()
    path = plot_confusion_matrix(cm, ["a", "b", "c"], tmp_path / "sub" / "cm.png", "Test split")
    with PILImage.open(path) as image:
        assert image.format == "PNG" and image.width > 300
    with pytest.raises(ValueError, match="3 class names"):
        confusion_matrix_figure(np.zeros((4, 4)), ["a", "b", "c"])


def test_selection_faces_are_auxiliary_of_the_right_side_and_seeded():
    table = _table(n_target=10, n_aux=200)
    picked = choose_selection_faces(table, per_group=16, seed=3)
    rows = table.set_index("sample_index")
    assert len(picked[CLEAN_GROUP]) == 16 and len(picked[NOISY_GROUP]) == 16
    assert not rows.loc[picked[CLEAN_GROUP], "is_target"].any() and rows.loc[picked[CLEAN_GROUP], "clean"].all()
    assert not rows.loc[picked[NOISY_GROUP], "is_target"].any() and not rows.loc[picked[NOISY_GROUP], "clean"].any()
    again = choose_selection_faces(table, per_group=16, seed=3)
    other = choose_selection_faces(table, per_group=16, seed=4)
    assert all(np.array_equal(picked[k], again[k]) for k in picked)
    assert not np.array_equal(picked[CLEAN_GROUP], other[CLEAN_GROUP])
    small = choose_selection_faces(_table(n_target=2, n_aux=6), per_group=16)
    assert len(small[CLEAN_GROUP]) + len(small[NOISY_GROUP]) == 6  # fewer than asked: all of them


def test_selection_grid_captions_auxiliary_and_reference_labels():
    table = _table(n_target=4, n_aux=30)
    faces = _faces(len(table))
    fig = selection_grid_figure(faces, table, per_group=9, seed=0)
    chosen = choose_selection_faces(table, per_group=9, seed=0)
    rows = table.set_index("sample_index")
    captions = {}
    for ax in fig.axes:
        if ax.images:
            red = int(np.asarray(ax.images[0].get_array())[0, 0, 0])  # the face's red value = its row
            captions[red] = (ax.get_title(), to_hex(ax.title.get_color()))
    assert sorted(captions) == sorted(np.concatenate(list(chosen.values())).tolist())
    for index, (caption, colour) in captions.items():
        label, reference = int(rows.at[index, "label"]), int(rows.at[index, "reference_label"])
        lines = caption.split("\n")
        assert lines[0] == f"aux: {EXPRESSIONS[label]}"
        if reference < 0:
            assert len(lines) == 1
        else:
            assert lines[1] == f"ref: {EXPRESSIONS[reference]}"
            assert (colour == "#c0392b") == (reference != label)
    titles = _texts(fig)
    assert any(t.startswith(f"{CLEAN_GROUP}: ") for t in titles) and any(
        t.startswith(f"{NOISY_GROUP}: ") for t in titles
    )


def _write_run(folder, table: pd.DataFrame, history: list[dict] | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(table, preserve_index=False), folder / "selection.parquet")
    if history is not None:
        (folder / "selection_history.json").write_text(json.dumps(history))


def test_training_report_writes_the_three_figures(tmp_path):
    table = _table(n_target=6, n_aux=20)
    _write_run(tmp_path / "run", table, _history())
    written = write_training_report(tmp_path / "run", _faces(len(table)))
    assert [p.name for p in written] == ["class_distribution.png", "clean_ratio.png", "selection_grid.png"]
    for path in written:
        with PILImage.open(path) as image:
            assert image.format == "PNG" and image.width > 200 and image.height > 200


def test_training_report_skips_what_it_cannot_draw_with_a_log_line(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="sspa_hf.run.folder")
    assert write_training_report(tmp_path / "nothing") == []
    assert "selection.parquet not found" in caplog.text
    target_only = _table(n_target=10, n_aux=0)
    _write_run(tmp_path / "target_only", target_only, [{"epoch": 0.0, "selection/target_clean_ratio": 1.0}])
    assert write_training_report(tmp_path / "target_only", _faces(10)) == []
    assert "no auxiliary data" in caplog.text
    assert not list((tmp_path / "target_only").glob("*.png"))
    _write_run(tmp_path / "no_history", _table(n_target=3, n_aux=5), None)
    written = write_training_report(tmp_path / "no_history")  # no history, no images
    assert [p.name for p in written] == ["class_distribution.png"]
    assert "clean_ratio.png skipped" in caplog.text and "selection_grid.png skipped" in caplog.text


def test_history_falls_back_to_the_trainer_state_log(tmp_path):
    _write_run(tmp_path, _table(n_target=3, n_aux=9), None)
    log = [{"loss": 1.0, "step": 1}, *({**row, "epoch": row["epoch"] + 1.0} for row in _history())]
    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": log}))
    assert read_selection_history(tmp_path) == log[1:]
    assert [p.name for p in write_training_report(tmp_path)] == ["class_distribution.png", "clean_ratio.png"]
    (tmp_path / "selection_history.json").write_text(json.dumps(_history()[:2]))  # preferred when present
    assert read_selection_history(tmp_path) == _history()[:2]
