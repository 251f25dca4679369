"""Training inputs (uint8 faces and random parameters, augmented as a batch), shared epoch in workers, evaluation =
pipeline preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Dataset, Features, Value
from datasets import Image as DsImage
from helpers import pixels, save_image, tiny_split
from PIL import Image

from sspa_hf.data import BatchAugment, EvalTransform, FERTorchDataset, build_joint, collate_fer
from sspa_hf.errors import UserInputError

MEAN, STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]


class OneFace(BatchAugment):
    """One face through the two halves (the worker's decode and draw, the device's batched augmentation)."""

    def one(self, image: Image.Image, sample_index: int = 0) -> torch.Tensor:
        item = {**self(image, sample_index), "labels": 0, "sample_index": sample_index, "is_target": True}
        return self.apply(collate_fer([item]))["pixel_values"][0]


def test_train_augment_shape_and_normalisation():
    augment = OneFace(32, MEAN, STD)
    out = augment.one(Image.new("RGB", (50, 40), (128, 64, 255)), sample_index=3)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    expected = (np.array([128, 64, 255]) / 255 - np.array(MEAN)) / np.array(STD)
    np.testing.assert_allclose(out.mean(dim=(1, 2)).numpy(), expected, atol=1e-5)


def test_train_augment_is_a_crop_of_the_padded_image_maybe_flipped():
    image = Image.fromarray(pixels(24, 24, 1))
    augment = OneFace(24, [0, 0, 0], [1, 1, 1], padding=0.125, seed=0)
    padded = np.pad(np.asarray(image), ((3, 3), (3, 3), (0, 0)), mode="reflect").astype(np.float32) / 255

    def view(top: int, left: int, flip: bool) -> np.ndarray:
        crop = padded[top : top + 24, left : left + 24]
        return crop[:, ::-1] if flip else crop

    outcomes = set()
    for index in range(12):
        out = augment.one(image, index).numpy().transpose(1, 2, 0)
        found = [
            (top, left, flip)
            for top in range(7)
            for left in range(7)
            for flip in (False, True)
            if np.allclose(out, view(top, left, flip), atol=1e-6)
        ]
        assert found, f"sample {index} is not a crop of the padded image"
        outcomes.add(found[0])
    assert len(outcomes) > 6 and {flip for *_, flip in outcomes} == {False, True}


def test_train_augment_randomness_depends_only_on_seed_epoch_and_index():
    image = Image.fromarray(pixels(32, 32, 2))
    a, b = OneFace(32, MEAN, STD, seed=5), OneFace(32, MEAN, STD, seed=5)
    assert torch.equal(a.one(image, 7), b.one(image, 7))
    assert not all(torch.equal(a.one(image, 7), a.one(image, i)) for i in range(8, 12))
    before = a.one(image, 7)
    a.set_epoch(1)
    assert a.epoch == 1 and a._epoch.is_shared()
    assert not all(torch.equal(a.one(image, i), b.one(image, i)) for i in range(7, 11))
    a.set_epoch(0)
    assert torch.equal(a.one(image, 7), before)
    assert not all(torch.equal(a.one(image, i), OneFace(32, MEAN, STD, seed=6).one(image, i)) for i in range(4))


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "I;16"])
def test_any_image_mode_becomes_three_channels(mode):
    image = Image.fromarray(pixels(20, 20, 3)).convert("RGBA" if mode == "LA" else "RGB")
    image = image.convert(mode) if mode != "I;16" else Image.fromarray(np.full((20, 20), 40000, dtype=np.uint16))
    out = OneFace(16, MEAN, STD).one(image, 0)
    assert out.shape == (3, 16, 16)
    if mode == "I;16":  # 16-bit grey is scaled to 8 bits, not clipped
        np.testing.assert_allclose(
            out[:, 4, 4].numpy(), (40000 // 256 / 255 - np.array(MEAN)) / np.array(STD), atol=1e-5
        )


def _tiny_vit_pipeline():
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessorPil, pipeline

    config = ViTConfig(
        image_size=24, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16
    )
    processor = ViTImageProcessorPil(size={"height": 24, "width": 24}, image_mean=MEAN, image_std=STD)
    model = ViTForImageClassification(config)
    return processor, pipeline("image-classification", model=model, image_processor=processor)


def test_eval_transform_equals_pipeline_preprocessing():
    processor, classify = _tiny_vit_pipeline()
    evaluate = EvalTransform(processor)
    for image in (Image.fromarray(pixels(40, 30, 4)), Image.fromarray(pixels(48, 48, 5, channels=1)[..., 0])):
        ours = evaluate(image)["pixel_values"]
        theirs = classify.preprocess(image)["pixel_values"][0]
        assert ours.shape == (3, 24, 24)
        torch.testing.assert_close(ours, theirs.to(ours.dtype))


def test_torch_dataset_plain_and_joint_items():
    plain = tiny_split([0, 1, 2, 3], "t")
    data = FERTorchDataset(plain, OneFace(8, MEAN, STD))
    item = data[2]
    assert item["labels"] == 2 and item["sample_index"] == 2 and item["is_target"] is True
    assert item["pixel_values"].shape == (8, 8, 3) and item["pixel_values"].dtype == torch.uint8  # decoded only
    joint = build_joint(plain, tiny_split([4, 5, 6, 0, 1, 2], "a", first_seed=50), fraction=0.5, seed=0)
    data = FERTorchDataset(joint, OneFace(8, MEAN, STD))
    items = data.__getitems__([5, 0, 6])
    assert [i["sample_index"] for i in items] == [5, 0, 6]
    assert [i["is_target"] for i in items] == [False, True, False]
    assert all(torch.equal(a["pixel_values"], data[i]["pixel_values"]) for a, i in zip(items, [5, 0, 6], strict=True))
    batch = collate_fer(items)
    assert batch["pixel_values"].dtype == torch.uint8 and batch["pixel_values"].shape == (3, 8, 8, 3)
    assert isinstance(batch["pixel_values_params"], np.ndarray) and batch["pixel_values_params"].shape == (3, 3)
    augmented = data.transform.apply(batch)
    pixels = augmented["pixel_values"]
    assert pixels.dtype == torch.float32 and pixels.shape == (3, 3, 8, 8) and "pixel_values_params" not in augmented
    assert batch["labels"].dtype == torch.long and batch["sample_index"].tolist() == [5, 0, 6]
    assert batch["is_target"].dtype == torch.bool and batch["is_target"].tolist() == [False, True, False]


def test_batches_do_not_depend_on_workers_and_follow_set_epoch():
    data = FERTorchDataset(tiny_split([i % 7 for i in range(12)], "t", side=16), OneFace(16, MEAN, STD, seed=1))
    loaders = {
        workers: torch.utils.data.DataLoader(
            data, batch_size=4, collate_fn=collate_fer, num_workers=workers, persistent_workers=workers > 0
        )
        for workers in (0, 1)
    }
    epochs = {}
    for epoch in (0, 1):
        data.set_epoch(epoch)
        batches = {w: [data.transform.apply(b)["pixel_values"] for b in loader] for w, loader in loaders.items()}
        assert all(torch.equal(a, b) for a, b in zip(batches[0], batches[1], strict=True))
        epochs[epoch] = torch.cat(batches[1])
    assert not torch.equal(epochs[0], epochs[1])  # the persistent worker saw the new epoch


def test_unreadable_image_is_named_when_decoded(tmp_path):
    good = save_image(tmp_path / "good.jpg", 32, 32, 0)
    bad = tmp_path / "truncated.jpg"
    bad.write_bytes(good.read_bytes()[:200])
    features = Features({"image": DsImage(), "label": Value("int64")})
    split = Dataset.from_dict({"image": [str(good), str(bad)], "label": [0, 1]}, features=features)
    data = FERTorchDataset(split, OneFace(8, MEAN, STD))
    assert data[0]["pixel_values"].shape == (8, 8, 3)
    with pytest.raises(UserInputError, match=r"cannot read image .*truncated\.jpg"):
        data[1]


def test_eval_transform_resizes_the_whole_image_without_a_centre_crop():
    from sspa_hf import make_image_processor

    image = Image.fromarray(pixels(40, 30, 6))  # not square: a centre crop would cut off a band
    ours = EvalTransform(make_image_processor(24, [0.5] * 3, [0.25] * 3))(image)["pixel_values"]
    resized = np.asarray(image.convert("RGB").resize((24, 24), Image.Resampling.BILINEAR), dtype=np.float32)
    expected = (torch.from_numpy(resized).permute(2, 0, 1) / 255.0 - 0.5) / 0.25
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-4)
