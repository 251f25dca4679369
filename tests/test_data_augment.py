"""The batched augmentation's operations table: each row a pure function of its drawn parameters, views apart."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import pixels
from PIL import Image

from sspa_hf.data import OPERATIONS, BatchAugment, collate_fer
from sspa_hf.data.augment import STRONG, Geometry, Operation, reflect_pad

MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]


def _batch(augment: BatchAugment, indices: range, side: int = 32) -> dict:
    faces = [Image.fromarray(pixels(side, side, i)) for i in indices]
    return collate_fer(
        [
            {**augment(f, i), "labels": 0, "sample_index": i, "is_target": True}
            for f, i in zip(faces, indices, strict=True)
        ]
    )


@pytest.mark.parametrize("pad", [1, 3, 7])
def test_reflect_pad_is_numpys_reflect(pad):
    images = torch.randint(0, 256, (2, 9, 11, 3), dtype=torch.uint8)
    expected = np.pad(images.numpy(), ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    assert np.array_equal(reflect_pad(images, pad).numpy(), expected)


@pytest.mark.parametrize("name", list(OPERATIONS))
def test_every_operation_is_a_pure_function_of_its_parameters(name):
    operation, geometry = OPERATIONS[name], Geometry(24, 3)
    images = torch.from_numpy(np.stack([pixels(24, 24, i) for i in range(6)]))
    kept = images.clone()
    params = np.array([operation.draw(np.random.default_rng([0, i]), geometry) for i in range(6)], dtype=np.float64)
    assert params.shape == (6, operation.width)
    out = operation.apply(images, params, geometry)
    assert out.shape == images.shape and out.dtype == torch.uint8
    assert torch.equal(images, kept)  # the faces are left alone: other views start from them
    assert torch.equal(operation.apply(images, params, geometry), out)
    assert not torch.equal(out, images)


def test_neutral_parameters_leave_the_face_as_it_is():
    images = torch.from_numpy(np.stack([pixels(20, 20, i) for i in range(3)]))
    geometry = Geometry(20, 2)
    assert torch.equal(OPERATIONS["colour"].apply(images, np.ones((3, 3)), geometry), images)
    assert torch.equal(OPERATIONS["rotate"].apply(images, np.zeros((3, 1)), geometry), images)
    assert torch.equal(OPERATIONS["crop"].apply(images, np.full((3, 2), 2.0), geometry), images)  # the centre crop
    erased = OPERATIONS["erase"].apply(images, np.array([[5, 1, 2]] * 3, dtype=np.float64), geometry)
    assert (erased[:, 1:6, 2:7] == 128).all() and torch.equal(erased[:, 6:], images[:, 6:])


def test_another_view_draws_from_its_own_stream_and_leaves_the_training_view_alone():
    plain = BatchAugment(32, MEAN, STD, seed=3)
    both = BatchAugment(32, MEAN, STD, seed=3, views={"strong": STRONG})
    a, b = plain.apply(_batch(plain, range(8))), both.apply(_batch(both, range(8)))
    assert torch.equal(a["pixel_values"], b["pixel_values"])
    assert b["strong_pixel_values"].shape == (8, 3, 32, 32) and not torch.equal(
        b["strong_pixel_values"], b["pixel_values"]
    )
    assert "strong_params" not in b


def test_an_operation_is_one_function_pair_and_one_row(monkeypatch):
    invert = Operation(0, lambda rng, geometry: [], lambda images, params, geometry: 255 - images)
    monkeypatch.setitem(OPERATIONS, "invert", invert)
    augment = BatchAugment(16, [0, 0, 0], [1, 1, 1], padding=0.0, views={"inverted": ("invert",)})
    batch = _batch(augment, range(2), side=16)
    out = augment.apply(batch)
    expected = (255 - batch["pixel_values"]).permute(0, 3, 1, 2).float() / 255
    torch.testing.assert_close(out["inverted_pixel_values"], expected)
    with pytest.raises(ValueError, match=r"unknown augmentation operation\(s\) \['blur'\]"):
        BatchAugment(16, MEAN, STD, views={"x": ("crop", "blur")})
