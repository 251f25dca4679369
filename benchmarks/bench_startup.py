"""Benchmark (not a test): the CPU time every command spends on --help and on one-line refusals that need no model or
data, against `python -c "from transformers import TrainingArguments"` measured in the same run (issue 33: within
1.5x of it).

    OMP_NUM_THREADS=1 python benchmarks/bench_startup.py [--repeats 5]

Each case is a fresh interpreter calling the command's main() as its console script does; its CPU time (user +
system, from os.wait4) is the median of the repeats. Prints a Markdown table; the numbers depend on the machine and
on what else runs on it (CPU time, not wall time, so other processes disturb it less).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = str(ROOT / "recipes" / "quickstart.yaml")
BASELINE = "from transformers import TrainingArguments"
LIMIT = 1.5


def command(module: str, *argv: str) -> str:
    """Python code running `module`'s main(argv), the way its console script does."""
    return f"import sys\nfrom sspa_hf.commands.{module} import main\nsys.exit(main({list(argv)!r}))"


def cases(scratch: Path) -> dict[str, str]:
    """Label -> Python code: the baseline, `import sspa_hf`, each command's --help, then refusals."""
    a_file = scratch / "a_file"
    a_file.write_text("not a folder\n")
    return {
        "baseline: " + BASELINE: BASELINE,
        "import sspa_hf": "import sspa_hf",
        **{
            f"sspa-{name.replace('_', '-').replace('evaluate', 'eval')} --help": command(name, "--help")
            for name in ("train", "evaluate", "predict", "prepare", "export_selection", "export_onnx")
        },
        "sspa-train (no recipe)": command("train"),
        "sspa-train RECIPE --no_such_flag 1": command("train", QUICKSTART, "--no_such_flag", "1"),
        "sspa-train RECIPE --ema_momentum 2": command("train", QUICKSTART, "--ema_momentum", "2"),
        "sspa-train RECIPE --output_dir FILE": command("train", QUICKSTART, "--output_dir", str(a_file)),
        "sspa-eval NO_MODEL SPEC": command("evaluate", str(scratch / "no_model"), "synthetic:"),
        "sspa-predict MODEL NO_IMAGE": command("predict", str(scratch / "no_model"), str(scratch / "face.jpg")),
        "sspa-prepare BAD_SPEC OUT": command("prepare", "nosuch:x", str(scratch / "out")),
        "sspa-export-selection NO_RUN OUT": command("export_selection", str(scratch / "no_run"), str(scratch / "o")),
        "sspa-export-onnx NO_MODEL OUT": command("export_onnx", str(scratch / "no_model"), str(scratch / "m.onnx")),
    }


def cpu_seconds(code: str, cwd: Path) -> float:
    """User + system CPU time of a fresh interpreter running `code` (its output discarded)."""
    child = subprocess.Popen(
        [sys.executable, "-c", code], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, _, usage = os.wait4(child.pid, 0)
    child.returncode = 0  # reaped here; keeps Popen from waiting again
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="runs per case; the median is reported")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        medians = {}
        for label, code in cases(scratch).items():
            medians[label] = statistics.median(cpu_seconds(code, scratch) for _ in range(args.repeats))
    base = next(iter(medians.values()))
    print(f"CPU seconds, median of {args.repeats} runs; limit {LIMIT}x the baseline ({LIMIT * base:.2f} s)\n")
    print("| case | CPU s | x baseline | within |")
    print("| --- | ---: | ---: | --- |")
    for label, seconds in medians.items():
        print(f"| `{label}` | {seconds:.2f} | {seconds / base:.2f} | {'yes' if seconds <= LIMIT * base else 'NO'} |")


if __name__ == "__main__":
    main()
