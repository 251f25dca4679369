"""Summarise the FERPlus benchmark runs as Markdown tables (for docs/RESULTS.md).

    python benchmarks/ferplus/report.py [--runs benchmarks/out/ferplus/runs] [--output report.md]

Per arm: accuracy and macro precision / recall / F1 (mean and half-range over seeds), per-class recall; selection
quality against the ground truth (an auxiliary face is consistent iff its FER2013 label equals its FERPlus label)
overall, per class and over the selection epochs; PAM mixtures created per class; wall time per run; and, for
runs that wrote eval_predictions.parquet, each arm's difference to each `--references` arm (straight combination,
`transition`, perfect selection, `transition_pam` by default) with a
95 % paired-bootstrap interval over evaluation faces and seeds (benchmarks.ferplus.intervals).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from intervals import paired_bootstrap

from sspa_hf.evaluation.metrics import selection_quality
from sspa_hf.labels import EXPRESSIONS
from sspa_hf.run.folder import (
    EVAL_METRICS,
    SELECTION_TABLE,
    read_eval_metrics,
    read_predictions,
    read_selection_history,
    read_selection_table,
)

ORDER = [
    "target_only",
    "straight",
    "sspa",
    "ssm",
    "ssm_dt",
    "ssm_dt_moe",
    "ssm_dt_pam",
    "transition",
    "transition_moe",
    "transition_pam",
    "transition_pam_moe",
    "second_round",
    "second_round_transition",
    "cleanlab",
    "perfect_selection",
    "oracle",
]


def runs_of(root: Path) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for metrics in sorted(root.glob(f"*/seed*/{EVAL_METRICS}")):
        found.setdefault(metrics.parent.parent.name, []).append(metrics.parent)
    return dict(sorted(found.items(), key=lambda kv: ORDER.index(kv[0]) if kv[0] in ORDER else len(ORDER)))


def pct(values: list[float]) -> str:
    values = 100 * np.asarray(values)
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{values.mean():.2f} ± {(values.max() - values.min()) / 2:.2f}"


def metrics_table(runs: dict[str, list[Path]]) -> str:
    head = "| arm | seeds | accuracy | macro P | mean-class acc. | macro F1 | "
    head += " | ".join(f"R {n}" for n in EXPRESSIONS)
    lines = [head + " | min/run |", "|" + "---|" * (7 + len(EXPRESSIONS))]
    for arm, folders in runs.items():
        metrics = [read_eval_metrics(f) for f in folders]
        minutes = [
            json.loads((f / "timing.json").read_text())["wall_seconds"] / 60
            for f in folders
            if (f / "timing.json").is_file()
        ]
        cells = [pct([m[k] for m in metrics]) for k in ("accuracy", "macro_precision", "macro_recall", "macro_f1")]
        cells += [pct([m[f"recall/{n}"] for m in metrics]) for n in EXPRESSIONS]
        seeds = ",".join(f.name.removeprefix("seed") for f in folders)
        lines.append(f"| {arm} | {seeds} | " + " | ".join(cells) + f" | {np.mean(minutes):.1f} |")
    return "\n".join(lines)


def quality_table(table: pd.DataFrame) -> pd.DataFrame:
    """Precision / recall / F1 of the final clean set (a run's selection table) per auxiliary class and overall."""
    aux = table[~table.is_target]
    rows = []
    for name, part in [*((n, aux[aux.label == c]) for c, n in enumerate(EXPRESSIONS)), ("all", aux)]:
        quality = selection_quality(part.label, part.reference_label, part.clean)
        rows.append(
            {
                "aux class": name,
                "faces": len(part),
                "consistent": int((part.label == part.reference_label).sum()),
                "kept": int(part.clean.sum()),
                "precision": quality.get("precision", 0.0),
                "recall": quality.get("recall", 0.0),
                "F1": quality.get("f1", 0.0),
            }
        )
    return pd.DataFrame(rows)


def relabel_quality(table: pd.DataFrame) -> str:
    """How many auxiliary faces the run relabelled, the share given their FERPlus label, agreement before/after."""
    aux = table[~table.is_target]
    changed = aux.target_standard_label != aux.label
    given_right = aux.label == aux.reference_label
    new_right = aux.target_standard_label == aux.reference_label
    right = new_right[changed].mean() if changed.any() else float("nan")
    return (
        f"{int(changed.sum())} of {len(aux)} auxiliary faces relabelled, {100 * right:.1f} % of them to their FERPlus "
        f"label ({100 * given_right[changed].mean():.1f} % of their given labels were); "
        f"agreement with FERPlus {100 * given_right.mean():.1f} % -> {100 * new_right.mean():.1f} %."
    )


def consistent_but_dropped(folder: Path) -> pd.DataFrame:
    """Why consistent auxiliary faces were dropped: their last p(y) against their threshold, per class."""
    table = read_selection_table(folder)
    aux = table[~table.is_target & (table.label == table.reference_label)]
    rows = []
    for c, name in enumerate(EXPRESSIONS):
        part = aux[aux.label == c]
        if not len(part):
            continue
        py = np.array([np.mean(v) for v in part.last_py])
        tau = np.array([np.mean(v) for v in part.tau])
        rows.append(
            {
                "class": name,
                "consistent faces": len(part),
                "dropped": float((~part.clean).mean()),
                "median p(y)": float(np.median(py)),
                "median tau": float(np.median(tau)),
                "median p(y), dropped": float(np.median(py[~part.clean.to_numpy()])) if (~part.clean).any() else np.nan,
            }
        )
    return pd.DataFrame(rows)


def markdown(frame: pd.DataFrame) -> str:
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in frame.astype(object).iterrows():
        cells = [f"{v:.3f}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def history_table(folder: Path) -> str:
    history = read_selection_history(folder)
    frame = pd.DataFrame(
        [
            {
                "epoch": int(h["epoch"]),
                "aux clean ratio": h.get("selection/aux_clean_ratio", float("nan")),
                "precision": h.get("selection/precision", float("nan")),
                "recall": h.get("selection/recall", float("nan")),
                "F1": h.get("selection/f1", float("nan")),
                "mean tau (expert 0)": h.get("selection/mean_tau/expert_0", float("nan")),
            }
            for h in history
        ]
    )
    return markdown(frame)


def created_table(runs: dict[str, list[Path]]) -> str:
    lines = ["| arm | seed | " + " | ".join(EXPRESSIONS) + " |", "|" + "---|" * (2 + len(EXPRESSIONS))]
    for arm, folders in runs.items():
        for folder in folders:
            history = read_selection_history(folder)
            last = history[-1] if history else {}
            counts = [int(last.get(f"pairing/created/class_{c}", 0)) for c in range(len(EXPRESSIONS))]
            if sum(counts):
                lines.append(f"| {arm} | {folder.name} | " + " | ".join(map(str, counts)) + " |")
    return "\n".join(lines)


def gap_closure(runs: dict[str, list[Path]]) -> str:
    def mean(arm: str, key: str) -> float | None:
        if arm not in runs:
            return None
        return float(np.mean([read_eval_metrics(f)[key] for f in runs[arm]]))

    lines = []
    for key in ("accuracy", "macro_f1"):
        straight, perfect = mean("straight", key), mean("perfect_selection", key)
        for arm in ("sspa", "transition", "transition_moe", "second_round", "second_round_transition", "cleanlab"):
            value = mean(arm, key)
            if None not in (straight, value, perfect) and perfect != straight:
                share = (value - straight) / (perfect - straight)
                lines.append(
                    f"- {key}: straight {100 * straight:.2f}, {arm} {100 * value:.2f}, perfect selection "
                    f"{100 * perfect:.2f}: {arm} closes {100 * share:.0f} % of the gap."
                )
    return "\n".join(lines)


#: The differences the interval table gives: (column, metric, classes the macro mean is over).
INTERVAL_COLUMNS = [
    ("accuracy", "accuracy", None),
    ("macro F1", "macro_f1", None),
    ("mean-class acc.", "macro_recall", None),
    ("macro F1 w/o disgust", "macro_f1", [c for c, n in enumerate(EXPRESSIONS) if n != "disgust"]),
]


def predictions_by_seed(folders: list[Path]) -> dict[str, pd.DataFrame]:
    """Each seed's per-face predictions ('seed1' -> frame); runs without eval_predictions.parquet are left out."""
    found = {f.name: read_predictions(f) for f in folders}
    return {seed: frame for seed, frame in found.items() if frame is not None}


def interval_table(runs: dict[str, list[Path]], reference: str) -> str:
    """Every arm minus `reference` on the seeds both ran: seed-mean difference [95 % paired-bootstrap interval]."""
    base = predictions_by_seed(runs.get(reference, []))
    if not base:
        return f"(no {reference} run wrote eval_predictions.parquet)"
    head = f"| arm - {reference} | seeds | " + " | ".join(f"Δ {c[0]}" for c in INTERVAL_COLUMNS) + " |"
    lines = [head, "|" + "---|" * (2 + len(INTERVAL_COLUMNS))]
    for arm, folders in runs.items():
        mine = predictions_by_seed(folders)
        seeds = sorted(set(mine) & set(base))
        if arm == reference or not seeds:
            continue
        y_true = base[seeds[0]].label.to_numpy()
        for seed in seeds:
            if not np.array_equal(mine[seed].label.to_numpy(), y_true):
                raise SystemExit(f"{arm} {seed} was evaluated on other faces than {reference} {seeds[0]}")
        a = np.stack([mine[s].prediction.to_numpy() for s in seeds])
        b = np.stack([base[s].prediction.to_numpy() for s in seeds])
        cells = []
        for _, metric, classes in INTERVAL_COLUMNS:
            r = paired_bootstrap(y_true, a, b, metric=metric, classes=classes)
            cells.append(f"{100 * r['difference']:+.2f} [{100 * r['low']:+.2f}, {100 * r['high']:+.2f}]")
        names = ",".join(s.removeprefix("seed") for s in seeds)
        lines.append(f"| {arm} | {names} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=Path("benchmarks/out/ferplus/runs"))
    parser.add_argument("--output", type=Path)
    parser.add_argument(
        "--references",
        nargs="+",
        default=["straight", "transition", "perfect_selection", "transition_pam"],
        help="arms every other arm is compared with (those without runs are left out)",
    )
    args = parser.parse_args()
    runs = runs_of(args.runs)
    parts = ["### Evaluation (FERPlus labels)", metrics_table(runs), "", gap_closure(runs), ""]
    for reference in [r for r in args.references if r in runs]:
        parts += [
            f"### Differences to {reference} (seed mean [95 % paired bootstrap over faces and seeds], points)",
            interval_table(runs, reference),
            "",
        ]
    # evaluation-only folders (withheld.py's) have no selection table or history
    trained = {arm: [f for f in folders if (f / SELECTION_TABLE).is_file()] for arm, folders in runs.items()}
    for arm in ("sspa", "transition", "cleanlab", "ssm", "ssm_dt", "ssm_dt_moe", "ssm_dt_pam"):
        for folder in trained.get(arm, []):
            table = read_selection_table(folder)
            parts += [f"### Selection quality: {arm} {folder.name}", markdown(quality_table(table)), ""]
            if "target_standard_label" in table:
                parts += [f"Relabelling: {relabel_quality(table)}", ""]
    if trained.get("sspa"):
        first = trained["sspa"][0]
        parts += [f"### Selection over the epochs: sspa {first.name}", history_table(first), ""]
        parts += [
            f"### Consistent auxiliary faces the selection dropped: sspa {first.name} (means over experts)",
            markdown(consistent_but_dropped(first)),
            "",
        ]
    parts += ["### PAM mixtures created per class (whole PA stage)", created_table(runs), ""]
    text = "\n".join(parts)
    if args.output:
        args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
