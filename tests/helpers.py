"""What several test files share: the tiny sspa-train flags, a tiny trainer and its batches, fixture data trees.

Test files import from here, never from each other (conftest.py puts this folder on sys.path). Sections: sspa-train
runs (RECIPES, QUICKSTART, TINY_FLAGS, TINY_BACKBONE, one_line_error), SSPATrainer (TINY, joint_data, make_trainer,
training_batch, run_two_processes on two processes or two machines, label_table), and tiny fixture trees in each real
dataset layout (real file names, CSV headers and label codes, generated pixels).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datasets import ClassLabel, Dataset, Features, Value
from datasets import Image as DsImage
from PIL import Image

from sspa_hf.labels import EXPRESSIONS

if TYPE_CHECKING:
    import torch

    from sspa_hf.training.trainer import SSPATrainer

# ---- sspa-train runs -------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "recipes"
QUICKSTART = str(RECIPES / "quickstart.yaml")
TINY_FLAGS = [
    "--target_dataset",
    "synthetic:?role=target&n=70",
    "--auxiliary_dataset",
    "synthetic:?role=auxiliary&n=70",
    "--backbone_depths",
    "1",
    "1",
    "1",
    "1",
    "--backbone_hidden_sizes",
    "8",
    "16",
    "32",
    "64",
    "--backbone_embedding_size",
    "8",
    "--num_train_epochs",
    "2",
    "--selection_epochs",
    "1",
    "--per_device_train_batch_size",
    "35",
    "--save_strategy",
    "no",
    "--disable_tqdm",
    "true",
]

# A 40 + 40-face run at 32 px, batches of 20, a checkpoint every step: the kill-and-resume tests.
CHECKPOINT_EVERY_STEP = [
    QUICKSTART,
    *TINY_FLAGS,
    "--target_dataset",
    "synthetic:?role=target&n=40",
    "--auxiliary_dataset",
    "synthetic:?role=auxiliary&n=40",
    "--per_device_train_batch_size",
    "20",
    "--image_size",
    "32",
    "--save_strategy",
    "steps",
    "--save_steps",
    "1",
]

# The backbone TINY_FLAGS builds, for tiny models saved and loaded without training (TINY below is twice as wide).
TINY_BACKBONE = {"layer_type": "basic", "depths": [1, 1, 1, 1], "hidden_sizes": [8, 16, 32, 64], "embedding_size": 8}


def one_line_error(capsys) -> str:
    """sspa-train's stderr, checked to be one `sspa-train: error: ` line without a traceback or usage; that line."""
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and "usage:" not in err, err[:2000]
    lines = err.splitlines()
    assert len(lines) == 1, err[:2000]
    assert lines[0].startswith("sspa-train: error: ")
    return lines[0]


# ---- SSPATrainer -----------------------------------------------------------------------------------------------

TINY = {"layer_type": "basic", "depths": [1, 1, 1, 1], "hidden_sizes": [16, 32, 64, 128], "embedding_size": 16}


@functools.lru_cache(maxsize=4)
def joint_data(n_target: int, n_aux: int) -> tuple:
    """The joint train set of n_target generated target and n_aux auxiliary faces, and the target test split."""
    from sspa_hf.data import build_joint, load_source

    target = load_source(f"synthetic:?role=target&n={n_target}")
    auxiliary = load_source(f"synthetic:?role=auxiliary&n={n_aux}")
    return build_joint(target["train"], auxiliary["train"], seed=0), target["test"]


def make_trainer(
    tmp_path: Path, train_set, eval_set=None, k: int = 3, crop_padding: float = 0.0, arguments=None, **overrides
) -> SSPATrainer:
    """A CPU SSPATrainer on a TINY backbone with k experts at 48 px; `overrides` replace its training arguments
    (`arguments`: a subclass of SSPATrainingArguments to build them with)."""
    import torch

    from sspa_hf import SSPAConfig, SSPAForImageClassification, make_image_processor
    from sspa_hf.modes import get_mode
    from sspa_hf.training.arguments import SSPATrainingArguments
    from sspa_hf.training.trainer import SSPATrainer

    torch.manual_seed(0)
    needs = get_mode(overrides.get("selection_mode", "paper")).model_options  # what build_model would add
    config = SSPAConfig(backbone_config=TINY, num_experts=k, image_size=48, **needs)
    model = SSPAForImageClassification(config)
    settings = {
        "output_dir": str(tmp_path / "run"),
        "per_device_train_batch_size": 32,
        "per_device_eval_batch_size": 64,
        "num_train_epochs": 4,
        "selection_epochs": 2,
        "learning_rate": 0.05,
        "optim": "sgd",
        "optim_args": "momentum=0.9",
        "weight_decay": 5e-4,
        "lr_scheduler_type": "cosine",
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "disable_tqdm": True,
        "logging_steps": 1000,
        "seed": 3,
        "crop_padding": crop_padding,
        **overrides,
    }
    return SSPATrainer(
        model=model,
        args=(arguments or SSPATrainingArguments)(**settings),
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=make_image_processor(48, [0.5] * 3, [0.5] * 3),
    )


def training_batch(trainer: SSPATrainer, indices: list[int]) -> dict[str, torch.Tensor]:
    """The collated training batch of these rows of the trainer's train set, as the loader gives it (uint8 faces
    and their random parameters, augmented by `trainer.train_augment.apply`)."""
    from sspa_hf.data.transforms import FERTorchDataset, collate_fer

    dataset = FERTorchDataset(trainer.train_dataset, trainer.train_augment)
    return collate_fer([dataset[i] for i in indices])


def augmented(trainer: SSPATrainer, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A loader's training batch as the mode sees it: float pixels of each view (`BatchAugment.apply`)."""
    return trainer.train_augment.apply(batch)


def launch_two_processes(*arguments: str, port_offset: int = 0) -> subprocess.CompletedProcess:
    """`accelerate launch` with two CPU (gloo) processes and one thread each; ARGUMENTS: a script or `-m module`,
    then its own arguments. Asserts exit status 0 (stderr's tail as the message)."""
    import os
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(RECIPES / "accelerate_configs" / "cpu_2proc.yaml"),
        "--main_process_port",
        str(29500 + (os.getpid() + port_offset) % 1000),
        *arguments,
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def launch_two_machines(*arguments: str) -> list[subprocess.CompletedProcess]:
    """recipes/accelerate_configs/multi_node.yaml launched as two machines on this host: `--machine_rank` 0 and 1,
    one CPU (gloo) process each, node 0 at 127.0.0.1 on a free port, float32 (the flags override the file's address,
    port, process count and bf16). ARGUMENTS as launch_two_processes. Asserts exit status 0 on both; each machine's
    result. A machine that fails ends the other (it would wait for its peer until the rendezvous times out)."""
    import contextlib
    import os
    import socket
    import sys
    import tempfile
    import time

    with socket.socket() as probe:  # the OS's free port; the launchers bind it a moment later
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file"]
    launch += [str(RECIPES / "accelerate_configs" / "multi_node.yaml"), "--num_machines", "2", "--num_processes", "2"]
    launch += ["--main_process_ip", "127.0.0.1", "--main_process_port", str(port), "--mixed_precision", "no"]
    commands = [[*launch, "--machine_rank", str(rank), *arguments] for rank in (0, 1)]
    with contextlib.ExitStack() as files:
        logs = [[files.enter_context(tempfile.TemporaryFile("w+")) for _ in ("stdout", "stderr")] for _ in commands]
        machines = [
            subprocess.Popen(command, stdout=out, stderr=err, env=env)
            for command, (out, err) in zip(commands, logs, strict=True)
        ]
        deadline = time.monotonic() + 600
        try:
            while any(m.poll() is None for m in machines) and not any(m.poll() for m in machines):
                assert time.monotonic() < deadline, "two-machine launch still running after 600 s"
                time.sleep(0.2)
        finally:
            for machine in machines:  # SIGTERM: the launcher ends its training process, then itself
                if machine.poll() is None:
                    machine.terminate()
            for machine in machines:
                try:
                    machine.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    machine.kill()
                    machine.wait()
        for log in logs:
            for file in log:
                file.seek(0)
        results = [
            subprocess.CompletedProcess(command, machine.returncode, out.read(), err.read())
            for command, machine, (out, err) in zip(commands, machines, logs, strict=True)
        ]
    failed = [f"machine {rank}: {r.stderr[-2000:]}" for rank, r in enumerate(results) if r.returncode != 0]
    assert not failed, "\n".join(failed)
    return results


def run_two_processes(tmp_path: Path, *flags: str, machines: bool = False) -> list[dict[str, torch.Tensor]]:
    """tests/distributed_run.py under `accelerate launch` with two CPU (gloo) processes on one machine, or with
    `machines`, one process on each of two machines (launch_two_machines); each rank's final state."""
    import torch

    script = Path(__file__).resolve().parent / "distributed_run.py"
    if machines:
        results = launch_two_machines(str(script), str(tmp_path), *flags)
    else:
        results = [launch_two_processes(str(script), str(tmp_path), *flags, port_offset=len(flags))]
    for result in results:  # DDP's per-rank warning: the flag is set correctly
        assert "find_unused_parameters" not in result.stderr
    return [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in (0, 1)]


def label_table(n: int) -> Dataset:
    """n rows with an id, a label cycling through the 7 classes and sample_index 0..n-1 (no images)."""
    features = Features(
        {"id": Value("string"), "label": ClassLabel(names=list(EXPRESSIONS)), "sample_index": Value("int64")}
    )
    rows = {"id": [f"row{i}" for i in range(n)], "label": [i % 7 for i in range(n)], "sample_index": list(range(n))}
    return Dataset.from_dict(rows, features=features)


# ---- fixture trees in each real dataset layout -----------------------------------------------------------------

# Native codes of each dataset, written out here independently of the package's tables, so the tests check them.
RAFDB_CODE = {1: "surprise", 2: "fear", 3: "disgust", 4: "happiness", 5: "sadness", 6: "anger", 7: "neutral"}
AFFECTNET_CODE = {0: "neutral", 1: "happiness", 2: "sadness", 3: "surprise", 4: "fear", 5: "disgust", 6: "anger"}
FER2013_CODE = {0: "anger", 1: "disgust", 2: "fear", 3: "happiness", 4: "sadness", 5: "surprise", 6: "neutral"}
FER2013_FOLDER = {0: "angry", 1: "disgust", 2: "fear", 3: "happy", 4: "sad", 5: "surprise", 6: "neutral"}
CAER_S_FOLDER = {
    "Anger": "anger",
    "Disgust": "disgust",
    "Fear": "fear",
    "Happy": "happiness",
    "Neutral": "neutral",
    "Sad": "sadness",
    "Surprise": "surprise",
}
FERPLUS_HEADER = [
    "Usage",
    "Image name",
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
    "unknown",
    "NF",
]
AFFECTNET_HEADER = [
    "subDirectory_filePath",
    "face_x",
    "face_y",
    "face_width",
    "face_height",
    "facial_landmarks",
    "expression",
    "valence",
    "arousal",
]
BOX_COLOUR = (220, 30, 30)  # inside an AffectNet face box
BACKGROUND = (20, 40, 230)  # outside it


def pixels(height: int, width: int, seed: int, channels: int = 3) -> np.ndarray:
    """Smooth random pixels (so JPEG keeps them close), different for each seed."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(max(2, height // 8), max(2, width // 8), channels), dtype=np.uint8)
    image = Image.fromarray(small.squeeze(-1) if channels == 1 else small)
    return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR))


def save_image(path: Path, width: int, height: int, seed: int, grey: bool = False) -> Path:
    """Write a generated image at `path` (format from the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels(height, width, seed, 1 if grey else 3)).save(path)
    return path


def build_rafdb(root: Path, per_class: int = 1) -> list[tuple[str, str, str]]:
    """RAF-DB basic: EmoLabel/list_patition_label.txt + Image/aligned/*_aligned.jpg. Returns (name, split, label)."""
    rows, lines = [], []
    for split in ("train", "test"):
        number = 0
        for code, label in RAFDB_CODE.items():
            for _ in range(per_class):
                number += 1
                name = f"{split}_{number:05d}.jpg"
                save_image(root / "Image" / "aligned" / f"{split}_{number:05d}_aligned.jpg", 100, 100, len(rows))
                rows.append((name, split, label))
                lines.append(f"{name} {code}")
    (root / "EmoLabel").mkdir(parents=True, exist_ok=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    return rows


def landmarks_68(left_eye: tuple[float, float], right_eye: tuple[float, float]) -> list[float]:
    """68 points (x, y flattened) whose eye points 36-41 / 42-47 surround the given centres."""
    points = np.zeros((68, 2))
    points[:, 0], points[:, 1] = np.linspace(10, 60, 68), 80.0
    ring = np.array([[-4, 0], [-2, -2], [2, -2], [4, 0], [2, 2], [-2, 2]], dtype=float)
    points[36:42] = ring + left_eye
    points[42:48] = ring + right_eye
    return points.ravel().tolist()


def affectnet_image(path: Path, box: tuple[int, int, int, int], size: tuple[int, int] = (160, 120)) -> None:
    """A BACKGROUND image with its face box filled with BOX_COLOUR."""
    image = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    image[:] = BACKGROUND
    x, y, w, h = box
    image[y : y + h, x : x + w] = BOX_COLOUR
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, quality=95)


def build_affectnet_csv(root: Path) -> dict[str, list[tuple[str, int]]]:
    """Original AffectNet: training.csv (with header) and validation.csv (without), images under
    Manually_Annotated_Images/<dir>/<hash>.jpg. Returns {csv name: [(subDirectory_filePath, code)]}."""
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True)
    box = (40, 20, 64, 64)
    marks = ";".join(f"{v:.2f}" for v in landmarks_68((60.0, 45.0), (84.0, 45.0)))
    written = {}
    for file_name, codes, header in (("training.csv", [*range(7), 7, 10], True), ("validation.csv", range(7), False)):
        rows = []
        with (lists / file_name).open("w", newline="") as handle:
            writer = csv.writer(handle)
            if header:
                writer.writerow(AFFECTNET_HEADER)
            for i, code in enumerate(codes):
                digest = hashlib.sha1(f"{file_name}{i}".encode()).hexdigest()
                rel = f"{100 + i}/{digest}.jpg"
                affectnet_image(root / "Manually_Annotated_Images" / rel, box)
                valence, arousal = (-2, -2) if code >= 7 else (round(0.1 * code - 0.3, 3), round(0.05 * code, 3))
                writer.writerow([rel, *box, marks, code, valence, arousal])
                rows.append((rel, code))
        written[file_name] = rows
    return written


def build_affectnet_npy(root: Path) -> dict[str, list[tuple[str, int]]]:
    """Newer AffectNet: {train_set,val_set}/images/<id>.jpg + annotations/<id>_{exp,val,aro,lnd}.npy."""
    written = {}
    image_id = 0
    for folder, codes in (("train_set", [*range(7), 7]), ("val_set", range(7))):
        rows = []
        for code in codes:
            save_image(root / folder / "images" / f"{image_id}.jpg", 224, 224, image_id)
            ann = root / folder / "annotations"
            ann.mkdir(parents=True, exist_ok=True)
            np.save(ann / f"{image_id}_exp.npy", np.array(str(code)))
            np.save(ann / f"{image_id}_val.npy", np.array(str(0.1 * code)))
            np.save(ann / f"{image_id}_aro.npy", np.array(str(-0.1 * code)))
            np.save(ann / f"{image_id}_lnd.npy", np.array(landmarks_68((80.0, 90.0), (144.0, 90.0)), dtype=np.float32))
            rows.append((f"{image_id}.jpg", code))
            image_id += 1
        written[folder] = rows
    return written


def build_caer_s(root: Path, per_class: int = 1, size: tuple[int, int] = (64, 36)) -> list[tuple[str, str]]:
    """CAER-S: {train,test}/<Class>/<nnnn>.png frames. Returns (relative path, label)."""
    rows = []
    for split in ("train", "test"):
        for folder, label in CAER_S_FOLDER.items():
            for i in range(per_class):
                rel = f"{split}/{folder}/{i + 1:04d}.png"
                save_image(root / rel, size[0], size[1], len(rows))
                rows.append((rel, label))
    return rows


def fer_pixels(seed: int) -> np.ndarray:
    """48x48 grey pixels."""
    return pixels(48, 48, seed, channels=1)


def pixel_string(array: np.ndarray) -> str:
    return " ".join(str(int(v)) for v in array.ravel())


def build_fer2013_csv(path: Path, per_class: dict[str, int] | None = None, duplicate: bool = False) -> list[dict]:
    """fer2013.csv (emotion,pixels,Usage). Returns one dict per data row (code, usage, pixels).

    With `duplicate`, the last Training row repeats the first PublicTest row's pixels (as FER2013 itself does)."""
    per_class = per_class or {"Training": 2, "PublicTest": 1, "PrivateTest": 1}
    rows = []
    for usage, n in per_class.items():
        for code in range(7):
            for _ in range(n):
                rows.append({"code": code, "usage": usage, "pixels": fer_pixels(len(rows))})
    if duplicate:
        first_public = next(r for r in rows if r["usage"] == "PublicTest")
        last_train = max(i for i, r in enumerate(rows) if r["usage"] == "Training")
        rows[last_train]["pixels"] = first_public["pixels"].copy()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["emotion", "pixels", "Usage"])
        for row in rows:
            writer.writerow([row["code"], pixel_string(row["pixels"]), row["usage"]])
    return rows


def build_fer2013_export(root: Path) -> list[tuple[str, str, str]]:
    """The image-folder export: {train,test}/<emotion>/<Usage>_<n>.jpg. Returns (relative path, split, label)."""
    rows = []
    for usage, folder, split in (
        ("Training", "train", "train"),
        ("PublicTest", "test", "validation"),
        ("PrivateTest", "test", "test"),
    ):
        for code, name in FER2013_FOLDER.items():
            rel = f"{folder}/{name}/{usage}_{1000 + len(rows) * 37}.jpg"
            save_image(root / rel, 48, 48, len(rows), grey=True)
            rows.append((rel, split, FER2013_CODE[code]))
    return rows


# FERPlus votes in file order (neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF),
# with the label the official majority rule gives (None: left out).
FERPLUS_CASES: list[tuple[list[int], str | None]] = [
    ([10, 0, 0, 0, 0, 0, 0, 0, 0, 0], "neutral"),
    ([0, 6, 1, 0, 0, 0, 0, 0, 3, 0], "happiness"),
    ([1, 0, 5, 1, 0, 0, 3, 0, 0, 0], "surprise"),  # single votes dropped: 5 of 8 > half
    ([0, 0, 0, 7, 0, 0, 0, 0, 3, 0], "sadness"),
    ([0, 0, 0, 0, 8, 2, 0, 0, 0, 0], "anger"),
    ([0, 0, 0, 0, 3, 6, 0, 0, 1, 0], "disgust"),
    ([0, 0, 4, 0, 0, 0, 6, 0, 0, 0], "fear"),
    ([4, 0, 0, 0, 0, 0, 0, 4, 2, 0], None),  # no majority (4 of 10)
    ([2, 0, 0, 0, 0, 0, 0, 8, 0, 0], None),  # contempt
    ([0, 0, 0, 0, 0, 0, 0, 0, 0, 10], None),  # not a face
]


def build_ferplus(root: Path) -> list[dict]:
    """fer2013.csv + fer2013new.csv, one FERPLUS_CASES row per FER2013 row; Training gets the cases, PublicTest
    and PrivateTest one clear face per class. Returns per-row dicts (code, usage, votes, expected)."""
    rows = []
    for i, (votes, expected) in enumerate(FERPLUS_CASES):
        rows.append({"code": i % 7, "usage": "Training", "votes": votes, "expected": expected})
    clear = [case for case in FERPLUS_CASES if case[1] is not None]
    for usage in ("PublicTest", "PrivateTest"):
        for code, (votes, expected) in enumerate(clear):
            rows.append({"code": code, "usage": usage, "votes": votes, "expected": expected})
    root.mkdir(parents=True, exist_ok=True)
    with (root / "fer2013.csv").open("w", newline="") as old, (root / "fer2013new.csv").open("w", newline="") as new:
        old_writer, new_writer = csv.writer(old), csv.writer(new)
        old_writer.writerow(["emotion", "pixels", "Usage"])
        new_writer.writerow(FERPLUS_HEADER)
        for i, row in enumerate(rows):
            old_writer.writerow([row["code"], pixel_string(fer_pixels(100 + i)), row["usage"]])
            new_writer.writerow([row["usage"], f"fer{i:07d}.png", *row["votes"]])
    return rows


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def build_fer2013_ferplus_parquet(root: Path) -> dict[str, list[dict]]:
    """The shared parquet schema: {train,validation}.parquet with FER2013 labels and FERPlus votes/labels in FER2013
    code order (-1 = none). Train holds one contempt-majority face, one face without votes and one duplicate of a
    validation face."""
    fer_of = {v: k for k, v in FER2013_CODE.items()}
    fp_order = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear"]
    root.mkdir(parents=True, exist_ok=True)
    written = {}
    seed = 500
    for split in ("train", "validation"):
        rows = []
        for fp_index, name in enumerate(fp_order):
            # FER2013 says the next class along: the standards disagree on every face.
            fer_code = (fer_of[name] + 1) % 7
            votes = [0] * 10
            votes[fp_index] = 8
            votes[8] = 2
            rows.append(dict(fer=fer_code, votes=votes, plus=fer_of[name], fp=fp_index, plur=fer_of[name]))
        if split == "train":
            rows.append(dict(fer=0, votes=[2, 0, 0, 0, 0, 0, 0, 8, 0, 0], plus=-1, fp=7, plur=-1))  # contempt
            rows.append(dict(fer=3, votes=None, plus=-1, fp=-1, plur=-1))  # no FERPlus votes
        for row in rows:
            row["pixels"] = fer_pixels(seed)
            seed += 1
        if split == "train":
            rows.append(dict(fer=4, votes=[0, 0, 0, 9, 0, 0, 0, 0, 1, 0], plus=4, fp=3, plur=4, pixels=None))
        written[split] = rows
    # the duplicate: the last train row repeats the first validation face
    written["train"][-1]["pixels"] = written["validation"][0]["pixels"].copy()
    offset = 0
    for split, rows in written.items():
        table = pa.table(
            {
                "id": [f"fer2013_{offset + i:05d}" for i in range(len(rows))],
                "fer2013_row": pa.array([offset + i for i in range(len(rows))], pa.int32()),
                "usage": ["Training" if split == "train" else "PublicTest"] * len(rows),
                "image": [
                    {"bytes": png_bytes(r["pixels"]), "path": f"fer2013_{offset + i:05d}.png"}
                    for i, r in enumerate(rows)
                ],
                "pixel_sha1": [hashlib.sha1(r["pixels"].tobytes()).hexdigest() for r in rows],
                "fer2013_label": pa.array([r["fer"] for r in rows], pa.int8()),
                "fer2013_label_ambiguous": [False] * len(rows),
                "ferplus_votes": pa.array([r["votes"] for r in rows], pa.list_(pa.int8())),
                "ferplus_label": pa.array([r["plus"] for r in rows], pa.int8()),
                "ferplus_label_fp": pa.array([r["fp"] for r in rows], pa.int8()),
                "ferplus_plurality": pa.array([r["plur"] for r in rows], pa.int8()),
            }
        )
        pq.write_table(table, root / f"{split}.parquet")
        offset += len(rows)
    return written


def tiny_split(labels: list[int], source: str, side: int = 8, first_seed: int = 0) -> Dataset:
    """An in-memory split on the shared columns: one small PNG per label, ids `<source>_<n>`."""
    n = len(labels)
    columns = {
        "image": [{"bytes": png_bytes(pixels(side, side, first_seed + i)), "path": None} for i in range(n)],
        "label": list(labels),
        "source": [source] * n,
        "id": [f"{source}_{i}" for i in range(n)],
        "reference_label": [-1] * n,
    }
    features = Features(
        {
            "image": DsImage(),
            "label": ClassLabel(names=list(EXPRESSIONS)),
            "source": Value("string"),
            "id": Value("string"),
            "reference_label": Value("int64"),
        }
    )
    return Dataset.from_dict(columns, features=features)
