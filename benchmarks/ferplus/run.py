"""Run the FERPlus benchmark arms with `sspa-train` (one recipe per arm), skipping runs already finished.

    python benchmarks/ferplus/prepare.py                          # once: the data sets
    python benchmarks/ferplus/run.py --arms main --seeds 1 2      # target only, straight, SSPA-JT, both bounds
    python benchmarks/ferplus/run.py --arms ablations --seeds 1   # the Table 5 ablations
    python benchmarks/ferplus/report.py                           # tables for docs/RESULTS.md

Every arm is the same code path: `sspa-train benchmarks/ferplus/recipes/<arm>.yaml --seed S --output_dir ...`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RECIPES = HERE / "recipes"
ARMS = {
    "main": ["target_only", "straight", "sspa", "perfect_selection", "oracle"],
    "ablations": ["ssm", "ssm_dt", "ssm_dt_moe", "ssm_dt_pam"],
    "beyond": ["transition", "transition_pam", "cleanlab"],
}
DEFAULT_DATA = "benchmarks/out/ferplus"


def arm_names(selection: str) -> list[str]:
    if selection == "all":
        return ARMS["main"] + ARMS["ablations"]
    if selection in ARMS:
        return ARMS[selection]
    names = selection.split(",")
    unknown = [n for n in names if not (RECIPES / f"{n}.yaml").is_file()]
    if unknown:
        raise SystemExit(f"unknown arm(s) {unknown}; recipes are {sorted(p.stem for p in RECIPES.glob('*.yaml'))}")
    return names


def data_flags(arm: str, data: str) -> list[str]:
    """Point an arm's recipe at another prepared data folder (e.g. one built with --eval-file)."""
    if data == DEFAULT_DATA:
        return []
    from sspa_hf.commands.train import load_recipe

    recipe = load_recipe(RECIPES / f"{arm}.yaml")
    flags = []
    for key in ("target_dataset", "auxiliary_dataset"):
        if recipe.get(key):
            flags += [f"--{key}", str(recipe[key]).replace(DEFAULT_DATA, data)]
    return flags


def launch(arm: str, seed: int, args: argparse.Namespace, extra: list[str], threads: int) -> tuple | None:
    """Start one run in the background (None if it already finished)."""
    output_dir = args.out / arm / f"seed{seed}"
    if (output_dir / "eval_metrics.json").is_file():
        print(f"[skip] {arm} seed {seed}: {output_dir} is finished", flush=True)
        return None
    command = [
        sys.executable,
        "-m",
        "sspa_hf.commands.train",
        str(RECIPES / f"{arm}.yaml"),
        "--seed",
        str(seed),
        "--output_dir",
        str(output_dir),
        *data_flags(arm, args.data),
        *extra,
    ]
    print("[run]", " ".join(command), flush=True)
    output_dir.mkdir(parents=True, exist_ok=True)
    log = open(output_dir / "train.log", "w")  # noqa: SIM115 - closed when the run ends
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    return arm, seed, output_dir, process, log, time.time()


def finish(arm: str, seed: int, output_dir: Path, process, log, start: float) -> None:
    code = process.wait()
    log.close()
    seconds = time.time() - start
    (output_dir / "timing.json").write_text(json.dumps({"wall_seconds": seconds, "exit_code": code}))
    print(f"[done] {arm} seed {seed}: exit {code}, {seconds / 60:.1f} min", flush=True)
    if code:
        raise SystemExit(f"{arm} seed {seed} failed; see {output_dir / 'train.log'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arms", default="main", help="main, ablations, all, or comma-separated recipe names")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--data", default=DEFAULT_DATA, help="folder written by prepare.py")
    parser.add_argument("--out", type=Path, default=Path(DEFAULT_DATA) / "runs")
    parser.add_argument(
        "--jobs", type=int, default=2, help="runs at a time; each gets cores/jobs torch threads (2 on 2 cores)"
    )
    args, extra = parser.parse_known_args()
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    queue = [(arm, seed) for seed in args.seeds for arm in arm_names(args.arms)]
    running: list[tuple] = []
    while queue or running:
        while queue and len(running) < args.jobs:
            started = launch(*queue.pop(0), args, extra, threads)
            if started:
                running.append(started)
        done = [run for run in running if run[3].poll() is not None]
        for run in done:
            running.remove(run)
            finish(*run)
        if not done:
            time.sleep(5)


if __name__ == "__main__":
    main()
