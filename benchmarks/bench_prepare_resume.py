"""Benchmark (not a test): `sspa-prepare` on a generated AffectNet-layout folder: images/s per core with 1 and 2
processes, and a run killed with SIGKILL at ~90 % of its shards then resumed (resume wall time against a full run).

    OMP_NUM_THREADS=1 python benchmarks/bench_prepare_resume.py [--images 3000] [--side 400] [--kill-at 0.9]

Prints a Markdown table; the numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

HEADER = ["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks"]
HEADER += ["expression", "valence", "arousal"]
MARKS = ";".join(["100.0"] * 136)  # unused without --align


def build(root: Path, count: int, side: int) -> str:
    """AffectNet's CSV layout: `count` smooth random JPEGs of side x side with a face box of ~60 % of the side."""
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True)
    rng = np.random.default_rng(0)
    with (lists / "training.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for i in range(count):
            rel = f"{i % 100}/{i:07d}.jpg"
            path = root / "Manually_Annotated_Images" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            small = rng.integers(0, 256, size=(side // 16, side // 16, 3), dtype=np.uint8)
            Image.fromarray(small).resize((side, side), Image.Resampling.BICUBIC).save(path, quality=90)
            box = int(side * 0.6)
            writer.writerow([rel, side // 5, side // 6, box, box, MARKS, i % 7, 0.1, -0.1])
    (lists / "validation.csv").write_text(f"{rel},{side // 5},{side // 6},{box},{box},{MARKS},0,0.1,-0.1\n")
    return f"affectnet:{root}"


def command(spec: str, out: Path, num_proc: int) -> list[str]:
    return ["sspa-prepare", spec, str(out), "--num_proc", str(num_proc), "--image_size", "224", "-q"]


def timed(spec: str, out: Path, num_proc: int) -> float:
    start = time.perf_counter()
    subprocess.run(command(spec, out, num_proc), check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def killed_then_resumed(spec: str, out: Path, num_proc: int, fraction: float, shards: int) -> tuple[float, int]:
    """SIGKILL once `fraction` of the train shards are written; then the resume's wall time and the shards it found."""
    child = subprocess.Popen(command(spec, out, num_proc), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while child.poll() is None:
        found = [len(list(p.glob("work/train/[0-9]*.arrow"))) for p in out.parent.glob(f".{out.name}.partial-*")]
        if found and found[0] >= int(fraction * shards):
            child.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    child.wait()
    done = sum(len(list(p.glob("work/train/[0-9]*.arrow"))) for p in out.parent.glob(f".{out.name}.partial-*"))
    return timed(spec, out, num_proc), done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--side", type=int, default=400)
    parser.add_argument("--kill-at", type=float, default=0.9)
    args = parser.parse_args()
    from sspa_hf.data.shards import SHARD_ROWS

    shards = -(-args.images // SHARD_ROWS)  # train shards (validation is one row)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        spec = build(root / "raw", args.images, args.side)
        took = time.perf_counter() - start
        print(f"generated {args.images} JPEGs of {args.side} px in {took:.1f} s", file=sys.stderr)
        rows = []
        for num_proc in (1, 2):
            seconds = timed(spec, root / f"full{num_proc}", num_proc)
            rows.append((f"full, {num_proc} process(es)", seconds, args.images / seconds / num_proc))
            shutil.rmtree(root / f"full{num_proc}")
        resume, done = killed_then_resumed(spec, root / "killed", 1, args.kill_at, shards)
        rows.append((f"resume after SIGKILL at {done}/{shards} train shards, 1 process", resume, None))
    print(f"| run ({args.images} images, {args.side} px, shards of {SHARD_ROWS}) | wall s | images/s per core |")
    print("|---|---|---|")
    for name, seconds, rate in rows:
        print(f"| {name} | {seconds:.1f} | {f'{rate:.0f}' if rate else '-'} |")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
