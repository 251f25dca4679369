"""Benchmark (not a test): decode + augment throughput, and loading a prepared cache versus parsing the raw layout.

    python benchmarks/bench_data.py [--quick] [--workers 0 2] [--out benchmarks/out/bench_data.json]

All inputs are generated into a temporary folder (smooth random faces at the real sizes and file formats); the
real FER2013+FERPlus parquet folder is timed too when `../shared/data/fer2013_ferplus` exists. Prints a Markdown
table; the numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import datasets
import numpy as np
import torch
from PIL import Image

from sspa_hf.data import (
    EvalTransform,
    FERTorchDataset,
    PrepareOptions,
    TrainAugment,
    collate_fer,
    load_source,
    prepare_source,
)

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


def throughput(split: datasets.Dataset, transform, workers: int, batch_size: int = 64) -> float:
    """Images per second through FERTorchDataset + DataLoader (decode + transform + collate), after a warm-up."""
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
    next(iter(loader))  # start workers, warm caches
    start = time.perf_counter()
    count = sum(len(batch["labels"]) for batch in loader)
    return count / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller inputs (a smoke run)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader worker counts to time")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    datasets.disable_progress_bars()
    torch.set_num_threads(1)
    n_jpeg, n_png, n_csv = (256, 1024, 4000) if args.quick else (1024, 4096, 35887)
    rows: list[tuple[str, str, float | str]] = []
    from transformers import ViTImageProcessorPil

    processor = ViTImageProcessorPil(size={"height": 224, "width": 224}, image_mean=MEAN, image_std=STD)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        # --- decode + augment throughput ---
        jpeg = load_source(f"imagefolder:{write_folder(tmp / 'jpeg224', n_jpeg, 224, '.jpg')}")["train"]
        png = load_source(f"imagefolder:{write_folder(tmp / 'png48', n_png, 48, '.png', grey=True)}")["train"]
        for workers in args.workers:
            rows.append(
                (
                    f"224 px JPEG faces, TrainAugment(224), {workers} workers",
                    "images/s",
                    throughput(jpeg, TrainAugment(224, MEAN, STD), workers),
                )
            )
            rows.append(
                (
                    f"224 px JPEG faces, EvalTransform (ViT processor 224), {workers} workers",
                    "images/s",
                    throughput(jpeg, EvalTransform(processor), workers),
                )
            )
            rows.append(
                (
                    f"48 px PNG faces, TrainAugment(48), {workers} workers",
                    "images/s",
                    throughput(png, TrainAugment(48, MEAN, STD), workers, batch_size=256),
                )
            )
            rows.append(
                (
                    f"48 px PNG faces, TrainAugment(224) (upscaled for a ViT), {workers} workers",
                    "images/s",
                    throughput(png, TrainAugment(224, MEAN, STD), workers),
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
        args.out.write_text(json.dumps([{"name": n, "unit": u, "value": v} for n, u, v in rows], indent=2))
    return 0


def _touch(split: datasets.Dataset) -> None:
    np.asarray(split["label"])
    for i in range(min(1000, len(split))):
        split[i]["image"].load()


if __name__ == "__main__":
    sys.exit(main())
