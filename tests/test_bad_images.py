"""Bad images are found before training: one line and bad_images.tsv, or --skip_bad_images drops them."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import QUICKSTART, TINY_FLAGS
from PIL import Image

from sspa_hf import EXPRESSIONS
from sspa_hf.commands.train import main

FLAGS = [  # the tiny training of helpers.TINY_FLAGS, with this file's data and schedule (the last flag wins)
    QUICKSTART,
    *TINY_FLAGS,
    "--auxiliary_dataset",
    "synthetic:?role=auxiliary&n=30",
    "--per_device_train_batch_size",
    "16",
]


def _jpeg(seed: int) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 255, (48, 48, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


@pytest.fixture()
def folder(tmp_path, monkeypatch) -> Path:
    """An image folder whose train split holds one truncated JPEG; the check cache in tmp_path."""
    monkeypatch.setenv("SSPA_HF_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "faces"
    for split in ("train", "test"):
        for c, name in enumerate(EXPRESSIONS):
            (root / split / name).mkdir(parents=True)
            for i in range(2):
                (root / split / name / f"{i}.jpg").write_bytes(_jpeg(100 * c + i))
    (root / "train" / "fear" / "broken.jpg").write_bytes(_jpeg(7)[:400])
    return root


def test_a_bad_image_stops_the_run_before_training_with_a_report(folder, tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*FLAGS, "--target_dataset", f"imagefolder:{folder}", "--output_dir", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "broken.jpg" in err[0] and "--skip_bad_images" in err[0], err
    assert "BytesIO" not in err[0]
    report = (out / "bad_images.tsv").read_text().splitlines()
    assert report[0] == "name\treason" and len(report) == 2 and report[1].startswith(str(folder / "train" / "fear"))
    assert not (out / "model.safetensors").exists() and not (out / "selection.parquet").exists()
    assert json.loads((out / "run_status.json").read_text())["status"] == "failed"


def test_skip_bad_images_leaves_them_out_and_says_how_many(folder, tmp_path, caplog):
    out = tmp_path / "run"
    flags = [*FLAGS, "--target_dataset", f"imagefolder:{folder}", "--output_dir", str(out)]
    with caplog.at_level("WARNING"):
        assert main([*flags, "--skip_bad_images", "true"]) == 0
    assert "left out 1 bad image(s) of the training data" in caplog.text
    table = pq.read_table(out / "selection.parquet")
    assert table.num_rows == 14 + 30 and "broken" not in " ".join(table.column("id").to_pylist())
    assert table.column("sample_index").to_pylist() == list(range(44))


def test_the_verdict_is_cached_by_fingerprint(folder, monkeypatch):
    import sspa_hf.data.image_check as image_check
    from sspa_hf.data import load_source

    train = load_source(f"imagefolder:{folder}")["train"]
    first = image_check.find_bad_images(train, "training")
    assert [name.rsplit("/", 1)[-1] for _, name, _ in first] == ["broken.jpg"]

    def must_not_run(value, name):
        raise AssertionError("checked again")

    monkeypatch.setattr(image_check, "check_one", must_not_run)
    assert image_check.find_bad_images(load_source(f"imagefolder:{folder}")["train"], "training") == first


def test_an_image_fixed_in_place_is_accepted_at_once(folder, tmp_path, capsys):
    out = tmp_path / "run"
    flags = [*FLAGS, "--target_dataset", f"imagefolder:{folder}", "--output_dir", str(out), "--save_strategy", "no"]
    assert main(flags) == 2
    assert "truncated JPEG" in capsys.readouterr().err  # the reason in words, no object address
    (folder / "train" / "fear" / "broken.jpg").write_bytes(_jpeg(7))  # the user fixes it
    assert main(flags) == 0


def test_an_image_corrupted_after_a_clean_check_is_caught_by_the_check(folder):
    import sspa_hf.data.image_check as image_check
    from sspa_hf.data import load_source

    (folder / "train" / "fear" / "broken.jpg").write_bytes(_jpeg(7))
    assert image_check.find_bad_images(load_source(f"imagefolder:{folder}")["train"], "training") == []
    (folder / "train" / "happiness" / "0.jpg").write_bytes(b"")  # corrupted later
    bad = image_check.find_bad_images(load_source(f"imagefolder:{folder}")["train"], "training")
    assert [(name.rsplit("/", 2)[-2:], reason) for _, name, reason in bad] == [(["happiness", "0.jpg"], "empty file")]


@pytest.mark.parametrize(
    "content,reason",
    [(b"", "empty file"), (b"not an image at all", "not an image file PIL can read"), ("half", "truncated JPEG")],
)
def test_reasons_are_words_never_object_addresses(content, reason):
    from sspa_hf.data.image_check import check_one

    data = _jpeg(3)[:300] if content == "half" else content
    said = check_one({"bytes": data, "path": None}, "x.jpg")
    assert said.startswith(reason) and "0x" not in said


@pytest.mark.parametrize("chunk", [3, 4096])
def test_the_check_reads_a_chunk_at_a_time_and_reports_each_bad_row_once(folder, monkeypatch, chunk):
    import datasets

    import sspa_hf.data.image_check as image_check
    from sspa_hf.data import load_source

    monkeypatch.setattr(image_check, "CHECK_CHUNK", chunk)
    train = load_source(f"imagefolder:{folder}")["train"]
    train = train.select([*range(len(train)), *range(len(train))])  # the broken file twice, in different chunks
    paths = [value["path"] for value in train.cast_column("image", datasets.Image(decode=False))["image"]]
    broken = [row for row, path in enumerate(paths) if path.endswith("broken.jpg")]
    assert len(broken) == 2 and broken[1] - broken[0] > 3
    assert [row for row, _, _ in image_check.find_bad_images(train, "training")] == broken


def test_decoding_names_the_file_and_the_reason_without_a_stream_address():
    """PIL names its stream (`<_io.BytesIO object at 0x...>`): the training, evaluation and prepare paths say why in
    words instead, as the image check does."""
    from sspa_hf.data.images import BadImageError, decode

    with pytest.raises(BadImageError) as bad:
        decode(b"not an image at all", "faces/angry/0.png")
    reason = "not an image file PIL can read (unknown or corrupt format)"
    assert str(bad.value) == f"cannot read image faces/angry/0.png: {reason}"
