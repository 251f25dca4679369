"""read_column: a whole column in row order, through an indices mapping (shuffle, select) as `dataset[name]` gives."""

from __future__ import annotations

import datasets

from sspa_hf.data.columns import read_column


def test_read_column_follows_the_rows_of_a_shuffled_selection():
    data = datasets.Dataset.from_dict({"label": list(range(10)), "source": [f"s{i}" for i in range(10)]})
    view = data.shuffle(seed=0).select([7, 2, 5, 0])
    assert read_column(view, "label") == list(view["label"]) != sorted(view["label"])
    assert read_column(view, "source") == [f"s{i}" for i in view["label"]]
