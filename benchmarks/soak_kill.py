"""Soak: kill a tiny sspa-train run at random moments (kill -9 or SIGTERM) many times, resume each time, and
compare the final weights with an uninterrupted run of the same recipe.

After every kill it checks that each visible `checkpoint-*` folder is complete (`checkpoint_problem`), and that
nothing finished was lost (the newest complete checkpoint never goes back in steps).

OMP_NUM_THREADS=1 PYTHONPATH=$PWD HF_HUB_OFFLINE=1 python benchmarks/soak_kill.py --kills 50 --output soak.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from safetensors.torch import load_file

from sspa_hf.run.checkpoints import checkpoint_problem, checkpoints_newest_first, latest_complete_checkpoint

RECIPE = str(Path(__file__).resolve().parent / "soak_tiny.yaml")


def command(output_dir: Path, epochs: int, resume: bool) -> list[str]:
    flags = [RECIPE, "--num_train_epochs", str(epochs), "--output_dir", str(output_dir)]
    return [sys.executable, "-m", "sspa_hf.commands.train", *flags, *(["--resume_from_checkpoint", "true"] * resume)]


def status_of(output_dir: Path) -> str | None:
    try:
        return json.loads((output_dir / "run_status.json").read_text())["status"]
    except (OSError, ValueError, KeyError):
        return None


def step_of(folder: Path | None) -> int:
    return int(folder.name.split("-")[1]) if folder else 0


def soak(output_dir: Path, epochs: int, kills: int, max_delay: float, seed: int) -> dict:
    """Start, kill at a random moment, resume, until `kills` kills are done; then let the run finish."""
    rng = random.Random(seed)
    log, best_step, torn_visible = [], 0, 0
    while len(log) < kills and status_of(output_dir) != "complete":
        resume = latest_complete_checkpoint(output_dir)[0] is not None
        process = subprocess.Popen(
            command(output_dir, epochs, resume), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        delay, how = rng.uniform(0.5, max_delay), rng.choice(["KILL", "TERM"])
        try:
            process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL if how == "KILL" else signal.SIGTERM)
            process.wait(timeout=300)
            last = latest_complete_checkpoint(output_dir)[0]
            torn = [p.name for p in checkpoints_newest_first(output_dir) if checkpoint_problem(p) is not None]
            torn_visible += len(torn)
            lost = step_of(last) < best_step
            best_step = max(best_step, step_of(last))
            entry = {
                "signal": how,
                "after_s": round(delay, 2),
                "rc": process.returncode,
                "newest_complete": step_of(last),
            }
            log.append({**entry, "torn_visible": torn, "lost_work": lost})
            print(json.dumps(log[-1]), flush=True)
            continue
        if process.returncode != 0:
            raise SystemExit(f"run ended by itself with {process.returncode}: {process.stderr.read()[-2000:]}")
    if status_of(output_dir) != "complete":  # the last resume, left alone
        resume = latest_complete_checkpoint(output_dir)[0] is not None
        subprocess.run(command(output_dir, epochs, resume), check=True, capture_output=True)
    return {"kills": log, "torn_visible": torn_visible, "lost_work": sum(e["lost_work"] for e in log)}


def compare(a: Path, b: Path) -> dict:
    left, right = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    same = left.keys() == right.keys() and all((left[k] == right[k]).all() for k in left)
    diff = max(float((left[k].double() - right[k].double()).abs().max()) for k in left)
    return {"bit_identical": bool(same), "max_abs_diff": diff, "tensors": len(left)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=500, help="4 steps each; a checkpoint at every step")
    parser.add_argument("--max-delay", type=float, default=12.0, help="kill within this many seconds of a start")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.time()
        subprocess.run(command(root / "reference", args.epochs, False), check=True, capture_output=True)
        reference_s = time.time() - start
        start = time.time()
        result = soak(root / "killed", args.epochs, args.kills, args.max_delay, args.seed)
        result.update(
            reference_s=round(reference_s, 1),
            soak_s=round(time.time() - start, 1),
            **compare(root / "reference", root / "killed"),
        )
    summary = {k: v for k, v in result.items() if k != "kills"}
    summary.update(
        kills_done=len(result["kills"]),
        sigkill=sum(e["signal"] == "KILL" for e in result["kills"]),
        sigterm=sum(e["signal"] == "TERM" for e in result["kills"]),
    )
    print(json.dumps(summary, indent=1))
    if args.output:
        args.output.write_text(json.dumps({**result, **summary}, indent=1))


if __name__ == "__main__":
    main()
