"""The built-in synthetic FER data set: determinism, schema, long tail and the shifted auxiliary standard."""

from __future__ import annotations

import hashlib
import io
from collections import Counter

import numpy as np
import pytest
from datasets import ClassLabel, Value
from datasets import Image as ImageFeature
from PIL import Image

from sspa_hf.data.synthetic import (
    CLASS_PRIORS,
    INTENSITY_RANGE,
    RANDOM_NOISE_RATE,
    SHIFT_TABLE,
    class_counts,
    load_synthetic,
)
from sspa_hf.errors import UserInputError
from sspa_hf.labels import EXPRESSIONS, LABEL2ID, NUM_CLASSES, TAIL_CLASSES

SHIFTED_IDS = {LABEL2ID[name] for name in SHIFT_TABLE}


def _image_bytes(split) -> list[bytes]:
    return [cell["bytes"] for cell in split.cast_column("image", ImageFeature(decode=False))["image"]]


def _digests(split) -> set[str]:
    return {hashlib.sha256(b).hexdigest() for b in _image_bytes(split)}


@pytest.fixture(scope="module")
def auxiliary():
    """A default-sized auxiliary train split (1,200 faces, small images: labels do not depend on the size)."""
    return load_synthetic("auxiliary", image_size=32)["train"]


@pytest.fixture(scope="module")
def target():
    return load_synthetic("target", n=300, n_test=140)


def test_same_arguments_give_byte_identical_data_and_another_seed_does_not():
    first = load_synthetic("auxiliary", n=40, seed=3)["train"]
    second = load_synthetic("auxiliary", n=40, seed=3)["train"]
    other = load_synthetic("auxiliary", n=40, seed=4)["train"]
    assert _image_bytes(first) == _image_bytes(second)
    for column in ("label", "reference_label", "intensity", "label_noise", "id"):
        assert first[column] == second[column]
    assert not _digests(first) & _digests(other)
    assert first["reference_label"] != other["reference_label"] or first["intensity"] != other["intensity"]


def test_schema_and_images(target):
    assert set(target) == {"train", "test"}
    for split in target.values():
        features = split.features
        assert isinstance(features["image"], ImageFeature)
        assert isinstance(features["label"], ClassLabel) and features["label"].names == list(EXPRESSIONS)
        assert features["reference_label"] == Value("int64")
        assert features["source"] == Value("string") and features["id"] == Value("string")
        assert features["intensity"] == Value("float64")
        image = split[0]["image"]
        assert image.mode == "RGB" and image.size == (48, 48)
        assert Image.open(io.BytesIO(_image_bytes(split)[0])).format == "PNG"
        assert set(split["source"]) == {"synthetic_target"}
    assert target["train"][123]["id"] == "synthetic/target/train/000123"
    assert len(set(target["train"]["id"]) | set(target["test"]["id"])) == 440
    # Faces vary: a rendered face is not a constant image.
    assert np.asarray(target["train"][0]["image"]).std() > 10


def test_other_image_size_and_string_arguments_from_specs():
    ds = load_synthetic("target", n="10", image_size="32", seed="1", n_test=7)
    assert ds["train"].num_rows == 10 and ds["test"].num_rows == 7
    assert ds["train"][0]["image"].size == (32, 32)


def test_target_labels_follow_the_target_standard(target):
    for split in target.values():
        assert split["label"] == split["reference_label"]
        assert set(split["label_noise"]) == {"clean"}


def test_intensity_is_zero_for_neutral_and_in_range_otherwise(auxiliary):
    for ref, intensity in zip(auxiliary["reference_label"], auxiliary["intensity"], strict=True):
        if ref == LABEL2ID["neutral"]:
            assert intensity == 0.0
        else:
            assert INTENSITY_RANGE[0] <= intensity <= INTENSITY_RANGE[1]


def test_train_follows_the_long_tail_and_test_is_class_balanced(target, auxiliary):
    for split in (target["train"], auxiliary):
        counts = Counter(split["reference_label"])
        for name, prior in CLASS_PRIORS.items():
            assert counts[LABEL2ID[name]] / split.num_rows == pytest.approx(prior, abs=0.01)
    assert Counter(auxiliary["reference_label"]).most_common(1)[0][0] == LABEL2ID["happiness"]
    test_counts = Counter(target["test"]["label"])
    assert max(test_counts.values()) - min(test_counts.values()) <= 1 and len(test_counts) == NUM_CLASSES


def test_class_counts_are_exact_and_keep_every_class_in_tiny_sets():
    assert class_counts(1200) == [108, 84, 84, 360, 240, 192, 132]
    for n in (7, 10, 20, 33):
        counts = class_counts(n)
        assert sum(counts) == n and min(counts) >= 1
    assert sorted(set(load_synthetic("target", n=7, n_test=7)["train"]["label"])) == list(range(NUM_CLASSES))


def test_auxiliary_disagreement_rate_and_where_it_sits(auxiliary):
    labels = np.array(auxiliary["label"])
    refs = np.array(auxiliary["reference_label"])
    disagree = labels != refs
    assert 0.18 <= disagree.mean() <= 0.30
    # Almost all disagreements are on the classes the shifted standard covers (tail classes and sadness) ...
    on_shifted = np.isin(refs, list(SHIFTED_IDS))
    assert disagree[on_shifted].sum() / disagree.sum() >= 0.85
    # ... at least half of them on the paper's tail classes, and the head classes are nearly clean.
    on_tail = np.isin(refs, [LABEL2ID[name] for name in TAIL_CLASSES])
    assert disagree[on_tail].sum() / disagree.sum() >= 0.45
    for name in ("happiness", "neutral"):
        assert disagree[refs == LABEL2ID[name]].mean() < 0.08
    for name in ("fear", "disgust", "sadness"):
        assert disagree[refs == LABEL2ID[name]].mean() > 0.40


def test_shift_table_is_the_ground_truth_of_systematic_disagreements(auxiliary):
    kinds = auxiliary["label_noise"]
    for label, ref, intensity, kind in zip(
        auxiliary["label"], auxiliary["reference_label"], auxiliary["intensity"], kinds, strict=True
    ):
        name = EXPRESSIONS[ref]
        if kind == "clean":
            assert label == ref
            assert name not in SHIFT_TABLE or intensity >= SHIFT_TABLE[name][1]
        elif kind == "shift":
            new_name, cutoff = SHIFT_TABLE[name]
            assert label == LABEL2ID[new_name] and intensity < cutoff
        else:
            assert kind == "random" and label != ref
    # Random label noise is about RANDOM_NOISE_RATE (binomial, 1,200 draws: sd ~ 0.005).
    assert Counter(kinds)["random"] / len(kinds) == pytest.approx(RANDOM_NOISE_RATE, abs=0.02)


def test_splits_and_roles_are_different_draws(target):
    train, test = _digests(target["train"]), _digests(target["test"])
    aux = _digests(load_synthetic("auxiliary", n=100)["train"])
    assert len(train) == 300 and len(test) == 140
    assert not train & test
    assert not train & aux


def test_face_i_does_not_depend_on_n_but_only_on_its_class():
    small = load_synthetic("auxiliary", n=30)["train"]
    large = load_synthetic("auxiliary", n=31)["train"]
    same_class = [i for i in range(30) if small[i]["reference_label"] == large[i]["reference_label"]]
    assert same_class
    small_bytes, large_bytes = _image_bytes(small), _image_bytes(large)
    for i in same_class:
        assert small_bytes[i] == large_bytes[i]


@pytest.mark.parametrize(
    "kwargs",
    [{"role": "validation"}, {"n": 0}, {"n": -5}, {"n": 2.5}, {"image_size": 4}, {"seed": -1}, {"n": "many"}],
)
def test_bad_arguments_are_user_input_errors(kwargs):
    with pytest.raises(UserInputError):
        load_synthetic(**kwargs)
