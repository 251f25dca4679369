"""Benchmark (not a test): does the cost stay flat from RAF-DB-sized to AffectNet-sized auxiliary sets?

    python benchmarks/bench_scale.py [--sizes 10000 100000 300000] [--image_size 48] [--steps 40] [--runs 2]
                                     [--selection_mode paper|transition|cleanlab] [--work DIR] [--out FILE]
                                     [--auxiliary_fraction F] [--workers W]

For each size N it writes N generated auxiliary faces as a prepared (`save_to_disk`) folder (2,000 distinct faces from
`sspa_hf.data.synthetic`, tiled: the cost is per row, not per distinct picture), then runs the real `sspa-train`
command on the quick-start recipe against it, in a fresh process, for a fixed number of steps. The runs go in rounds,
each round every size once, so that a change in the machine's load falls on all sizes alike, every other round in
the reverse order (here a run that followed another trained about 2 % slower than the one before it; the first
round also computes the image check's verdict, which later runs find cached, as every run after the first prepare
does). `--auxiliary_fraction` trains on a seeded fraction of each folder (the rows of a small set drawn from a large
file: does a cost follow the rows trained on or the folder?), `--workers` sets `dataloader_num_workers`.
`--selection_mode transition` (k = 1) adds the verdict pass after training (one `predict` over the auxiliary rows),
`cleanlab` the cross-fit before it (`crossfit_folds` plain trainings of `--steps` steps, each predicting its held-out
fold, then `find_label_issues`), each timed with the peak memory when it ends; the steps and the time to the first
step are then those of the final training (the cross-fit included in the latter). It reports the time from the command
to the first optimizer step, with its parts (loading, image check, joint build, trainer and selector), images/s over
the steps after the first five (mean and median step; with the time per step in Python's garbage collector and
the minor page faults per step), the selection.parquet write, the peak resident memory of the process (VmHWM; also
after each start-up phase, with the anonymous part RssAnon, which leaves out the pages of the memory-mapped images
that reading them maps in), and, in the same process after training, the selection bookkeeping of one whole epoch
(Algorithm 1 on every sample, batches of 64, and the epoch close). Prints a Markdown table; numbers depend on the
machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
DISTINCT = 2000


def peak_rss_mb() -> float:
    """This process's own peak resident memory (VmHWM). Not `getrusage`'s ru_maxrss: on Linux that keeps the peak of
    the process image it was forked from (here the parent, which may have just generated a 100 k-face folder)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def anon_rss_mb() -> float:
    """This process's anonymous resident memory now (RssAnon): its own, without the pages of memory-mapped files
    (the images), which VmHWM counts once they are read and which the kernel can drop."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no RssAnon in /proc/self/status (Linux only)")


def write_auxiliary(folder: Path, n: int, image_size: int) -> Path:
    """N auxiliary faces as a prepared folder: DISTINCT generated faces repeated in row order."""
    import datasets
    import numpy as np

    from sspa_hf.data import load_source

    if (folder / "dataset_dict.json").is_file():
        return folder
    base = load_source(f"synthetic:?role=auxiliary&n={DISTINCT}&image_size={image_size}&seed=5")["train"]
    tiled = base.select(np.arange(n) % len(base)).flatten_indices()
    tiled = tiled.map(lambda row, i: {"id": f"aux-{i:07d}"}, with_indices=True, desc=None)
    datasets.DatasetDict({"train": tiled}).save_to_disk(str(folder))
    return folder


def child(
    folder: Path,
    out: Path,
    steps: int,
    image_size: int,
    mode: str,
    started: float,
    fraction: float = 1.0,
    workers: int = 0,
) -> None:
    """The real train command with timers around its phases (module-level wrappers, no behaviour change)."""

    import numpy as np
    import torch

    import sspa_hf.training.build as build
    import sspa_hf.training.trainer as trainer_module
    from sspa_hf.commands import train
    from sspa_hf.modes import get_mode

    marks: dict[str, float] = {"imports": time.time() - started}

    def timed(owner, name: str, key: str, peak: bool = False) -> None:
        original = getattr(owner, name)  # a function, or a bound classmethod: the wrapper passes its arguments on

        def wrapper(*args, **kwargs):
            start = time.time()
            try:
                return original(*args, **kwargs)
            finally:
                marks[key] = marks.get(key, 0.0) + time.time() - start
                if peak:
                    marks[f"peak RSS MB after {key}"] = peak_rss_mb()
                    marks[f"anon RSS MB after {key}"] = anon_rss_mb()

        setattr(owner, name, wrapper)

    timed(build, "load_source", "loading", peak=True)
    timed(build, "without_bad_images", "image check", peak=True)
    timed(build, "build_joint", "joint build", peak=True)
    timed(trainer_module, "write_selection", "selection.parquet write")
    if mode == "transition":
        timed(get_mode(mode), "finish", "verdict pass", peak=True)
    if mode == "cleanlab":
        timed(get_mode(mode), "before_training", "cross-fit", peak=True)
    step_times: list[float] = []
    step_costs: list[tuple[float, int]] = []  # (seconds in Python's garbage collector so far, minor page faults)
    collecting = [0.0, 0.0]  # collector time so far, start of the running collection

    def on_collect(phase: str, info: dict) -> None:
        if phase == "start":
            collecting[1] = time.perf_counter()
        else:
            collecting[0] += time.perf_counter() - collecting[1]

    gc.callbacks.append(on_collect)
    original_init, original_step = trainer_module.SSPATrainer.__init__, trainer_module.SSPATrainer.training_step

    def init(self, *args, **kwargs):  # cleanlab builds its probe trainers first: the last trainer is the run's
        step_times.clear()
        start = time.time()
        original_init(self, *args, **kwargs)
        marks["trainer + selector"] = time.time() - start
        marks["peak RSS MB after trainer + selector"] = peak_rss_mb()
        marks["selector"] = self.selector  # kept for the bookkeeping measurement below

    def step(self, *args, **kwargs):
        loss = original_step(self, *args, **kwargs)
        step_times.append(time.time())
        step_costs.append((collecting[0], resource.getrusage(resource.RUSAGE_SELF).ru_minflt))
        return loss

    trainer_module.SSPATrainer.__init__, trainer_module.SSPATrainer.training_step = init, step
    with tempfile.TemporaryDirectory() as run_dir:
        code = train.main(
            [
                str(ROOT / "recipes" / "quickstart.yaml"),
                "--auxiliary_dataset",
                str(folder),
                "--image_size",
                str(image_size),
                "--max_steps",
                str(steps),
                "--save_strategy",
                "no",
                "--logging_steps",
                "1000",
                "--disable_tqdm",
                "true",
                "--output_dir",
                run_dir,
                "--selection_mode",
                mode,
                "--auxiliary_fraction",
                str(fraction),
                "--dataloader_num_workers",
                str(workers),
                *(["--num_experts", "1"] if mode == "transition" else []),
            ]
        )
    assert code == 0, f"sspa-train exited {code}"
    selector = marks.pop("selector")
    batch = 64
    start = time.time()
    n = len(selector)
    for first in range(0, n, batch):
        index = torch.arange(first, min(first + batch, n))
        probs = torch.softmax(torch.randn(len(index), selector.num_experts, selector.num_classes), dim=-1)
        selector.update(index, probs, torch.as_tensor(selector.labels[index.numpy()]).long())
    marks["Algorithm 1, one epoch"] = time.time() - start
    start = time.time()
    selector.advance_to(selector.epoch + 1)
    marks["epoch close"] = time.time() - start
    timed_steps = np.diff(step_times[4:])
    collector, faults = np.diff(np.asarray(step_costs)[4:], axis=0).T
    result = {
        **marks,
        "command to first step": step_times[0] - started,
        "images/s": float(batch / timed_steps.mean()),
        "images/s, median step": float(batch / np.median(timed_steps)),  # steady rate, one slow step aside
        "ms per step in the garbage collector": float(collector.mean() * 1e3),
        "minor page faults per step": float(faults.mean()),
        "peak RSS MB": peak_rss_mb(),
        "anon RSS MB at the end": anon_rss_mb(),
        "rows": n,
    }
    out.write_text(json.dumps(result))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 300_000])
    parser.add_argument("--image_size", type=int, default=48)
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per run (images/s after the 5th)")
    parser.add_argument(
        "--runs", type=int, default=2, help="rounds, each every size once (the first computes the image check)"
    )
    parser.add_argument("--selection_mode", default="paper", choices=["paper", "transition", "cleanlab"])
    parser.add_argument(
        "--auxiliary_fraction",
        type=float,
        default=1.0,
        help="train on this seeded fraction of each folder (the same rows count from a larger file: a diagnostic)",
    )
    parser.add_argument(
        "--workers", type=int, default=0, help="dataloader_num_workers (0: images decoded in the training process)"
    )
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "sspa_bench_scale")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    parser.add_argument("--child", nargs=3, metavar=("FOLDER", "OUT", "STARTED"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(
            Path(args.child[0]),
            Path(args.child[1]),
            args.steps,
            args.image_size,
            args.selection_mode,
            float(args.child[2]),
            args.auxiliary_fraction,
            args.workers,
        )
        return 0
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "PYTHONPATH": str(ROOT)}
    folders = {}
    for n in args.sizes:
        start = time.time()
        folders[n] = write_auxiliary(args.work / f"aux_{n}_{args.image_size}px", n, args.image_size)
        print(f"{n} faces at {args.image_size} px: folder ready in {time.time() - start:.0f} s", file=sys.stderr)
    table = []
    for run in range(args.runs):
        for n in args.sizes if run % 2 == 0 else args.sizes[::-1]:
            name = f"{n}_{args.image_size}px_{args.selection_mode}_{args.auxiliary_fraction:g}_w{args.workers}_{run}"
            out = args.work / f"result_{name}.json"
            command = [sys.executable, __file__, "--steps", str(args.steps), "--image_size", str(args.image_size)]
            command += ["--selection_mode", args.selection_mode, "--auxiliary_fraction", str(args.auxiliary_fraction)]
            command += ["--workers", str(args.workers)]
            command += ["--child", str(folders[n]), str(out)]
            subprocess.run([*command, repr(time.time())], env=env, check=True)
            row = {"faces": n, "image size": args.image_size, "mode": args.selection_mode, "run": run + 1}
            row["auxiliary fraction"], row["workers"] = args.auxiliary_fraction, args.workers
            table.append({**row, **json.loads(out.read_text())})
    keys = [
        k for k in table[0] if k not in ("faces", "image size", "mode", "run", "rows", "auxiliary fraction", "workers")
    ]
    print(f"\nselection_mode {args.selection_mode}\n\n| auxiliary faces | px | run | " + " | ".join(keys) + " |")
    print("|" + " --- |" * (len(keys) + 3))
    for row in table:
        cells = " | ".join(f"{row.get(k, float('nan')):.3g}" for k in keys)
        print(f"| {row['faces']:,} | {row['image size']} | {row['run']} | {cells} |")
    print_ratios(table, min(args.sizes))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(table, indent=2))
    return 0


def print_ratios(table: list[dict], base: int) -> None:
    """images/s of each size over the smallest, paired by round: geometric mean and 95 % t-interval over rounds."""
    import numpy as np
    from scipy import stats

    rate = {(row["run"], row["faces"]): row["images/s"] for row in table}
    runs = sorted({row["run"] for row in table})
    for n in sorted({row["faces"] for row in table} - {base}):
        logs = np.log([rate[r, n] / rate[r, base] for r in runs])
        if len(logs) < 2:
            print(f"images/s at {n:,} over {base:,}: {np.exp(logs[0]):.3f} (one round, no interval)")
            continue
        half = stats.t.ppf(0.975, len(logs) - 1) * logs.std(ddof=1) / np.sqrt(len(logs))
        low, mid, high = np.exp([logs.mean() - half, logs.mean(), logs.mean() + half])
        print(
            f"images/s at {n:,} over {base:,}, paired by round: {mid:.3f} [{low:.3f}, {high:.3f}] ({len(logs)} rounds)"
        )


if __name__ == "__main__":
    sys.exit(main())
