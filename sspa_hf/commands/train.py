"""sspa-train: train an SSPA-JT model from a YAML/JSON recipe (flags override it), evaluate it, report, push.

sspa-train recipes/quickstart.yaml
sspa-train recipes/rafdb_affectnet10_resnet18.yaml --num_train_epochs 40 --output_dir runs/short
accelerate launch --config_file recipes/accelerate_configs/multi_gpu.yaml -m sspa_hf.commands.train RECIPE
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from transformers import set_seed
from transformers.utils import logging as hf_logging

from ..errors import UserInputError, first_line
from ..evaluation.metrics import evaluate_predictions, format_summary
from ..run.checkpoints import disk_full, latest_complete_checkpoint, resolve_resume, terminate
from ..run.guard import RunLock, RunStatus, check_output_dir, data_record, remove_if_only_bookkeeping, start_over
from ..training.arguments import DataArguments, ModelArguments, SSPATrainingArguments
from . import run_command
from .train_parser import TrainArgumentParser, load_recipe, parse_arguments, write_recipe

__all__ = ["load_recipe", "main", "parse_arguments", "train"]

logger = logging.getLogger("sspa_hf.train")


def train(
    model_args: ModelArguments,
    data_args: DataArguments,
    args: SSPATrainingArguments,
    status: RunStatus | None = None,
    push_at_end: bool = False,
) -> dict[str, Any]:
    """Build, train, evaluate on the target test split, write reports and the model card, mark the run complete
    (`status`), then push; return eval metrics. `push_at_end`: push once at the end although `args.push_to_hub`
    was turned off for the Trainer (the Hub could not be reached at start-up)."""
    from ..data.sources import face_preparation
    from ..evaluation.metrics import compute_metrics
    from ..modes import get_mode
    from ..run.folder import (
        CONFUSION_MATRIX,
        DATA_ARGS,
        RECIPE,
        write_evaluation_report,
        write_predictions,
        write_training_report,
    )
    from ..run.guard import check_free_space
    from ..training.build import build_datasets, build_model, plain_trainers
    from ..training.trainer import SSPATrainer

    set_seed(args.seed)
    mode = get_mode(args.selection_mode)
    model, processor = build_model(model_args, **mode.model_options)
    if args.should_save and args.save_strategy != "no":
        check_free_space(Path(args.output_dir), model)
    train_set, eval_set = build_datasets(data_args, seed=args.seed, report_dir=Path(args.output_dir))
    model.config.face_preparation = face_preparation(data_args.target_dataset)  # what inference repeats
    if args.should_save:  # what `sspa-export-selection` needs to rebuild the training set
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        record = {**data_record(data_args, args.seed), "num_samples": len(train_set)}
        (Path(args.output_dir) / DATA_ARGS).write_text(json.dumps(record, indent=1))
        write_recipe(Path(args.output_dir) / RECIPE, model_args, data_args, args)  # `sspa-train OUT/recipe.yaml`
    train_set = mode.before_training(train_set, args=args, plain_trainers=plain_trainers(model_args, args))
    trainer = SSPATrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=processor,
        compute_metrics=compute_metrics,
    )
    result = trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    trainer.save_model()
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    trainer.save_state()

    prediction = trainer.predict(eval_set, metric_key_prefix="eval")
    output_dir = Path(args.output_dir)
    class_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    eval_spec = data_args.eval_dataset or data_args.target_dataset
    y_true, y_pred = prediction.label_ids, np.argmax(prediction.predictions, axis=-1)
    with one_line_on_full_disk(output_dir):  # the model is saved: a full disk now loses only reports
        if args.should_save:
            title = f"{eval_spec} [{data_args.eval_split}]"
            full = write_evaluation_report(output_dir, y_true, y_pred, class_names, title)
            write_predictions(output_dir, y_true, prediction.predictions, class_names)
            plots = [output_dir / CONFUSION_MATRIX, *write_training_report(output_dir, train_set)]
            log_plots_to_tensorboard(trainer, plots)
        else:
            full = evaluate_predictions(y_true, y_pred, class_names)
        scalars = {f"eval_{k}": v for k, v in full.items() if isinstance(v, (int, float))}
        trainer.save_metrics("eval", scalars)  # printed below by print_summary, with the selection quality
        card = {
            "dataset_tags": [data_args.target_dataset, data_args.auxiliary_dataset],
            "dataset": eval_spec,
            "dataset_args": data_args.eval_split,
        }
        trainer.create_model_card(**card)
    if status is not None:
        status.write("complete")  # before the push, so that the pushed run_status.json says so
    if args.push_to_hub or push_at_end:
        push_final(trainer, **card)
    quality = trainer.selector.quality()
    if args.should_save:
        print_summary(full, class_names, quality, output_dir)
    return {**scalars, **quality}


@contextlib.contextmanager
def one_line_on_full_disk(output_dir: Path) -> Iterator[None]:
    """A full disk while the end-of-run reports are written, after the model was saved: one line (and
    run_status.json's error) saying what was kept and how to get the rest, instead of a traceback."""
    try:
        yield
    except Exception as exc:
        full = disk_full(exc, output_dir)
        if full is None:
            raise
        model_files = ("model.safetensors", "config.json", "preprocessor_config.json")
        kept = [name for name in model_files if (output_dir / name).is_file()]
        checkpoint = latest_complete_checkpoint(output_dir)[0]
        how = (
            f"free some space and run the same command with --resume_from_checkpoint true: it starts from {checkpoint}"
            " and writes them without training again"
            if checkpoint
            else f"free some space; sspa-eval {output_dir} DATASET evaluates the model"
        )
        raise UserInputError(
            f"writing the end-of-run reports into {output_dir} failed: {full}; kept: the trained model "
            f"({', '.join(kept) or 'none'}){f' and {checkpoint.name}' if checkpoint else ''}; missing: some of the "
            f"metrics, plots and model card; {how}"
        ) from exc


def log_plots_to_tensorboard(trainer: Any, images: list[Path]) -> None:
    """With `report_to` tensorboard, the run's plots also go to TensorBoard as images (beside the scalars),
    through the summary-writer class and folder of the Trainer's TensorBoardCallback."""
    from transformers.integrations import TensorBoardCallback

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback) and callback._SummaryWriter is not None:
            writer = callback._SummaryWriter(log_dir=callback.logging_dir)
            write_images(writer, images, trainer.state.global_step)


def write_images(writer: Any, images: list[Path], step: int) -> None:
    """Add each PNG to a SummaryWriter as an HWC uint8 image tagged plots/NAME, then close the writer."""
    from PIL import Image

    for path in images:
        with Image.open(path) as image:
            writer.add_image(f"plots/{path.stem}", np.asarray(image.convert("RGB")), step, dataformats="HWC")
    writer.close()


def push_final(trainer: Any, **card: Any) -> None:
    """The end-of-run push (`card`: the model card's data set fields); if it fails the trained model is still in
    output_dir, and the message says so."""
    trainer.args.push_to_hub = True
    try:
        trainer.push_to_hub(**card)
    except Exception as exc:
        raise UserInputError(
            f"the push to the Hub failed ({first_line(exc)}); the trained model is complete in "
            f"{trainer.args.output_dir}: push it later with `hf upload REPO_ID {trainer.args.output_dir}`"
        ) from exc


def check_arguments(model_args: ModelArguments, data_args: DataArguments, args: SSPATrainingArguments) -> bool:
    """Refuse, before any work, what would fail or silently do something else later; return whether the push
    must wait for the end of the run (`hub_strategy end` while the Hub cannot be reached now)."""
    from .hub import check_model_reference, push_problem

    output_dir = Path(args.output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise UserInputError(f"output_dir {output_dir} is an existing file, not a folder")
    if model_args.backbone_weights and not Path(model_args.backbone_weights).is_file():
        raise UserInputError(
            f"backbone_weights {model_args.backbone_weights}: no such file. The paper recipes start from a ResNet-18 "
            "pretrained on MS-Celeb-1M (resnet18_msceleb.pth, from FER code bases; recipes/README.md, 'Weights'): "
            "put it there, or pass --backbone_weights PATH"
        )
    if args.should_save:
        check_output_dir(
            output_dir, bool(args.resume_from_checkpoint), args.overwrite_output_dir, data_record(data_args, args.seed)
        )
    check_resume(args)
    if model_args.model_name_or_path:
        check_model_reference(model_args.model_name_or_path, "model_name_or_path")
    elif model_args.backbone_checkpoint:
        check_model_reference(model_args.backbone_checkpoint, "backbone_checkpoint")
    check_report_to(args.report_to)
    if not args.push_to_hub:
        return False
    problem = push_problem(args.hub_token)
    if problem is None:
        return False
    if getattr(args.hub_strategy, "value", args.hub_strategy) != "end":
        raise UserInputError(
            f"push_to_hub: {problem}; fix that, or set --hub_strategy end to train now and push only at the end"
        )
    logger.warning("push_to_hub: %s; training anyway, the push is tried once at the end (hub_strategy end)", problem)
    args.push_to_hub = False  # the Trainer would create the repository now
    return True


def check_resume(args: SSPATrainingArguments) -> None:
    """`--resume_from_checkpoint true` becomes the newest complete checkpoint (said in one line), a given one must
    be complete: before any work, so that a run with nothing to resume leaves nothing behind."""
    args.resume_from_checkpoint = resolve_resume(
        args.resume_from_checkpoint, args.output_dir, need_optimizer=not args.save_only_model
    )


def warn_if_oversubscribed(load: float | None = None, cores: int | None = None) -> bool:
    """Warn when the machine is already busy: two CPU trainings that each use every core run many times slower
    than one (torch starts one thread per core). Returns whether it warned."""
    import torch

    if os.environ.get("OMP_NUM_THREADS"):  # the user has already chosen the threads
        return False
    cores = cores or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    load = os.getloadavg()[0] if load is None and hasattr(os, "getloadavg") else load
    if load is None or load < cores:
        return False
    logger.warning(
        "this machine is busy (load %.1f on %d cores) and torch uses %d threads: another training at the same time "
        "slows both down many times; give each run its share with OMP_NUM_THREADS (e.g. %d)",
        load,
        cores,
        torch.get_num_threads(),
        max(1, cores // 2),
    )
    return True


def check_report_to(report_to: list[str] | str | None) -> None:
    """Every `report_to` back-end must be installed (transformers would fail later with a traceback)."""
    from transformers.integrations import get_available_reporting_integrations

    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    available = get_available_reporting_integrations()
    missing = [name for name in names if name not in ("none", "all") and name not in available]
    if missing:
        raise UserInputError(
            f"report_to {missing[0]}: its package is not installed (pip install {missing[0]}); "
            f"installed back-ends: {', '.join(available) or 'none'}"
        )


def print_summary(metrics: dict[str, Any], class_names: list[str], quality: dict[str, float], output_dir: Path) -> None:
    """The evaluation table sspa-eval prints, then the selection quality where it is known, then the model folder."""
    print(f"\nSSPA-JT results ({output_dir}):")
    print(format_summary(metrics, class_names))
    for name in ("precision", "recall"):
        if f"selection/{name}" in quality:
            print(f"{'selection ' + name:<20}{100 * quality[f'selection/{name}']:6.2f} %")
    use = f"pipeline('image-classification', model='{output_dir}', trust_remote_code=True)"
    print(f"{'model folder':<20}{output_dir} ({use})")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    early = "before training started: nothing was trained; run the same command again to start it"
    return run_command("sspa-train", lambda: _main(argv), sigterm=early)


def _main(argv: list[str]) -> int:
    if {"-h", "--help", "--help-all"} & set(argv):
        print(TrainArgumentParser().format_grouped_help(full="--help-all" in argv))
        return 0
    if not argv:
        raise UserInputError(
            "give a recipe: sspa-train recipes/quickstart.yaml (built-in faces, a few minutes on a CPU) or one of "
            "recipes/paper/; flags after it override it (sspa-train --help)"
        )
    model_args, data_args, training_args = parse_arguments(argv)
    push_at_end = check_arguments(model_args, data_args, training_args)
    if training_args.should_log:
        hf_logging.set_verbosity_warning()
        hf_logging.disable_progress_bar()  # "Writing model shards" at every save; the Trainer's own bar stays
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
        if training_args.use_cpu or not _has_accelerator():
            warn_if_oversubscribed()
    output_dir = Path(training_args.output_dir)
    made_folder = not output_dir.exists()
    lock = RunLock(output_dir).acquire() if training_args.should_save else None
    if training_args.overwrite_output_dir and training_args.should_save and not training_args.resume_from_checkpoint:
        start_over(output_dir)  # with a resume, the checkpoints are what it continues from
    status = RunStatus(output_dir, enabled=training_args.should_save)
    status.resumed_from = training_args.resume_from_checkpoint or None
    if _in_main_thread():  # until the command ends (run_command then puts back the handler it found)
        signal.signal(signal.SIGTERM, terminate)
    try:
        status.write("running")
        train(model_args, data_args, training_args, status=status, push_at_end=push_at_end)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            status.write("interrupted", exc, last_checkpoint=True)
        else:
            status.write("failed", exc)
        if lock is not None:
            lock.release()
        if made_folder and training_args.should_save:
            remove_if_only_bookkeeping(output_dir)  # a failed attempt leaves no half-made run folder
        raise
    finally:
        if lock is not None:
            lock.release()
    _leave_process_group()
    return 0


def _leave_process_group() -> None:
    """After a run that ended well, destroy the process group: gloo's worker threads left to interpreter exit abort
    the process (SIGABRT, "terminate called without an active exception") on some runs. Not after a failure: the
    other ranks may still be in a collective, and destroying would hang them."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available() or torch.backends.mps.is_available()


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":
    sys.exit(main())
