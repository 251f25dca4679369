"""Model cards of SSPA-JT runs: a `huggingface_hub.ModelCard` rendered from the template shipped in the package.

Metadata goes through `ModelCardData` and the evaluation scores through `EvalResult`s (the Hub's model-index), so
the Hub shows them. Everything else comes from the training arguments, the model config and the run folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from transformers import PretrainedConfig, TrainingArguments

from .folder import (
    SELECTION_TABLE,
    read_eval_metrics,
    read_selection_history,
    read_selection_table,
    selection_summary,
)

TEMPLATE = Path(__file__).parent / "templates" / "modelcard_template.md"
PAPER_DOI = "10.3390/electronics13193891"
PAPER_TITLE = (
    "A New Joint Training Method for Facial Expression Recognition with Inconsistently Annotated and Imbalanced Data"
)
TAGS = ["sspa-jt", "facial-expression-recognition", "image-classification"]
#: (key in eval_metrics.json, model-index metric type, label).
SUMMARY = (
    ("accuracy", "accuracy", "Accuracy (Eq. 9)"),
    ("macro_precision", "precision", "Macro precision (Eq. 10)"),
    ("macro_recall", "recall", "Mean-class accuracy (macro recall, Eq. 11)"),
    ("macro_f1", "f1", "Macro F1 (Eq. 12, mean of per-class F1)"),
)
BACKBONES = {"resnet": "ResNet (global average-pooled feature)", "arm": "ARM (ResNet + de-albino + affinity)"}


def dataset_id(spec: str) -> str:
    """A short dataset name for metadata, never a local path: the hub id of `hf:`, the FORMAT, or a folder's name."""
    head, sep, rest = spec.partition(":")
    if sep and head == "hf":
        return rest.partition("?")[0]
    if sep and head.isidentifier() and len(head) > 1:
        return head
    return Path(spec.rstrip("/")).name


def _percent(value: float) -> str:
    return f"{100 * float(value):.2f}"


def _mode_card(mode: str) -> str:
    """The selection mode's paragraph for the Method section (empty for the paper's own mode)."""
    from ..modes import get_mode

    return get_mode(mode).card


def _hyperparameters(args: TrainingArguments) -> dict[str, Any]:
    """The mode, the schedule and the method's settings: the rows of the knobs the run's selection mode reads come
    from the mode (`card_rows`; the others had no effect)."""
    from ..modes import get_mode

    optimizer = f"{getattr(args.optim, 'value', args.optim)} {args.optim_args or ''}".strip()
    name = getattr(args, "selection_mode", "paper")
    mode = get_mode(name)
    return {
        "selection_mode": name,
        "epochs": args.num_train_epochs,
        **mode.card_rows(args, schedule=True),
        "batch size": args.per_device_train_batch_size * max(args.world_size, 1),
        "optimizer": optimizer,
        "learning rate": args.learning_rate,
        "weight decay": args.weight_decay,
        "scheduler": getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type),
        **mode.card_rows(args),
        "crop padding": args.crop_padding,
        "training augmentation": args.train_augmentation,
        "seed": args.seed,
    }


def _selection_rows(summary: dict[str, Any], names: Sequence[str]) -> list[list[str]]:
    rows, total_aux, total_sel = [], 0, 0
    for name in names:
        aux, sel = summary["per_class"][name]["auxiliary"], summary["per_class"][name]["selected"]
        rows.append([name, str(aux), str(sel), _percent(sel / aux) if aux else "-"])
        total_aux, total_sel = total_aux + aux, total_sel + sel
    rows.append(["**all**", str(total_aux), str(total_sel), _percent(total_sel / total_aux) if total_aux else "-"])
    return rows


def _created(history: list[dict[str, Any]], names: Sequence[str]) -> list[tuple[str, int]]:
    """PAM mixtures created per class, from the last history entry that counts them (empty when none was made)."""
    for row in reversed(history):
        if any(key.startswith("pairing/created/class_") for key in row):
            return [(name, int(row.get(f"pairing/created/class_{c}", 0))) for c, name in enumerate(names)]
    return []


def model_card(
    output_dir: str | Path,
    config: PretrainedConfig,
    args: TrainingArguments,
    model_name: str | None = None,
    train_datasets: Sequence[str] = (),
    eval_dataset: str | None = None,
    eval_split: str = "test",
    license: str = "apache-2.0",
) -> ModelCard:
    """The card of the run in `output_dir`: `train_datasets` are the target and auxiliary specs (else the table's
    sources), `eval_dataset`/`eval_split` what eval_metrics.json was measured on (default: the target)."""
    folder = Path(output_dir)
    names = [config.id2label[i] for i in range(config.num_labels)]
    repo_id = args.hub_model_id or "path/to/this/model"
    model_name = model_name or args.hub_model_id or folder.name
    table = read_selection_table(folder) if (folder / SELECTION_TABLE).is_file() else None
    counts, sources = {True: "-", False: "-"}, {True: "not recorded", False: "none"}
    if table is not None:
        for is_target in (True, False):
            rows = table[table["is_target"].astype(bool) == is_target]
            counts[is_target] = str(len(rows))
            if len(rows):
                sources[is_target] = ", ".join(sorted(set(rows["source"])))
    train_datasets = [spec for spec in train_datasets if spec]
    for is_target, spec in zip((True, False), train_datasets, strict=False):
        sources[is_target] = spec
    ids = list(dict.fromkeys(dataset_id(spec) for spec in train_datasets))
    eval_dataset = eval_dataset or (train_datasets[0] if train_datasets else None)
    eval_name = dataset_id(eval_dataset) if eval_dataset else "evaluation set"
    metrics = read_eval_metrics(folder)
    eval_results = [
        EvalResult(
            task_type="image-classification",
            task_name="Facial expression recognition",
            dataset_type=eval_name,
            dataset_name=eval_name,
            dataset_split=eval_split,
            metric_type=kind,
            metric_name=label,
            metric_value=round(float(metrics[key]), 6),
        )
        for key, kind, label in SUMMARY
        if key in metrics
    ]
    card_data = ModelCardData(
        model_name=model_name,
        library_name="transformers",
        pipeline_tag="image-classification",
        license=license,
        tags=list(TAGS),
        datasets=ids or None,
        metrics=[kind for _, kind, _ in SUMMARY],
        eval_results=eval_results or None,
    )
    summary = selection_summary(table, names) if table is not None and counts[False] != "0" else None
    quality = (summary or {}).get("quality")
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        model_name=model_name,
        repo_id=repo_id,
        paper_title=PAPER_TITLE,
        paper_doi=PAPER_DOI,
        backbone=BACKBONES.get(config.backbone, config.backbone),
        num_experts=config.num_experts,
        image_size=config.image_size,
        class_names=names,
        target_dataset=sources[True],
        auxiliary_dataset=sources[False],
        n_target=counts[True],
        n_auxiliary=counts[False],
        hyperparameters=_hyperparameters(args),
        mode_card=_mode_card(getattr(args, "selection_mode", "paper")),
        generated_only=bool(train_datasets) and all(spec.startswith("synthetic:") for spec in train_datasets),
        metrics=metrics,
        eval_dataset=eval_dataset or "not recorded",
        eval_split=eval_split,
        summary=[(label, _percent(metrics[key])) for key, _, label in SUMMARY if key in metrics],
        per_class_metrics=[
            [n, *(_percent(metrics[f"{kind}/{n}"]) for kind in ("precision", "recall", "f1")), metrics[f"support/{n}"]]
            for n in names
            if f"f1/{n}" in metrics
        ],
        selection=_selection_rows(summary, names) if summary else None,
        quality={k: v if k == "known" else _percent(v) for k, v in quality.items()} if quality else None,
        created=_created(read_selection_history(folder), names),
    )
