"""SSPATrainer against a plain `transformers.Trainer` and the model alone: training throughput, one run.

    python benchmarks/bench_trainer.py                      # FERPlus benchmark data if prepared, else generated faces
    python benchmarks/bench_trainer.py --steps 60 --rounds 3 --image_size 48
    python benchmarks/bench_trainer.py --preset gpu         # ResNet-18 and ARM, 224 px, batch 128, bf16, channels_last

The GPU preset also projects the wall time of the paper's RAF-DB + 10 % AffectNet run (80 epochs of
12,271 + 28,372 faces) from the SSPATrainer throughput (docs/RESULTS.md, benchmarks/gpu/README.md).

Both trainers get the same model architecture, data set, loader and optimiser: workers decode to uint8 faces and
draw their random parameters (`BatchAugment`), and `BatchAugment.apply` augments the batch on the training device
(the plain Trainer here in its `compute_loss`, as SSPATrainer does; channels_last after it). Arms, timed in
alternating rounds (medians): plain, SSPA in the sample-selection stage (threshold updates, masked loss), SSPA in
the paired-augmentation stage (a realistic partition: 30 % of the auxiliary samples noisy, so about 20 % of each
batch is mixed), selection_mode "transition" (the learnt standard transition in the loss) and "transition_pam" after
T_S (the same partition mixed by PAM, M on the kept auxiliary faces; its one verdict pass is inference, see
bench_scale.py), selection_mode "consistency" (transition plus a strong view of every face through the
model; `--arms sspa_transition sspa_consistency` times just those two); the old input path (commit 39999ca's
per-sample PIL `TrainAugment`, float faces from the workers, through the plain Trainer); the model alone (forward +
backward + step on one fixed batch); the data pipeline alone, old and new (decode + augment + collate, everything
before the forward)."""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import NamedTuple

import torch
from transformers import Trainer, TrainerCallback

from sspa_hf import SSPAConfig, SSPAForImageClassification, make_image_processor
from sspa_hf.data import BatchAugment, FERTorchDataset, build_joint, collate_fer, load_source
from sspa_hf.training.arguments import SSPATrainingArguments
from sspa_hf.training.trainer import SSPATrainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_data import OldTrainAugment  # the old input path, for comparison only

FERPLUS = Path("benchmarks/out/ferplus")
PAPER_RUN_IMAGES = 80 * (12271 + round(0.10 * 283721))  # 80 epochs of RAF-DB train + 10 % of AffectNet (7 classes)


class Speed(NamedTuple):
    """Images per second of wall time and per second of this process's CPU time."""

    wall: float
    cpu: float


class StepTimer(TrainerCallback):
    """Images per second over the optimiser steps after the first `warmup` ones: of wall time, and of this
    process's CPU time (the cost on one core, whatever else runs on the machine; meaningful with 0 workers on CPU)."""

    def __init__(self, warmup: int, batch_size: int) -> None:
        self.warmup, self.batch_size, self.stamps = warmup, batch_size, []

    def on_step_end(self, args, state, control, **kwargs):
        self.stamps.append((time.perf_counter(), time.process_time()))

    def images_per_second(self) -> Speed:
        (wall_0, cpu_0), (wall_1, cpu_1) = self.stamps[self.warmup], self.stamps[-1]
        images = (len(self.stamps) - self.warmup - 1) * self.batch_size
        return Speed(images / (wall_1 - wall_0), images / (cpu_1 - cpu_0))


class ChannelsLastAugment(BatchAugment):
    """BatchAugment whose views come out channels_last (the GPU preset): the layout is set after augmentation."""

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        return super().normalise(images).contiguous(memory_format=torch.channels_last)


def augment_for(args: argparse.Namespace, processor, views=None) -> BatchAugment:
    """The training augmentation SSPATrainer builds from its arguments (seed 0, default padding)."""
    kind = ChannelsLastAugment if args.channels_last else BatchAugment
    return kind(args.image_size, processor.image_mean, processor.image_std, seed=0, views=views)


class PlainTrainer(Trainer):
    """A plain Trainer given SSPATrainer's loader: uint8 faces and parameters, augmented on the device here."""

    def __init__(self, *args, augment: BatchAugment, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.augment = augment

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        batch = self.augment.apply(inputs)
        batch = {"pixel_values": batch["pixel_values"], "labels": batch["labels"]}
        return super().compute_loss(model, batch, return_outputs, num_items_in_batch)


class OldCollate:
    """The old path's collator: collate_fer of float faces, optionally channels_last, without the SSPA columns."""

    def __init__(self, channels_last: bool) -> None:
        self.channels_last = channels_last

    def __call__(self, batch: list[dict]) -> dict[str, torch.Tensor]:
        out = collate_fer(batch)
        if self.channels_last:
            out["pixel_values"] = out["pixel_values"].contiguous(memory_format=torch.channels_last)
        del out["sample_index"], out["is_target"]
        return out


def joint_data(image_size: int):
    if image_size == 48 and (FERPLUS / "target").is_dir():
        target, aux = load_source(str(FERPLUS / "target")), load_source(str(FERPLUS / "aux"))
        return build_joint(target["train"], aux["train"], seed=0), "FERPlus benchmark (4,000 + 8,000 faces, 48 px)"
    target = load_source(f"synthetic:?role=target&n=2000&n_test=1&image_size={image_size}")
    aux = load_source(f"synthetic:?role=auxiliary&n=2000&image_size={image_size}")
    return build_joint(target["train"], aux["train"], seed=0), f"generated faces (2,000 + 2,000, {image_size} px)"


def model_for(args: argparse.Namespace, seed: int = 0, transition: bool = False) -> SSPAForImageClassification:
    torch.manual_seed(seed)
    backbone = {
        "layer_type": "basic",
        "depths": args.depths,
        "hidden_sizes": args.hidden_sizes,
        "embedding_size": args.hidden_sizes[0],
    }
    model = SSPAForImageClassification(
        SSPAConfig(
            backbone=args.backbone,
            backbone_config=backbone,
            image_size=args.image_size,
            standard_transition=transition,
        )
    )
    return model.to(memory_format=torch.channels_last) if args.channels_last else model


def training_args(
    args: argparse.Namespace, out: Path, selection_epochs: int, selection_mode: str = "paper"
) -> SSPATrainingArguments:
    return SSPATrainingArguments(
        selection_mode=selection_mode,
        output_dir=str(out),
        per_device_train_batch_size=args.batch_size,
        max_steps=args.steps,
        selection_epochs=selection_epochs,
        learning_rate=0.01,
        optim="sgd",
        optim_args="momentum=0.9",
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
        dataloader_num_workers=args.workers,
        bf16=args.bf16,
        seed=0,
    )


def time_arm(arm: str, args: argparse.Namespace, data, processor) -> Speed:
    """Images per second of one arm (a fresh trainer, or the model or the data pipeline alone)."""
    if arm == "model_alone":
        return model_only(args)
    if arm.startswith("data_pipeline_"):
        return data_only(args, data, processor, old=arm.endswith("old_path"))
    timer = StepTimer(args.warmup, args.batch_size)
    out = Path("/tmp/sspa_bench_trainer") / arm
    if arm == "plain":
        augment = augment_for(args, processor)
        trainer = PlainTrainer(
            model=model_for(args),
            args=training_args(args, out, 40),
            train_dataset=FERTorchDataset(data, augment),
            data_collator=collate_fer,
            callbacks=[timer],
            augment=augment,
        )
    elif arm == "plain_old_path":
        trainer = Trainer(
            model=model_for(args),
            args=training_args(args, out, 40),
            train_dataset=FERTorchDataset(
                data, OldTrainAugment(args.image_size, processor.image_mean, processor.image_std)
            ),
            data_collator=OldCollate(args.channels_last),
            callbacks=[timer],
        )
    else:
        modes = {"sspa_transition": "transition", "sspa_transition_pam": "transition_pam"}
        mode = {**modes, "sspa_consistency": "consistency"}.get(arm, "paper")
        trainer = SSPATrainer(
            model=model_for(args, transition=mode != "paper"),
            args=training_args(args, out, 40 if arm in ("sspa_selection", "sspa_transition_pam") else 0, mode),
            train_dataset=data,
            processing_class=processor,
            callbacks=[timer],
        )
        if args.channels_last:
            trainer.train_augment = augment_for(args, processor, trainer.mode.views)
        if arm in ("sspa_pairing", "sspa_transition_pam"):  # a realistic partition: 30 % of the auxiliary noisy
            aux = torch.nonzero(~trainer.selector.is_target).flatten()
            noisy = aux[torch.randperm(len(aux), generator=torch.Generator().manual_seed(0))[: int(0.3 * len(aux))]]
            trainer.selector.clean[noisy] = False
            if arm == "sspa_transition_pam":
                trainer.mode.verdict_epoch = 0  # past T_S: its PA stage, without the verdict pass
    trainer.train()
    return timer.images_per_second()


def data_only(args: argparse.Namespace, data, processor, old: bool) -> Speed:
    """Everything before the forward, `args.steps` batches: the old path's float faces, or the new path's uint8
    faces and `BatchAugment.apply` on the training device."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if old:
        transform, apply = OldTrainAugment(args.image_size, processor.image_mean, processor.image_std), None
    else:
        transform = augment_for(args, processor)
        apply = transform.apply
    loader = torch.utils.data.DataLoader(
        FERTorchDataset(data, transform),
        batch_size=args.batch_size,
        shuffle=True,
        collate_fn=collate_fer,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
    )
    start, cpu_start, images = time.perf_counter(), time.process_time(), 0
    for i, batch in enumerate(loader):
        batch["pixel_values"] = batch["pixel_values"].to(device, non_blocking=True)
        if apply is not None:
            batch = apply(batch)
        elif args.channels_last:
            batch["pixel_values"] = batch["pixel_values"].contiguous(memory_format=torch.channels_last)
        images += len(batch["labels"])
        if i + 1 == args.steps:
            break
    if device.type == "cuda":
        torch.cuda.synchronize()
    return Speed(images / (time.perf_counter() - start), images / (time.process_time() - cpu_start))


def model_only(args: argparse.Namespace) -> Speed:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = model_for(args).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 7, (args.batch_size,), device=device)
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start, cpu_start = time.perf_counter(), time.process_time()
        optimizer.zero_grad()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            loss = model(pixel_values=x, labels=y).loss
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    images = args.steps * args.batch_size
    return Speed(images / (time.perf_counter() - start), images / (time.process_time() - cpu_start))


ARMS = (
    "plain",
    "sspa_selection",
    "sspa_pairing",
    "sspa_transition",
    "sspa_transition_pam",
    "sspa_consistency",
    "plain_old_path",
    "model_alone",
    "data_pipeline_new_path",
    "data_pipeline_old_path",
)


def run(args: argparse.Namespace) -> dict:
    """Alternating rounds of every arm for one model; medians and ratios (of wall time, and on CPU with 0 workers
    also of this process's CPU time)."""
    data, description = joint_data(args.image_size)
    processor = make_image_processor(args.image_size, [0.5] * 3, [0.5] * 3)
    speeds: dict[str, list[Speed]] = {arm: [] for arm in args.arms}
    for round_index in range(args.rounds):
        for arm in args.arms:
            speeds[arm].append(time_arm(arm, args, data, processor))
            wall, cpu = speeds[arm][-1]
            print(f"round {round_index + 1} {arm:22s} {wall:8.1f} img/s {cpu:8.1f} per CPU-s", flush=True)
    results = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, "
        + ("CUDA " + torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"),
        "data": description,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    clocks = ["wall"] + (["cpu"] if args.workers == 0 and not torch.cuda.is_available() else [])
    for clock in clocks:
        median = {arm: statistics.median(getattr(s, clock) for s in values) for arm, values in speeds.items()}
        key = "" if clock == "wall" else "_per_cpu_second"
        results["images_per_second" if clock == "wall" else "images_per_cpu_second"] = {
            arm: round(v, 1) for arm, v in median.items()
        }
        results[f"all_rounds{key}"] = {
            arm: [round(getattr(s, clock), 1) for s in values] for arm, values in speeds.items()
        }
        ratios = {
            "selection_stage": ("sspa_selection", "plain"),
            "pairing_stage": ("sspa_pairing", "plain"),
            "transition_mode": ("sspa_transition", "plain"),
            "transition_pam_after_t_s": ("sspa_transition_pam", "plain"),
            "consistency_to_transition": ("sspa_consistency", "sspa_transition"),
            "selection_stage_to_model_alone": ("sspa_selection", "model_alone"),
            "plain_to_model_alone": ("plain", "model_alone"),
            "plain_old_path_to_model_alone": ("plain_old_path", "model_alone"),
            "plain_new_to_old_path": ("plain", "plain_old_path"),
            "data_pipeline_new_to_old_path": ("data_pipeline_new_path", "data_pipeline_old_path"),
        }
        results[f"ratios{key}"] = {
            name: round(median[a] / median[b], 3) for name, (a, b) in ratios.items() if a in median and b in median
        }
        if clock == "wall" and {"sspa_selection", "sspa_pairing"} <= median.keys():
            sspa_speed = (median["sspa_selection"] + median["sspa_pairing"]) / 2
            results["projected_hours_rafdb_affectnet10_80_epochs"] = round(PAPER_RUN_IMAGES / sspa_speed / 3600, 2)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=["gpu"], help="gpu: ResNet-18 and ARM, 224 px, batch 128, bf16")
    parser.add_argument("--steps", type=int, default=60, help="optimiser steps per timed run")
    parser.add_argument("--warmup", type=int, default=5, help="steps left out of the timing")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median is reported")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--image_size", type=int, default=48)
    parser.add_argument("--backbone", default="resnet", choices=["resnet", "arm"])
    parser.add_argument("--depths", type=int, nargs=4, default=[1, 1, 1, 1])
    parser.add_argument("--hidden-sizes", type=int, nargs=4, default=[32, 64, 128, 256])
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--output", type=Path, help="also write the results as JSON here (after each model)")
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS), help="the arms to time (default all)")
    args = parser.parse_args()
    if args.preset == "gpu":
        args.image_size, args.batch_size, args.bf16, args.channels_last = 224, 128, True, True
        args.depths, args.hidden_sizes, args.workers = [2, 2, 2, 2], [64, 128, 256, 512], 8
        results = {}
        for backbone in ("resnet", "arm"):
            args.backbone = backbone
            results["resnet18" if backbone == "resnet" else "arm"] = run(args)
            if args.output:  # ResNet-18's figures survive a time limit hit during ARM's
                args.output.write_text(json.dumps(results, indent=2))
    else:
        results = run(args)
    print(json.dumps(results, indent=2))
    if args.output:
        args.output.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
