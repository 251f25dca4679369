"""sspa-export-selection: a run's auxiliary set with its final side, through save_to_disk / load_from_disk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from datasets import load_from_disk
from helpers import QUICKSTART, TINY_FLAGS

from sspa_hf.commands.export_selection import main as export_main
from sspa_hf.commands.train import main as train_main
from sspa_hf.data.sources import load_source

FLAGS = [  # the tiny training of helpers.TINY_FLAGS, with this file's data and schedule (the last flag wins)
    QUICKSTART,
    *TINY_FLAGS,
    "--auxiliary_dataset",
    "synthetic:?role=auxiliary&n=90",
    "--auxiliary_fraction",
    "0.5",
    "--num_train_epochs",
    "3",
    "--selection_epochs",
    "2",
    "--per_device_train_batch_size",
    "32",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "run"
    assert train_main([*FLAGS, "--output_dir", str(out)]) == 0
    return out


def test_export_round_trips_the_auxiliary_set_with_its_selection(run, tmp_path, capsys):
    table = pq.read_table(run / "selection.parquet").to_pandas()
    auxiliary = table[~table["is_target"]]
    assert export_main([str(run), str(tmp_path / "all")]) == 0
    data = load_from_disk(str(tmp_path / "all"))
    assert len(data) == len(auxiliary) == 45  # half of the 90 auxiliary faces
    assert list(data["id"]) == list(auxiliary["id"]) and list(data["sample_index"]) == list(auxiliary["sample_index"])
    assert list(data["consistent"]) == list(auxiliary["clean"])
    margin = [min(np.subtract(py, tau)) for py, tau in zip(auxiliary["last_py"], auxiliary["tau"], strict=True)]
    np.testing.assert_allclose(data["score"], margin, rtol=1e-6)
    assert list(data["label"]) == list(auxiliary["label"]) and data[0]["image"].size == (48, 48)
    card = (tmp_path / "all" / "README.md").read_text()
    assert "| class | faces | kept | kept share |" in card and f"of {len(auxiliary)} auxiliary faces kept" in card

    assert export_main([str(run), str(tmp_path / "kept"), "--kept_only"]) == 0
    kept = load_from_disk(str(tmp_path / "kept"))
    assert len(kept) == int(auxiliary["clean"].sum()) and all(kept["consistent"])


def test_export_exports_a_relabel_column_and_the_modes_score_when_the_table_has_them(run, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    table = pq.read_table(copy / "selection.parquet")
    relabel = np.arange(table.num_rows) % 7
    margin = np.linspace(-1.0, 1.0, table.num_rows)  # a mode's own margin (transition, cleanlab)
    table = table.append_column("target_standard_label", [relabel]).append_column("score", [margin])
    pq.write_table(table, copy / "selection.parquet")
    assert export_main([str(copy), str(tmp_path / "out")]) == 0
    data = load_from_disk(str(tmp_path / "out"))
    assert list(data["target_standard_label"]) == relabel[data["sample_index"]].tolist()
    np.testing.assert_allclose(data["score"], margin[data["sample_index"]], rtol=1e-6)
    # the relabels are a training source as they are (a second round trains on them)
    relabelled = load_source(f"hf:{tmp_path / 'out'}?label_column=target_standard_label")["train"]
    assert list(relabelled["label"]) == list(data["target_standard_label"])


def test_export_refuses_a_changed_data_set_and_missing_pieces_in_one_line(run, tmp_path, capsys):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    record = json.loads((copy / "data_args.json").read_text())
    record["auxiliary_fraction"] = 0.6
    (copy / "data_args.json").write_text(json.dumps(record))
    assert export_main([str(copy), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "changed since the run" in err and not (tmp_path / "out").exists()
    (copy / "data_args.json").unlink()
    assert export_main([str(copy), str(tmp_path / "out")]) == 2
    assert "has no data_args.json" in capsys.readouterr().err  # a run made from Python: the flags to pass
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("")
    assert export_main([str(run), str(tmp_path / "taken")]) == 2
    assert "already exists" in capsys.readouterr().err


def test_export_push_without_hub_access_fails_before_writing(run, tmp_path, capsys, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert export_main([str(run), str(tmp_path / "out"), "--push_to_hub", "me/clean"]) == 2
    assert "--push_to_hub: the Hub cannot be reached" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
