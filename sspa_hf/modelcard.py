"""Model cards (README.md with Hub front matter) for models trained with SSPA-JT.

A card is rendered from one plain dict (`render_model_card`); anything missing is written as "not recorded",
so a card can always be written, even for a run that stopped early. `info_from_output_dir` gathers what a
training output folder holds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from sspa_hf.labels import EXPRESSIONS

NOT_RECORDED = "not recorded"
PAPER_DOI = "10.3390/electronics13193891"
PAPER_TITLE = (
    "A New Joint Training Method for Facial Expression Recognition with Inconsistently Annotated and Imbalanced Data"
)
PAPER_AUTHORS = "Chen, Tao and Zhang, Dong and Lee, Dah-Jye"
TAGS = ["sspa-jt", "facial-expression-recognition", "image-classification"]
CARD_METRICS = ["accuracy", "f1", "precision", "recall"]
_METRIC_PREFIXES = ("eval_", "test_")
_SUMMARY = (("accuracy", "Accuracy (Eq. 9)"), ("macro_precision", "Macro precision (Eq. 10)"))
_SUMMARY += (("macro_recall", "Macro recall (Eq. 11)"), ("macro_f1", "Macro F1 (Eq. 12, mean of per-class F1)"))

CITATION = f"""@article{{chen2024sspajt,
  title   = {{{PAPER_TITLE}}},
  author  = {{{PAPER_AUTHORS}}},
  journal = {{Electronics}},
  volume  = {{13}},
  number  = {{19}},
  pages   = {{3891}},
  year    = {{2024}},
  doi     = {{{PAPER_DOI}}}
}}"""


def _given(value: Any) -> bool:
    """True for a value worth printing (not None, not an empty string/collection, not NaN)."""
    if value is None:
        return False
    if isinstance(value, float) and math.isnan(value):
        return False
    return not (isinstance(value, str | list | tuple | dict) and len(value) == 0)


def _text(value: Any) -> str:
    """A table cell: the value, or "not recorded"; pipes escaped so Markdown tables stay intact."""
    if not _given(value):
        return NOT_RECORDED
    if isinstance(value, float):
        value = f"{value:g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _percent(value: Any) -> str:
    """A score in [0, 1] as a percentage with two decimals, or "not recorded"."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return NOT_RECORDED
    return NOT_RECORDED if math.isnan(number) else f"{100 * number:.2f}"


def normalise_metrics(metrics: Mapping[str, Any] | None) -> dict[str, Any]:
    """Metric keys without their `eval_`/`test_` prefix; on a clash eval_ wins over test_, which wins over bare."""
    rank = {"eval_": 0, "test_": 1}
    best: dict[str, tuple[int, Any]] = {}
    for key, value in (metrics or {}).items():
        prefix = next((p for p in _METRIC_PREFIXES if key.startswith(p)), "")
        bare, priority = key[len(prefix) :], rank.get(prefix, 2)
        if bare not in best or priority < best[bare][0]:
            best[bare] = (priority, value)
    return {key: value for key, (_, value) in best.items()}


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def selection_stats_from_table(path: str | Path, class_names: Sequence[str] = EXPRESSIONS) -> dict[str, Any]:
    """Per-class auxiliary/selected counts and selection precision/recall/F1 from a `selection.parquet`.

    Quality follows the trainer's definition: positives are auxiliary samples whose label equals their known
    reference (target-standard) label; it is left out when no reference label is known.
    """
    import pandas as pd

    frame = pd.read_parquet(path)
    aux = frame[~frame["is_target"].astype(bool)]
    labels, clean = aux["label"].to_numpy(dtype=np.int64), aux["clean"].to_numpy(dtype=bool)
    per_class = {
        name: {"auxiliary": int((labels == c).sum()), "selected": int(((labels == c) & clean).sum())}
        for c, name in enumerate(class_names)
    }
    stats: dict[str, Any] = {"per_class": per_class}
    if "reference_label" in aux.columns:
        reference = aux["reference_label"].to_numpy(dtype=np.int64)
        known = reference >= 0
        if known.any():
            consistent, selected = (labels == reference)[known], clean[known]
            hits = float((consistent & selected).sum())
            precision = hits / max(float(selected.sum()), 1.0)
            recall = hits / max(float(consistent.sum()), 1.0)
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            stats["quality"] = {"precision": precision, "recall": recall, "f1": f1, "known": int(known.sum())}
    return stats


def _last_with(history: Sequence[Mapping[str, Any]] | None, prefix: str) -> Mapping[str, Any]:
    """The last history entry holding a key that starts with `prefix` (empty when none does)."""
    for row in reversed(list(history or [])):
        if any(key.startswith(prefix) for key in row):
            return row
    return {}


def _selection(info: Mapping[str, Any], class_names: Sequence[str]) -> dict[str, Any]:
    """Per-class selection counts and quality from (in order of preference) `selection`, the table, the history."""
    given = dict(info.get("selection") or {})
    path = info.get("selection_table_path")
    if path and Path(path).is_file() and "per_class" not in given:
        from_table = selection_stats_from_table(path, class_names)
        given = {**from_table, **given}
    if "quality" not in given:
        last = _last_with(info.get("history"), "selection/precision")
        if last:
            given["quality"] = {key: last.get(f"selection/{key}") for key in ("precision", "recall", "f1")}
    if "ratios" not in given:
        last = _last_with(info.get("history"), "selection/aux_clean_ratio")
        if last:
            ratios = {name: last.get(f"selection/aux_clean_ratio/class_{c}") for c, name in enumerate(class_names)}
            given["ratios"] = {**ratios, "all": last.get("selection/aux_clean_ratio")}
    return given


def _pairs_created(info: Mapping[str, Any], class_names: Sequence[str]) -> dict[str, Any]:
    """PAM mixtures created per class: `pairing_created` (name -> count), else the last history entry."""
    if _given(info.get("pairing_created")):
        return dict(info["pairing_created"])
    last = _last_with(info.get("history"), "pairing/created/class_")
    if not last:
        return {}
    return {name: last.get(f"pairing/created/class_{c}", 0) for c, name in enumerate(class_names)}


def _dataset_ids(info: Mapping[str, Any]) -> list[str]:
    """Front-matter dataset ids: `datasets` when given, else one short name per dataset spec (no local paths)."""
    if _given(info.get("datasets")):
        return [str(d) for d in info["datasets"]]
    names = []
    for key in ("target_dataset", "auxiliary_dataset"):
        spec = info.get(key)
        if not _given(spec):
            continue
        head, sep, rest = str(spec).partition(":")
        if sep and head == "hf":
            names.append(rest.partition("?")[0])
        elif sep and head.isidentifier():
            names.append(head)
        else:
            names.append(Path(str(spec).rstrip("/")).name)
    return list(dict.fromkeys(name for name in names if name))


def _front_matter(info: Mapping[str, Any], metrics: Mapping[str, Any], name: str) -> str:
    meta: dict[str, Any] = {
        "library_name": "transformers",
        "pipeline_tag": "image-classification",
        "license": info.get("license") or "apache-2.0",
        "tags": list(TAGS),
        "datasets": _dataset_ids(info),
        "metrics": list(CARD_METRICS),
    }
    results = [
        {"type": key.removeprefix("macro_"), "name": label, "value": round(float(metrics[key]), 6)}
        for key, label in _SUMMARY
        if _given(metrics.get(key))
    ]
    if results:
        target = str(info.get("eval_dataset") or info.get("target_dataset") or "evaluation set")
        dataset_name = _dataset_ids({"target_dataset": target}) or [target]
        meta["model-index"] = [
            {
                "name": name,
                "results": [
                    {
                        "task": {"type": "image-classification", "name": "Facial expression recognition"},
                        "dataset": {
                            "name": dataset_name[0],
                            "type": dataset_name[0],
                            "split": str(info.get("eval_split") or "test"),
                        },
                        "metrics": results,
                    }
                ],
            }
        ]
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n"


def render_model_card(info: Mapping[str, Any]) -> str:
    """The README.md of a model trained with SSPA-JT: Hub front matter, then method, data, results, usage, limits.

    Keys of `info` (all optional; a missing one is written "not recorded"):
        repo_id / model_name: the Hub id (used in the usage example) / a display name (title);
        backbone ("resnet" or "arm"), num_experts (k), image_size (pixels), class_names (default: the 7 canonical);
        target_dataset, auxiliary_dataset (dataset specs or names), auxiliary_fraction (p), datasets (Hub ids
        for the front matter; default: short names of the specs), eval_dataset, eval_split;
        hyperparameters: dict name -> value (learning_rate, epochs, selection_epochs, ema_momentum, mixup ...);
        metrics: dict of `classification_metrics` keys, bare or prefixed with eval_/test_;
        selection: {"per_class": {name: {"auxiliary": n, "selected": n}}, "quality": {"precision", "recall",
        "f1"}}, or selection_table_path (a selection.parquet it is computed from);
        history: the list of selection_history.json (final clean ratios, selection quality, PAM counts);
        pairing_created: dict name -> PAM mixtures created (default: from the history); license.
    """
    names = list(info.get("class_names") or EXPRESSIONS)
    metrics = normalise_metrics(info.get("metrics"))
    repo_id = info.get("repo_id")
    title = str(info.get("model_name") or repo_id or "SSPA-JT facial expression recognition model")
    backbone = info.get("backbone")
    backbone_text = {"resnet": "ResNet (global average-pooled feature)", "arm": "ARM (ResNet + de-albino + affinity)"}
    parts = [_front_matter(info, metrics, title), f"# {title}\n"]
    parts.append(
        "A facial expression recognition model (7 basic expressions) trained with **SSPA-JT**, Sample Selection "
        "and Paired Augmentation Joint Training, with the `sspa-hf` implementation on 🤗 Transformers.\n"
    )
    parts.append(
        "## Method\n\n"
        "SSPA-JT trains one network on a well-annotated *target* dataset together with an *auxiliary* dataset whose "
        "labels follow a different annotation standard. A Mixture-of-Experts head gives k predictions per face; "
        "per-sample EMA thresholds (Eq. 3-4) select the auxiliary samples whose labels agree with the target "
        "standard (*clean*). After the T_S epochs of this sample-selection stage the partition is frozen and the "
        "remaining *noisy* auxiliary samples are mixed (Mixup) into clean partners of the tail classes (paired "
        "augmentation, PAM).\n\n"
        f"Paper: T. Chen, D. Zhang, D.-J. Lee, *{PAPER_TITLE}*, Electronics 13(19):3891, 2024, "
        f"[doi:{PAPER_DOI}](https://doi.org/{PAPER_DOI}).\n"
    )
    image_size = info.get("image_size")
    parts.append(
        "## Model\n\n"
        + _table(
            ["", ""],
            [
                ["Backbone", _text(backbone_text.get(backbone, backbone) if _given(backbone) else None)],
                ["Experts (k)", _text(info.get("num_experts"))],
                ["Input size", f"{image_size} x {image_size} px" if _given(image_size) else NOT_RECORDED],
                ["Classes", ", ".join(names)],
                ["Test-time prediction", "mean of the k expert probabilities"],
            ],
        )
        + "\n"
    )
    fraction = info.get("auxiliary_fraction")
    parts.append(
        "## Training data\n\n"
        + _table(
            ["", ""],
            [
                ["Target dataset", _text(info.get("target_dataset"))],
                ["Auxiliary dataset", _text(info.get("auxiliary_dataset"))],
                ["Auxiliary fraction p", _text(fraction)],
            ],
        )
        + "\n"
    )
    hyper = info.get("hyperparameters") or {}
    parts.append(
        "## Training hyperparameters\n\n"
        + (_table(["Name", "Value"], [[_text(k), _text(v)] for k, v in hyper.items()]) if hyper else NOT_RECORDED)
        + "\n"
    )
    parts.append(_metrics_section(info, metrics, names))
    parts.append(_selection_section(info, names))
    parts.append(_pairing_section(info, names))
    parts.append(_usage_section(repo_id))
    parts.append(_limitations_section(info))
    parts.append(f"## Citation\n\n```bibtex\n{CITATION}\n```\n")
    return "\n".join(parts)


def _metrics_section(info: Mapping[str, Any], metrics: Mapping[str, Any], names: Sequence[str]) -> str:
    where = info.get("eval_dataset") or info.get("target_dataset")
    split = info.get("eval_split") or ("test" if _given(info.get("metrics")) else None)
    text = f"## Evaluation\n\nEvaluated on: {_text(where)} (split: {_text(split)}). Scores in %.\n\n"
    text += _table(["Metric", "Value (%)"], [[label, _percent(metrics.get(key))] for key, label in _SUMMARY])
    per_class = [name for name in names if any(f"{kind}/{name}" in metrics for kind in ("precision", "recall", "f1"))]
    if per_class:
        rows = [
            [
                name,
                _percent(metrics.get(f"precision/{name}")),
                _percent(metrics.get(f"recall/{name}")),
                _percent(metrics.get(f"f1/{name}")),
                _text(metrics.get(f"support/{name}")),
            ]
            for name in names
        ]
        text += "\n\nPer class:\n\n" + _table(["Class", "Precision (%)", "Recall (%)", "F1 (%)", "Support"], rows)
    else:
        text += f"\n\nPer-class metrics: {NOT_RECORDED}."
    return text + "\n"


def _selection_section(info: Mapping[str, Any], names: Sequence[str]) -> str:
    selection = _selection(info, names)
    text = "## Sample selection\n\nAuxiliary training samples per class (by their auxiliary label), and those "
    text += "selected as clean (consistent with the target standard) at the end of the selection stage.\n\n"
    per_class = selection.get("per_class") or {}
    ratios = selection.get("ratios") or {}
    if per_class or ratios:
        rows = []
        for name in names:
            counts = per_class.get(name) or {}
            aux, sel = counts.get("auxiliary"), counts.get("selected")
            ratio = sel / aux if _given(aux) and _given(sel) and aux else ratios.get(name)
            rows.append([name, _text(aux), _text(sel), _percent(ratio)])
        if per_class:
            total_aux = sum(int((per_class.get(n) or {}).get("auxiliary") or 0) for n in names)
            total_sel = sum(int((per_class.get(n) or {}).get("selected") or 0) for n in names)
            overall = total_sel / total_aux if total_aux else None
            rows.append(["**all**", str(total_aux), str(total_sel), _percent(overall)])
        else:
            rows.append(["**all**", NOT_RECORDED, NOT_RECORDED, _percent(ratios.get("all"))])
        text += _table(["Class", "Auxiliary", "Selected", "Clean ratio (%)"], rows)
    else:
        text += f"Per-class selection statistics: {NOT_RECORDED}."
    quality = selection.get("quality") or {}
    if any(_given(quality.get(key)) for key in ("precision", "recall", "f1")):
        known = (
            f" ({quality['known']} auxiliary samples with a known target-standard label)"
            if quality.get("known")
            else ""
        )
        text += (
            f"\n\nSelection quality against target-standard labels{known}: precision "
            f"{_percent(quality.get('precision'))} %, recall {_percent(quality.get('recall'))} %, "
            f"F1 {_percent(quality.get('f1'))} %."
        )
    else:
        text += f"\n\nSelection precision/recall: {NOT_RECORDED} (needs target-standard labels of auxiliary samples)."
    return text + "\n"


def _pairing_section(info: Mapping[str, Any], names: Sequence[str]) -> str:
    created = _pairs_created(info, names)
    text = "## Paired augmentation\n\nMixtures of a noisy auxiliary sample with a clean partner created by PAM, "
    text += "per class of the clean partner (whose label the mixture takes), over all paired-augmentation epochs.\n\n"
    if not created:
        return text + f"PAM mixtures per class: {NOT_RECORDED}.\n"
    rows = [[name, _text(int(created[name]) if _given(created.get(name)) else None)] for name in names]
    return text + _table(["Class", "Mixtures created"], rows) + "\n"


def _usage_section(repo_id: Any) -> str:
    model = str(repo_id) if _given(repo_id) else "path/to/this/model"
    return (
        "## How to use\n\n"
        "```python\n"
        "from transformers import pipeline\n\n"
        f'classifier = pipeline("image-classification", model="{model}", trust_remote_code=True)\n'
        'print(classifier("face.jpg", top_k=3))  # an aligned face crop works best\n'
        "```\n\n"
        "With the `sspa-hf` package installed, `import sspa_hf` registers the model, and `trust_remote_code` is "
        "not needed; `sspa-predict` and `sspa-eval` run it from the command line.\n"
    )


def _limitations_section(info: Mapping[str, Any]) -> str:
    data = [str(info[key]) for key in ("target_dataset", "auxiliary_dataset") if _given(info.get(key))]
    trained_on = f"Trained on {' and '.join(data)}" if data else f"Training data: {NOT_RECORDED}"
    return (
        "## Limitations\n\n"
        f"- {trained_on}; faces, poses, image quality and cultures unlike the training data may be "
        "recognised worse.\n"
        "- Recognises 7 basic expressions only (anger, disgust, fear, happiness, neutral, sadness, surprise); "
        "compound or subtle expressions are forced into one of them.\n"
        "- Facial expression datasets carry demographic (age, gender, ethnicity) and annotation biases; the "
        "model inherits them. Evaluate it on your population before relying on it.\n"
        "- An expression is not an emotion: do not use this model for high-stakes decisions about people "
        "(hiring, policing, health, education, surveillance).\n"
        "- The test-time combination of the k experts is the mean of their probabilities; this is our choice, "
        "the paper does not specify it.\n"
    )


def write_model_card(output_dir: str | Path, info: Mapping[str, Any]) -> Path:
    """Render the card and write it to `output_dir/README.md`."""
    path = Path(output_dir) / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_model_card(info), encoding="utf-8")
    return path


def info_from_output_dir(output_dir: str | Path, **overrides: Any) -> dict[str, Any]:
    """What a training output folder tells a card: config (backbone, k, size), metrics, history, selection table.

    Reads config.json, all_results.json (else eval_results.json), selection_history.json and selection.parquet
    when present; `overrides` (e.g. target_dataset, hyperparameters) are added on top.
    """
    folder = Path(output_dir)
    info: dict[str, Any] = {}
    config = _read_json(folder / "config.json")
    if isinstance(config, dict):
        info["backbone"] = config.get("backbone")
        info["num_experts"] = config.get("num_experts")
        info["image_size"] = config.get("image_size")
        id2label = config.get("id2label") or {}
        if id2label:
            info["class_names"] = [id2label[key] for key in sorted(id2label, key=int)]
    results = _read_json(folder / "all_results.json") or _read_json(folder / "eval_results.json")
    if isinstance(results, dict):
        info["metrics"] = {k: v for k, v in results.items() if k.startswith(_METRIC_PREFIXES)}
    history = _read_json(folder / "selection_history.json")
    if isinstance(history, list):
        info["history"] = history
    if (folder / "selection.parquet").is_file():
        info["selection_table_path"] = str(folder / "selection.parquet")
    info.update(overrides)
    return info


def _read_json(path: Path) -> Any:
    """The JSON content of `path`, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
