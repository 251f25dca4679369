"""Each loader on a tiny fixture tree in its real layout: counts, mapped labels, splits, ids and bad input."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from datasets import Image as DsImage
from helpers import (
    AFFECTNET_CODE,
    BOX_COLOUR,
    CAER_S_FOLDER,
    FER2013_CODE,
    FERPLUS_CASES,
    build_affectnet_csv,
    build_affectnet_npy,
    build_caer_s,
    build_fer2013_csv,
    build_fer2013_export,
    build_fer2013_ferplus_parquet,
    build_ferplus,
    build_rafdb,
    pixels,
    png_bytes,
    save_image,
)

from sspa_hf.data import BASE_COLUMNS, load_source, read_source
from sspa_hf.data.readers.ferplus import ferplus_label, ferplus_winner
from sspa_hf.data.schema import ReadContext
from sspa_hf.errors import UserInputError
from sspa_hf.labels import EXPRESSIONS, LABEL2ID, class_label_feature

# Tiny fixtures often lack classes on purpose; the empty-class warning has its own test.
pytestmark = pytest.mark.filterwarnings("ignore:.*no samples of class:UserWarning")

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "fer2013_ferplus"


def names(split: Dataset) -> list[str]:
    return [EXPRESSIONS[i] for i in split["label"]]


def check_schema(splits: DatasetDict, source: str) -> None:
    for split in splits.values():
        assert split.column_names[: len(BASE_COLUMNS)] == list(BASE_COLUMNS)
        assert split.features["label"] == class_label_feature()
        assert isinstance(split.features["image"], DsImage)
        assert split.features["reference_label"] == Value("int64")
        assert set(split["source"]) == {source}


# ----- RAF-DB -----


def test_rafdb_counts_labels_and_splits(tmp_path):
    rows = build_rafdb(tmp_path / "basic", per_class=2)
    ds = load_source(f"rafdb:{tmp_path / 'basic'}")
    check_schema(ds, "rafdb")
    assert list(ds) == ["train", "test"]
    assert len(ds["train"]) == len(ds["test"]) == 14
    expected = {name: label for name, _, label in rows}
    for split in ("train", "test"):
        assert all(i.startswith(f"{split}_") for i in ds[split]["id"])
        assert names(ds[split]) == [expected[i] for i in ds[split]["id"]]
    assert ds["train"][0]["image"].size == (100, 100)
    assert set(ds["train"]["reference_label"]) == {-1}


def test_rafdb_found_under_basic_subfolder(tmp_path):
    build_rafdb(tmp_path / "RAF-DB" / "basic")
    assert len(load_source(f"rafdb:{tmp_path / 'RAF-DB'}")["train"]) == 7


def test_rafdb_unknown_label_names_file_and_line(tmp_path):
    build_rafdb(tmp_path)
    label_file = tmp_path / "EmoLabel" / "list_patition_label.txt"
    lines = label_file.read_text().splitlines()
    lines[2] = lines[2].split()[0] + " 8"
    label_file.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserInputError, match=r"list_patition_label\.txt:3: unknown RAF-DB label '8'"):
        load_source(f"rafdb:{tmp_path}")


def test_rafdb_missing_image_names_path_and_layout(tmp_path):
    build_rafdb(tmp_path)
    missing = tmp_path / "Image" / "aligned" / "test_00004_aligned.jpg"
    missing.unlink()
    with pytest.raises(UserInputError) as err:
        load_source(f"rafdb:{tmp_path}")
    assert str(missing) in str(err.value) and "Image/aligned" in str(err.value)
    # with skipping, the missing file is recorded (never silently dropped)
    with pytest.warns(UserWarning, match="rafdb test: no samples of class happiness"):
        source = read_source(f"rafdb:{tmp_path}", ReadContext(skip_bad_images=True))
    assert len(source.splits["test"]) == 6 and source.bad == [(str(missing), "missing")]


def test_missing_label_file_and_folder_name_the_expected_path(tmp_path):
    with pytest.raises(UserInputError, match=r"nowhere.*expected layout: RAF-DB"):
        load_source(f"rafdb:{tmp_path / 'nowhere'}")
    (tmp_path / "Image").mkdir()
    with pytest.raises(UserInputError, match=r"EmoLabel/list_patition_label\.txt not found"):
        load_source(f"rafdb:{tmp_path}")


def test_empty_class_warns_with_counts(tmp_path):
    build_rafdb(tmp_path)
    label_file = tmp_path / "EmoLabel" / "list_patition_label.txt"
    kept = [line for line in label_file.read_text().splitlines() if not line.startswith("train_") or line[-1] != "2"]
    label_file.write_text("\n".join(kept) + "\n")
    with pytest.warns(UserWarning, match=r"rafdb train: no samples of class fear; class counts: anger=1, disgust=1"):
        ds = load_source(f"rafdb:{tmp_path}")
    assert "fear" not in names(ds["train"])


# ----- AffectNet -----


def test_affectnet_csv_labels_dropped_counts_and_test_alias(tmp_path):
    written = build_affectnet_csv(tmp_path)
    source = read_source(f"affectnet:{tmp_path}")
    assert source.dropped["train"] == {"contempt": 1, "no-face": 1}
    assert source.face_work.crop_box
    splits = source.splits
    assert list(splits) == ["train", "validation", "test"]
    assert len(splits["train"]) == 7 and len(splits["validation"]) == 7  # validation.csv has no header row
    assert splits["test"] is splits["validation"]
    codes = dict(written["training.csv"])
    assert names(splits["train"]) == [AFFECTNET_CODE[codes[i]] for i in splits["train"]["id"]]
    assert splits["train"]["face_box"][0] == [40.0, 20.0, 64.0, 64.0]
    valence = np.asarray(splits["train"]["valence"])
    np.testing.assert_allclose(valence, [round(0.1 * codes[i] - 0.3, 3) for i in splits["train"]["id"]], atol=1e-6)


def test_affectnet_csv_load_source_crops_the_face_box(tmp_path, monkeypatch):
    monkeypatch.setenv("SSPA_HF_CACHE", str(tmp_path / "cache"))
    build_affectnet_csv(tmp_path / "an")
    ds = load_source(f"affectnet:{tmp_path / 'an'}")
    check_schema(ds, "affectnet")
    assert len(ds["test"]) == 7 and ds["test"]["id"] == ds["validation"]["id"]
    face = np.asarray(ds["train"][0]["image"]).reshape(-1, 3).mean(axis=0)
    assert ds["train"][0]["image"].size == (64, 64)
    np.testing.assert_allclose(face, BOX_COLOUR, atol=12)  # only the box, none of the blue background
    assert "face_box" not in ds["train"].column_names and "arousal" in ds["train"].column_names


def test_affectnet_unknown_expression_names_file_and_line(tmp_path):
    build_affectnet_csv(tmp_path)
    csv_file = tmp_path / "Manually_Annotated_file_lists" / "training.csv"
    rows = list(csv.reader(csv_file.open()))
    rows[3][6] = "11"
    with csv_file.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    with pytest.raises(UserInputError, match=r"training\.csv:4: unknown AffectNet expression '11'"):
        read_source(f"affectnet:{tmp_path}")


def test_affectnet_missing_image_names_it(tmp_path):
    written = build_affectnet_csv(tmp_path)
    rel = written["validation.csv"][2][0]
    (tmp_path / "Manually_Annotated_Images" / rel).unlink()
    with pytest.raises(UserInputError, match=r"validation\.csv:3 lists .* does not exist"):
        read_source(f"affectnet:{tmp_path}")


def test_affectnet_without_either_layout_explains_both(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(UserInputError, match=r"Manually_Annotated_file_lists.*train_set"):
        read_source(f"affectnet:{tmp_path}")


def test_affectnet_npy_layout(tmp_path):
    written = build_affectnet_npy(tmp_path)
    source = read_source(f"affectnet:{tmp_path}")
    assert not source.face_work.needed  # already cropped faces
    assert source.dropped["train"] == {"contempt": 1}
    ds = load_source(f"affectnet:{tmp_path}")
    check_schema(ds, "affectnet")
    assert len(ds["train"]) == 7 and len(ds["validation"]) == len(ds["test"]) == 7
    codes = {f"train_set/images/{name}": code for name, code in written["train_set"]}
    assert names(ds["train"]) == [AFFECTNET_CODE[codes[i]] for i in ds["train"]["id"]]
    np.testing.assert_allclose(ds["train"]["valence"], [0.1 * codes[i] for i in ds["train"]["id"]], atol=1e-6)
    assert read_source(f"affectnet:{tmp_path}?align=1").face_work.align


# ----- CAER-S -----


def test_caer_s_cropped_tree(tmp_path):
    rows = build_caer_s(tmp_path)
    ds = load_source(f"caer_s:{tmp_path}?faces=cropped")
    check_schema(ds, "caer_s")
    assert len(ds["train"]) == len(ds["test"]) == 7
    expected = dict(rows)
    assert names(ds["train"]) == [expected[i] for i in ds["train"]["id"]]
    assert ds["train"]["id"][0] == "train/Anger/0001.png"
    assert {CAER_S_FOLDER[i.split("/")[1]] for i in ds["test"]["id"]} == set(EXPRESSIONS)


def test_caer_s_frames_need_face_detection(tmp_path):
    build_caer_s(tmp_path)
    work = read_source(f"caer_s:{tmp_path}").face_work
    assert work.detect and work.no_face == "drop"


def test_caer_s_unknown_class_folder_is_named(tmp_path):
    build_caer_s(tmp_path)
    save_image(tmp_path / "train" / "Contempt" / "0001.png", 16, 16, 0)
    with pytest.raises(UserInputError, match=r"unknown class folder .*train/Contempt"):
        load_source(f"caer_s:{tmp_path}?faces=cropped")


# ----- FER2013 -----


def test_fer2013_csv_splits_labels_and_pixels(tmp_path):
    rows = build_fer2013_csv(tmp_path / "fer2013" / "fer2013.csv")
    ds = load_source(f"fer2013:{tmp_path}")  # the folder holding fer2013/fer2013.csv
    check_schema(ds, "fer2013")
    assert {name: len(split) for name, split in ds.items()} == {"train": 14, "validation": 7, "test": 7}
    first = ds["train"][0]
    assert first["id"] == "fer2013_00000" and first["image"].size == (48, 48) and first["image"].mode == "L"
    np.testing.assert_array_equal(np.asarray(first["image"]), rows[0]["pixels"])
    by_id = {f"fer2013_{i:05d}": FER2013_CODE[r["code"]] for i, r in enumerate(rows)}
    for split in ds.values():
        assert names(split) == [by_id[i] for i in split["id"]]


def test_fer2013_dedup_drops_training_copies_of_evaluation_faces(tmp_path):
    csv_file = tmp_path / "fer2013.csv"
    build_fer2013_csv(csv_file, duplicate=True)
    source = read_source(f"fer2013:{csv_file}")
    assert len(source.splits["train"]) == 13
    assert source.dropped["train"] == {"duplicate of an evaluation image": 1}
    assert len(load_source(f"fer2013:{csv_file}?dedup=0")["train"]) == 14


def _rewrite_csv_cell(csv_file: Path, row: int, column: int, value: str) -> None:
    rows = list(csv.reader(csv_file.open()))
    rows[row][column] = value
    with csv_file.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)


def test_fer2013_unknown_emotion_and_usage_name_file_and_line(tmp_path):
    csv_file = tmp_path / "fer2013.csv"
    build_fer2013_csv(csv_file)
    _rewrite_csv_cell(csv_file, 5, 0, "7")
    with pytest.raises(UserInputError, match=r"fer2013\.csv:6: unknown FER2013 emotion '7'"):
        load_source(f"fer2013:{csv_file}")
    _rewrite_csv_cell(csv_file, 5, 0, "3")
    _rewrite_csv_cell(csv_file, 9, 2, "Validation")
    with pytest.raises(UserInputError, match=r"fer2013\.csv:10: unknown Usage 'Validation'"):
        load_source(f"fer2013:{csv_file}")


def test_fer2013_unreadable_pixels_error_or_skip(tmp_path):
    csv_file = tmp_path / "fer2013.csv"
    build_fer2013_csv(csv_file)
    _rewrite_csv_cell(csv_file, 3, 1, "12 34 56")
    with pytest.raises(UserInputError, match=r"fer2013\.csv:4: pixels are not 2304 integers"):
        load_source(f"fer2013:{csv_file}")
    source = read_source(f"fer2013:{csv_file}", ReadContext(skip_bad_images=True))
    assert len(source.splits["train"]) == 13
    assert source.bad == [(f"{csv_file}:4", "unreadable pixels")]


def test_fer2013_image_folder_export_splits_by_usage_prefix(tmp_path):
    rows = build_fer2013_export(tmp_path)
    ds = load_source(f"fer2013:{tmp_path}")
    check_schema(ds, "fer2013")
    assert {name: len(split) for name, split in ds.items()} == {"train": 7, "validation": 7, "test": 7}
    assert all(i.startswith("test/") and "/PublicTest_" in i for i in ds["validation"]["id"])
    assert all("/PrivateTest_" in i for i in ds["test"]["id"])
    expected = {rel: label for rel, _, label in rows}
    for split in ds.values():
        assert names(split) == [expected[i] for i in split["id"]]
    save_image(tmp_path / "train" / "contempt" / "Training_1.jpg", 48, 48, 0, grey=True)
    with pytest.raises(UserInputError, match=r"unknown class folder .*train/contempt"):
        load_source(f"fer2013:{tmp_path}")


# ----- FERPlus -----


@pytest.mark.parametrize(("votes", "expected"), FERPLUS_CASES)
def test_ferplus_majority_rule(votes, expected):
    label, reason = ferplus_label(votes, "majority")
    assert label == (LABEL2ID[expected] if expected else -1)
    assert (reason is None) == (expected is not None)


def test_ferplus_plurality_rule():
    assert ferplus_winner([4, 3, 2, 1, 0, 0, 0, 0, 0, 0], "plurality") == (0, None)  # no majority, unique top
    assert ferplus_winner([4, 3, 2, 1, 0, 0, 0, 0, 0, 0], "majority") == (-1, "no majority")
    assert ferplus_winner([4, 0, 0, 0, 1, 0, 0, 4, 1, 0], "plurality") == (-1, "tie")
    assert ferplus_label([2, 0, 0, 0, 0, 0, 0, 3, 0, 0], "plurality") == (-1, "contempt")
    assert ferplus_label([1, 1, 1, 1, 1, 1, 1, 1, 1, 1], "plurality") == (-1, "no majority")  # all single votes
    assert ferplus_label(None) == (-1, "no votes")


def test_ferplus_join_keeps_both_standards(tmp_path):
    rows = build_ferplus(tmp_path)
    source = read_source(f"ferplus:{tmp_path}")
    assert source.dropped["train"] == {"no majority": 1, "contempt": 1, "NF": 1}
    ds = source.splits
    check_schema(ds, "ferplus")
    assert {name: len(split) for name, split in ds.items()} == {"train": 7, "validation": 7, "test": 7}
    by_id = {f"fer2013_{i:05d}": r for i, r in enumerate(rows)}
    train = ds["train"]
    assert names(train) == [by_id[i]["expected"] for i in train["id"]]
    assert train["reference_label"] == [LABEL2ID[FER2013_CODE[by_id[i]["code"]]] for i in train["id"]]
    assert train["fer2013_label"] == train["reference_label"] and train["ferplus_label"] == train["label"]
    assert train["ferplus_votes"][0] == by_id[train["id"][0]]["votes"]

    old = load_source(f"ferplus:{tmp_path}?label=fer2013")
    assert len(old["train"]) == 10  # every face keeps its FER2013 label
    check_schema(old, "fer2013")
    assert old["train"]["reference_label"][7:] == [-1, -1, -1]  # no FERPlus label for the dropped ones


def test_ferplus_row_mismatch_names_the_line(tmp_path):
    build_ferplus(tmp_path)
    _rewrite_csv_cell(tmp_path / "fer2013new.csv", 12, 0, "PrivateTest")
    with pytest.raises(UserInputError, match=r"fer2013new\.csv:13: Usage 'PrivateTest' but .*fer2013\.csv:13"):
        read_source(f"ferplus:{tmp_path}")
    _rewrite_csv_cell(tmp_path / "fer2013new.csv", 12, 0, "PublicTest")
    lines = (tmp_path / "fer2013new.csv").read_text().splitlines()
    (tmp_path / "fer2013new.csv").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(UserInputError, match=r"fer2013new\.csv: has 23 rows but .*fer2013\.csv:25 is row 24"):
        read_source(f"ferplus:{tmp_path}")


# ----- FER2013 + FERPlus parquet -----


def test_fer2013_ferplus_parquet_labels_reference_and_drops(tmp_path):
    written = build_fer2013_ferplus_parquet(tmp_path)
    source = read_source(f"fer2013_ferplus:{tmp_path}")
    assert source.dropped["train"] == {"duplicate of an evaluation image": 1, "contempt": 1, "no votes": 1}
    ds = source.splits
    check_schema(ds, "ferplus")
    assert list(ds) == ["train", "validation"] and len(ds["train"]) == len(ds["validation"]) == 7
    train_rows = written["train"][:7]
    assert ds["train"]["label"] == [LABEL2ID[FER2013_CODE[r["plus"]]] for r in train_rows]
    assert ds["train"]["reference_label"] == [LABEL2ID[FER2013_CODE[r["fer"]]] for r in train_rows]
    assert ds["train"]["fer2013_label"] == ds["train"]["reference_label"]

    old = read_source(f"fer2013_ferplus:{tmp_path}?label=fer2013").splits
    check_schema(old, "fer2013")
    assert len(old["train"]) == 9  # contempt and no-votes faces keep their FER2013 label; the duplicate does not
    assert old["train"]["reference_label"][7:] == [-1, -1]
    assert len(read_source(f"fer2013_ferplus:{tmp_path}?dedup=0").splits["train"]) == 8


def test_fer2013_ferplus_missing_column_is_named(tmp_path):
    build_fer2013_ferplus_parquet(tmp_path)
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "validation.parquet").drop_columns(["ferplus_votes"])
    pq.write_table(table, tmp_path / "validation.parquet")
    with pytest.raises(UserInputError, match=r"validation\.parquet: missing column\(s\) ferplus_votes"):
        read_source(f"fer2013_ferplus:{tmp_path}")


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data/fer2013_ferplus")
def test_real_fer2013_ferplus_validation_counts_and_vote_rule():
    import pyarrow.parquet as pq

    table = pq.read_table(SHARED / "validation.parquet", columns=["ferplus_votes", "ferplus_label"])
    fer_to_canonical = {code: LABEL2ID[name] for code, name in FER2013_CODE.items()}
    for votes, label in zip(table.column(0).to_pylist(), table.column(1).to_pylist(), strict=True):
        assert ferplus_label(votes)[0] == (fer_to_canonical[label] if label >= 0 else -1)
    source = read_source(f"fer2013_ferplus:{SHARED}")
    assert len(source.splits["validation"]) == 3589 - 403
    assert sum(source.dropped["validation"].values()) == 403


# ----- generic image folders and datasets -----


def test_imagefolder_flat_tree_with_common_spellings(tmp_path):
    folders = ["angry", "Disgust", "fearful", "happy", "neutral", "sad", "surprised"]
    for i, folder in enumerate(folders):
        save_image(tmp_path / folder / f"img{i}.png", 20, 20, i)
    ds = load_source(f"imagefolder:{tmp_path}")
    assert list(ds) == ["train"]
    by_folder = dict(zip(folders, EXPRESSIONS, strict=True))
    assert names(ds["train"]) == [by_folder[i.split("/")[0]] for i in ds["train"]["id"]]
    assert sorted(names(ds["train"])) == sorted(EXPRESSIONS)
    check_schema(ds, tmp_path.name)


def test_imagefolder_split_tree_with_label_map_and_drop(tmp_path):
    for split in ("train", "val"):
        for i, folder in enumerate(["Wut", "Freude", "Verachtung"]):
            save_image(tmp_path / split / folder / f"{i}.jpg", 20, 20, i)
    source = read_source(f"imagefolder:{tmp_path}?label_map=Wut:anger,Freude:happiness,Verachtung:drop")
    assert list(source.splits) == ["train", "validation"]
    assert names(source.splits["validation"]) == ["happiness", "anger"]  # Freude/, Wut/ in name order
    assert source.dropped["train"] == {"Verachtung": 1}
    with pytest.raises(UserInputError, match=r"unknown class folder .*train/Verachtung"):
        read_source(f"imagefolder:{tmp_path}?label_map=Wut:anger,Freude:happiness")
    with pytest.raises(UserInputError, match=r"maps 'Wut' to 'rage'"):
        read_source(f"imagefolder:{tmp_path}?label_map=Wut:rage")


def _saved_dataset(path: Path, labels: list, names_: list[str] | None) -> None:
    label_feature = ClassLabel(names=names_) if names_ else Value("string")
    features = Features({"img": DsImage(), "emotion": label_feature, "extra": Value("int32")})
    images = [{"bytes": png_bytes(pixels(8, 8, i)), "path": None} for i in range(len(labels))]
    data = {"img": images, "emotion": labels, "extra": list(range(len(labels)))}
    DatasetDict({"train": Dataset.from_dict(data, features=features)}).save_to_disk(str(path))


def test_hf_dataset_with_label_map(tmp_path):
    _saved_dataset(tmp_path / "d", [0, 1, 2, 1], ["Angry", "Happy", "Contempt"])
    spec = (
        f"hf:{tmp_path / 'd'}?image_column=img&label_column=emotion&label_map=Angry:anger,Happy:happiness,Contempt:drop"
    )
    ds = load_source(spec)
    assert names(ds["train"]) == ["anger", "happiness", "happiness"]
    assert ds["train"]["extra"] == [0, 1, 3] and ds["train"]["id"] == ["0", "1", "3"]
    check_schema(ds, "d")


def test_hf_string_labels_by_spelling_and_unknown_value_names_the_row(tmp_path):
    _saved_dataset(tmp_path / "ok", ["sad", "surprised"], None)
    ds = load_source(f"hf:{tmp_path / 'ok'}?image_column=img&label_column=emotion")
    assert names(ds["train"]) == ["sadness", "surprise"]
    _saved_dataset(tmp_path / "bad", ["sad", "bored"], None)
    with pytest.raises(UserInputError, match=r"train: row 1: unknown label 'bored' in column 'emotion'"):
        load_source(f"hf:{tmp_path / 'bad'}?image_column=img&label_column=emotion")
    with pytest.raises(UserInputError, match=r"no column 'image'"):
        load_source(f"hf:{tmp_path / 'ok'}")


def test_hf_hub_id_offline_is_one_line_error():
    with pytest.raises(UserInputError, match=r"cannot load dataset 'nobody/no-such-fer-dataset'") as err:
        load_source("hf:nobody/no-such-fer-dataset")
    assert "\n" not in str(err.value)
