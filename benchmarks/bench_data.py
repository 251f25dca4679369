"""Benchmark (not a test): the training input path old against new, and loading a prepared cache versus parsing.

    python benchmarks/bench_data.py [--quick] [--workers 0 2] [--rounds 5] [--out /path/bench_data.json]

Training input path, everything before the forward, in alternating rounds (medians): the old path (per-sample PIL
`TrainAugment` of commit 39999ca, copied below as `OldTrainAugment`: float faces out of the workers) against the
new one (`BatchAugment`: workers decode to uint8 and draw, `collate_fer`, then `BatchAugment.apply` on the batch,
here on the CPU). For the new path at 0 workers the two halves are reported too: the worker half (decode + draw +
uint8 collate, what a GPU machine's cores pay) and the device half (`apply`). Old and new batches are checked once
for bit equality. All inputs are generated into a temporary folder (smooth random faces at the real sizes and file
formats); the real FER2013+FERPlus parquet folder is timed too when `../shared/data/fer2013_ferplus` exists.
Prints a Markdown table; the numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import datasets
import numpy as np
import torch
from PIL import Image

from sspa_hf.data import (
    BatchAugment,
    EvalTransform,
    FERTorchDataset,
    PrepareOptions,
    collate_fer,
    load_source,
    prepare_source,
)
from sspa_hf.data.images import to_rgb

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "fer2013_ferplus"
FER_CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
MEAN, STD = [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]


def face(side: int, seed: int, grey: bool = False) -> Image.Image:
    """A smooth random image with mild noise: compresses like a photo, not like flat colour or pure noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(8, 8, 1 if grey else 3), dtype=np.uint8)
    image = Image.fromarray(coarse.squeeze(-1) if grey else coarse).resize((side, side), Image.Resampling.BICUBIC)
    noisy = np.asarray(image, dtype=np.int16) + rng.integers(-6, 7, size=np.asarray(image).shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def write_folder(root: Path, n: int, side: int, suffix: str, grey: bool = False) -> Path:
    for i in range(n):
        path = root / "train" / FER_CLASSES[i % 7] / f"{i:06d}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        face(side, i, grey).save(path, quality=90) if suffix == ".jpg" else face(side, i, grey).save(path)
    return root


def write_fer2013_csv(path: Path, n: int) -> Path:
    usages = ["Training"] * 8 + ["PublicTest", "PrivateTest"]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["emotion", "pixels", "Usage"])
        for i in range(n):
            pixels = np.asarray(face(48, i, grey=True)).ravel()
            writer.writerow([i % 7, " ".join(map(str, pixels.tolist())), usages[i % 10]])
    return path


def timed(fn: Callable[[], object], repeat: int = 1) -> float:
    """Median wall time of `fn` over `repeat` runs, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class OldTrainAugment:
    """THE OLD PATH, for comparison only: `TrainAugment` of commit 39999ca (sspa_hf/data/transforms.py), the
    per-sample PIL augmentation in the worker (RGB, resize, reflect-pad, random crop, flip, normalise to float).
    Unchanged except that it returns the item's fields, `{"pixel_values": ...}`, as today's FERTorchDataset wants."""

    def __init__(
        self,
        image_size: int,
        image_mean: Sequence[float],
        image_std: Sequence[float],
        padding: float = 0.125,
        seed: int = 0,
    ) -> None:
        self.image_size = int(image_size)
        self.pad = round(padding * self.image_size)
        self.seed = int(seed)
        mean = torch.as_tensor(image_mean, dtype=torch.float32).reshape(-1, 1, 1)
        std = torch.as_tensor(image_std, dtype=torch.float32).reshape(-1, 1, 1)
        # (x / 255 - mean) / std as one multiply and one subtract
        self._scale, self._shift = 1.0 / (255.0 * std), mean / std
        self._epoch = torch.zeros((), dtype=torch.long).share_memory_()

    @property
    def epoch(self) -> int:
        return int(self._epoch.item())

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(int(epoch))

    def __call__(self, image: Image.Image, sample_index: int = 0) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, int(sample_index)])
        top, left = rng.integers(0, 2 * self.pad + 1, size=2)
        flip = rng.random() < 0.5
        size = self.image_size
        image = to_rgb(image)
        if image.size != (size, size):
            image = image.resize((size, size), Image.Resampling.BILINEAR)
        pixels = np.asarray(image)
        if self.pad:
            pixels = np.pad(pixels, ((self.pad, self.pad), (self.pad, self.pad), (0, 0)), mode="reflect")
        pixels = pixels[top : top + size, left : left + size]
        if flip:
            pixels = pixels[:, ::-1]
        chw = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))
        return {"pixel_values": chw.to(torch.float32).mul_(self._scale).sub_(self._shift)}


def old_path(size: int) -> tuple[OldTrainAugment, None]:
    """The old training input: float faces from the workers, nothing left for the device."""
    return OldTrainAugment(size, MEAN, STD), None


def new_path(size: int) -> tuple[BatchAugment, Callable[[Mapping[str, Any]], dict[str, Any]]]:
    """The new training input: uint8 faces and parameters from the workers, `apply` on the (here CPU) device."""
    augment = BatchAugment(size, MEAN, STD)
    return augment, augment.apply


@dataclasses.dataclass
class Timing:
    """One pass over a split: images per second of wall time and per second of this process's CPU time (the cost
    on one core with 0 workers, whatever else runs on the machine), and the CPU ms per image of the two halves."""

    images_per_second: float
    images_per_cpu_second: float  # with 0 workers: everything before the forward, on this process's core
    loader_ms: float  # CPU ms per image in the DataLoader's next() (with 0 workers: decode + transform + collate)
    apply_ms: float  # CPU ms per image of the device half (BatchAugment.apply); 0 for the old path


def throughput(split: datasets.Dataset, transform, workers: int, batch_size: int = 64, apply=None) -> Timing:
    """FERTorchDataset + DataLoader (decode + transform + collate) and, for the new path, `apply` on each batch;
    one epoch after a warm-up batch."""
    data = FERTorchDataset(split, transform)
    loader = torch.utils.data.DataLoader(
        data,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        collate_fn=collate_fer,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(0),
    )
    first = next(iter(loader))  # start workers, warm caches
    if apply is not None:
        apply(first)
    images, loading, applying = 0, 0.0, 0.0
    start, cpu_start = time.perf_counter(), time.process_time()
    iterator = iter(loader)
    while True:
        before = time.process_time()
        batch = next(iterator, None)
        loaded = time.process_time()
        loading += loaded - before
        if batch is None:
            break
        if apply is not None:
            batch = apply(batch)
            applying += time.process_time() - loaded
        images += len(batch["labels"])
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return Timing(images / wall, images / cpu, 1e3 * loading / images, 1e3 * applying / images)


def bit_identical(split: datasets.Dataset, size: int, n: int = 64) -> bool:
    """Old and new float batches of the first `n` faces, epochs 0 and 1: the same bits (and dtype, shape)?"""
    same = True
    for epoch in (0, 1):
        old_augment, _ = old_path(size)
        new_augment, apply = new_path(size)
        old_augment.set_epoch(epoch)
        new_augment.set_epoch(epoch)
        indices = list(range(min(n, len(split))))
        old = collate_fer(FERTorchDataset(split, old_augment).__getitems__(indices))["pixel_values"]
        new = apply(collate_fer(FERTorchDataset(split, new_augment).__getitems__(indices)))["pixel_values"]
        same &= old.dtype == new.dtype == torch.float32 and old.shape == new.shape
        same &= same and torch.equal(old.view(torch.int32), new.view(torch.int32))  # bits, not values
    return same


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller inputs (a smoke run)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader worker counts to time")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds of the input paths (medians)")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    datasets.disable_progress_bars()
    torch.set_num_threads(1)
    n_jpeg, n_png, n_csv = (256, 1024, 4000) if args.quick else (1024, 4096, 35887)
    rows: list[tuple[str, str, float | str]] = []
    rounds: dict[str, list[float]] = {}  # name -> the value of each round, where rounds alternate
    from transformers import ViTImageProcessorPil

    processor = ViTImageProcessorPil(size={"height": 224, "width": 224}, image_mean=MEAN, image_std=STD)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        # --- decode + augment throughput ---
        jpeg = load_source(f"imagefolder:{write_folder(tmp / 'jpeg224', n_jpeg, 224, '.jpg')}")["train"]
        png = load_source(f"imagefolder:{write_folder(tmp / 'png48', n_png, 48, '.png', grey=True)}")["train"]
        arms = []  # (name, split, worker transform, device half or None, workers, batch size)
        for workers in args.workers:
            for label, split, size, batch_size in (
                ("224 px JPEG faces", jpeg, 224, 64),
                ("48 px PNG faces", png, 48, 256),
                ("48 px PNG faces upscaled to 224 (a ViT's input)", png, 224, 64),
            ):
                for which, make in (("old: per-sample PIL TrainAugment", old_path), ("new: BatchAugment", new_path)):
                    name = f"{label}, training input {size} px, {which}, {workers} workers"
                    arms.append((name, split, *make(size), workers, batch_size))
            processor_arm = f"224 px JPEG faces, EvalTransform (ViT processor 224), {workers} workers"
            arms.append((processor_arm, jpeg, EvalTransform(processor), None, workers, 64))
        timings: dict[str, list[Timing]] = {arm[0]: [] for arm in arms}
        for round_index in range(args.rounds):
            for name, split, transform, apply, workers, batch_size in arms:
                timings[name].append(throughput(split, transform, workers, batch_size, apply))
                last = timings[name][-1]
                print(
                    f"round {round_index + 1} {last.images_per_second:7.1f} images/s"
                    f" {last.images_per_cpu_second:7.1f} per CPU-s  {name}",
                    flush=True,
                )
        for name, _, _, apply, workers, _ in arms:
            measures = [("images/s", "images_per_second")]
            if workers == 0:  # the main process does all the work: its CPU time is the cost on one core
                measures.append(("images per CPU-second", "images_per_cpu_second"))
            for unit, field in measures:
                values = [getattr(t, field) for t in timings[name]]
                rows.append((name, unit, statistics.median(values)))
                rounds[f"{name} [{unit}]"] = values
                if apply is not None:
                    old_name = name.replace("new: BatchAugment", "old: per-sample PIL TrainAugment")
                    old_median = statistics.median(getattr(t, field) for t in timings[old_name])
                    rows.append(
                        (name.replace("new: BatchAugment", "new / old"), f"x ({unit})", rows[-1][2] / old_median)
                    )
            if apply is not None and workers == 0:
                halves = (
                    ("worker half (decode + draw + uint8 collate)", [t.loader_ms for t in timings[name]]),
                    ("device half (BatchAugment.apply, on the CPU)", [t.apply_ms for t in timings[name]]),
                )
                for half, values in halves:
                    half_name = name.replace("new: BatchAugment", f"new, {half}")
                    rows.append((half_name, "CPU ms/image", statistics.median(values)))
                    rounds[f"{half_name} [CPU ms/image]"] = values
        same = all(bit_identical(split, size) for split, size in ((jpeg, 224), (png, 48), (png, 224)))
        rows.append(
            (
                "old and new float batches bit-identical (224 JPEG, 48 PNG, 48->224; epochs 0, 1)",
                "",
                "yes" if same else "NO",
            )
        )
        # --- raw full-size photo + crop vs prepared face, per image ---
        big = io.BytesIO()
        face(640, 1).resize((640, 480)).save(big, format="JPEG", quality=90)
        small = io.BytesIO()
        face(224, 2).save(small, format="JPEG", quality=90)

        def crop_raw() -> None:
            image = Image.open(io.BytesIO(big.getvalue()))
            image.crop((200, 100, 460, 360)).resize((224, 224), Image.Resampling.BILINEAR)

        def decode_prepared() -> None:
            Image.open(io.BytesIO(small.getvalue())).load()

        rows.append(("AffectNet-like 640x480 JPEG: decode + crop + resize", "ms/image", 1e3 * timed(crop_raw, 50)))
        rows.append(("prepared 224 px JPEG face: decode", "ms/image", 1e3 * timed(decode_prepared, 50)))
        # --- prepared cache vs parsing the raw layout ---
        csv_path = write_fer2013_csv(tmp / "fer2013.csv", n_csv)
        spec = f"fer2013:{csv_path}"
        rows.append(
            (f"fer2013.csv ({n_csv} rows): parse + encode (load_source raw)", "s", timed(lambda: load_source(spec)))
        )
        options = PrepareOptions(image_size=48, num_proc=2)
        rows.append(
            (
                "sspa-prepare of that CSV, 2 processes (once)",
                "s",
                timed(lambda: prepare_source(spec, tmp / "fer", options)),
            )
        )
        rows.append(
            (
                "re-run sspa-prepare on the unchanged CSV (fingerprint, reuse)",
                "s",
                timed(lambda: prepare_source(spec, tmp / "fer", options), 3),
            )
        )
        rows.append(
            (
                "load the prepared cache (load_source on the folder)",
                "s",
                timed(lambda: load_source(str(tmp / "fer")), 3),
            )
        )
        rows.append(
            (
                "prepared cache: first epoch of labels + 1000 decoded images",
                "s",
                timed(lambda: _touch(load_source(str(tmp / "fer"))["train"]), 3),
            )
        )
        if SHARED.is_dir():
            real = f"fer2013_ferplus:{SHARED}"
            rows.append(
                (
                    "real fer2013_ferplus parquet (32,298 rows, label=ferplus): load_source raw",
                    "s",
                    timed(lambda: load_source(real), 3),
                )
            )
            prepare_source(real, tmp / "real", PrepareOptions(image_size=48, num_proc=2))
            rows.append(
                ("its prepared cache: load_source on the folder", "s", timed(lambda: load_source(str(tmp / "real")), 3))
            )
    cpu = f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, torch threads 1"
    print(f"\nbench_data on {platform.node()} ({cpu}), Python {sys.version.split()[0]}\n")
    print("| measurement | unit | value |\n| --- | --- | --- |")
    for name, unit, value in rows:
        print(f"| {name} | {unit} | {value:.3g} |" if isinstance(value, float) else f"| {name} | {unit} | {value} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                [
                    {
                        "name": n,
                        "unit": u,
                        "value": v,
                        **({"rounds": rounds[k]} if (k := f"{n} [{u}]") in rounds else {}),
                    }
                    for n, u, v in rows
                ],
                indent=2,
            )
        )
    return 0


def _touch(split: datasets.Dataset) -> None:
    np.asarray(split["label"])
    for i in range(min(1000, len(split))):
        split[i]["image"].load()


if __name__ == "__main__":
    sys.exit(main())
