"""Bad inputs as a user would make them, across the six commands: how many are one clear line, how many are not.

Builds its own fixtures in a temporary folder (a tiny trained run with a checkpoint, generated images, image-folder
trees, broken model folders, recipes), runs every case as a subprocess (`python -m sspa_hf.commands.NAME`, so
PYTHONPATH picks the tree under test) with a timeout, and sorts each outcome into:

- refusal: exit != 0, stderr one line `<command>: error: ...`, no traceback (what every mistake should get);
- traceback: a Python traceback was printed;
- silent: exit 0 and nothing said about the problem;
- other: anything else (several lines, a warning and it went on, a hang), with what it was;
- ok: the few controls where the input is fine and the user expects it to work (a CMYK image, a checkpoint folder,
  class-name synonyms next to a label_map) and it did.

It writes only to its temporary folder and to --json. Usage (issue 33):

    PYTHONPATH=/path/to/tree python benchmarks/bad_inputs.py [--json results.json] [--jobs 2] [-k PATTERN]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

COMMANDS = {
    "sspa-train": "train",
    "sspa-eval": "evaluate",
    "sspa-predict": "predict",
    "sspa-prepare": "prepare",
    "sspa-export-selection": "export_selection",
    "sspa-export-onnx": "export_onnx",
}
CATEGORIES = ("refusal", "traceback", "silent", "other", "ok")
PROGRESS_BAR = re.compile(r"\d+%\||it/s\]|s/it\]")
TINY_MODEL = [
    "--backbone_depths", "1", "1", "1", "1",
    "--backbone_hidden_sizes", "8", "16", "32", "64",
    "--backbone_embedding_size", "8",
    "--image_size", "32",
]  # fmt: skip
TINY_DATA = ["--target_dataset", "synthetic:?role=target&n=70", "--auxiliary_dataset", "synthetic:?role=auxiliary&n=70"]
TINY_RUN = [
    "--num_train_epochs", "2", "--selection_epochs", "1", "--per_device_train_batch_size", "35",
    "--disable_tqdm", "true", "--use_cpu", "true", "--report_to", "none", "--seed", "0",
]  # fmt: skip
# The same settings as a recipe (its keys are the flags).
TINY_RECIPE = {
    "target_dataset": "synthetic:?role=target&n=70",
    "auxiliary_dataset": "synthetic:?role=auxiliary&n=70",
    "backbone_depths": [1, 1, 1, 1],
    "backbone_hidden_sizes": [8, 16, 32, 64],
    "backbone_embedding_size": 8,
    "image_size": 32,
    "num_train_epochs": 2,
    "selection_epochs": 1,
    "per_device_train_batch_size": 35,
    "save_strategy": "no",
    "disable_tqdm": True,
    "use_cpu": True,
    "report_to": "none",
}


@dataclass
class Case:
    """One bad input: `argv` after the command; `expects` is what a user expects, in words."""

    id: str
    command: str
    argv: list[str]
    expects: str
    works: bool = False  # a control: the input is fine, exit 0 is the right answer
    about: str = r"(?i)warn|notice"  # what, on an exit 0, counts as saying something about the problem
    timeout: float = 300.0


@dataclass
class Outcome:
    id: str
    command: str
    expects: str
    category: str
    detail: str
    exit_code: int | None
    seconds: float
    stderr_tail: list[str] = field(default_factory=list)


# ---- fixtures -----------------------------------------------------------------------------------------------------


def _png(path: Path, size: tuple[int, int] = (48, 48), mode: str = "RGB", seed: int = 0) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "I;16":
        Image.fromarray(rng.integers(0, 65535, size[::-1], dtype=np.uint16)).save(path)
    else:
        Image.fromarray(rng.integers(0, 255, (*size[::-1], 3), dtype=np.uint8)).convert(mode).save(path)
    return path


def _image_tree(root: Path, classes: list[str], per_class: int = 3, bad: bool = False) -> Path:
    for c, name in enumerate(classes):
        for i in range(per_class):
            path = root / name / f"{i}.png"
            if bad:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"")
            else:
                _png(path, seed=10 * c + i)
    return root


def _recipe(folder: Path, name: str, text: str) -> str:
    path = folder / name
    path.write_text(text)
    return str(path)


def _yaml(mapping: dict) -> str:
    import yaml

    return yaml.safe_dump(mapping, sort_keys=False, default_flow_style=None)


def _train_fixture(tmp: Path, env: dict[str, str]) -> Path:
    """A tiny finished run (model folder, selection.parquet, one checkpoint), trained for 2 epochs on built-in data."""
    run = tmp / "run"
    argv = [*TINY_MODEL, *TINY_DATA, *TINY_RUN, "--save_strategy", "epoch", "--save_total_limit", "1"]
    cmd = [sys.executable, "-m", "sspa_hf.commands.train", *argv, "--output_dir", str(run)]
    done = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=1200)
    if done.returncode != 0 or not (run / "config.json").is_file():
        sys.exit(f"bad_inputs: the fixture run failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return run


def _copy_model(run: Path, dest: Path, keep: Callable[[str], bool]) -> Path:
    dest.mkdir(parents=True)
    for item in run.iterdir():
        if item.is_file() and keep(item.name):
            shutil.copy2(item, dest / item.name)
    return dest


def build_fixtures(tmp: Path, env: dict[str, str]) -> dict[str, str]:
    """Every file and folder the cases name, by a short key."""
    from PIL import Image

    run = _train_fixture(tmp, env)
    f: dict[str, str] = {"run": str(run), "tmp": str(tmp)}
    model_files = {"config.json", "model.safetensors", "preprocessor_config.json"}
    img = tmp / "images"
    f["good"] = str(_png(img / "good.png"))
    f["good2"] = str(_png(img / "good2.png", seed=1))
    Image.open(f["good"]).save(img / "source.jpg", quality=90)
    data = (img / "source.jpg").read_bytes()
    (img / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (img / "zero.png").write_bytes(b"")
    (img / "notes.jpg").write_text("these are my notes, not a photo\n")
    f["truncated"], f["zero"], f["text"] = str(img / "truncated.jpg"), str(img / "zero.png"), str(img / "notes.jpg")
    f["tiny"] = str(_png(img / "one_pixel.png", (1, 1)))
    Image.new("L", (12000, 12000)).save(img / "huge.png")  # 144 megapixels, a few hundred kB
    f["huge"] = str(img / "huge.png")
    Image.open(f["good"]).convert("CMYK").save(img / "cmyk.jpg")
    f["cmyk"] = str(img / "cmyk.jpg")
    f["sixteen"] = str(_png(img / "sixteen.png", mode="I;16"))
    f["rgba"] = str(_png(img / "rgba.png", mode="RGBA"))
    frames = [Image.open(f["good"]), Image.open(f["good2"])]
    frames[0].save(img / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    f["gif"] = str(img / "anim.gif")
    (img / "face.txt").write_bytes(Path(f["good"]).read_bytes())
    f["png_as_txt"] = str(img / "face.txt")
    mixed = tmp / "mixed"
    for i in range(3):
        _png(mixed / f"face{i}.png", seed=20 + i)
    shutil.copy(img / "truncated.jpg", mixed / "broken.jpg")
    f["mixed"] = str(mixed)
    (tmp / "empty").mkdir()
    f["empty"] = str(tmp / "empty")
    # Image-folder trees.
    f["tree"] = str(_image_tree(tmp / "tree", ["angry", "happy", "sad"]))
    f["tree_contempt"] = str(_image_tree(tmp / "tree_contempt", ["angry", "happy", "contempt"]))
    f["tree_bad"] = str(_image_tree(tmp / "tree_bad", ["angry", "happy"], bad=True))
    loose = _image_tree(tmp / "tree_loose", ["happy"])
    _png(loose / "stray.png")
    f["tree_loose"] = str(loose)
    # Model folders.
    f["truncated_model"] = str(_copy_model(run, tmp / "m_truncated", model_files.__contains__))
    weights = Path(f["truncated_model"]) / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    f["garbage_model"] = str(_copy_model(run, tmp / "m_garbage", model_files.__contains__))
    (Path(f["garbage_model"]) / "model.safetensors").write_bytes(os.urandom(4096))
    f["config_only"] = str(_copy_model(run, tmp / "m_config_only", {"config.json"}.__contains__))
    f["mid_save"] = str(_copy_model(run, tmp / "m_mid_save", {"config.json", "model.safetensors"}.__contains__))
    f["bad_config"] = str(_copy_model(run, tmp / "m_bad_config", model_files.__contains__))
    config = Path(f["bad_config"]) / "config.json"
    config.write_text(config.read_text()[:40])
    checkpoints = sorted(run.glob("checkpoint-*"))
    f["checkpoint"] = str(checkpoints[-1]) if checkpoints else str(run / "checkpoint-missing")
    f["run_copy"] = str(tmp / "run_copy")
    shutil.copytree(run, f["run_copy"])
    f["no_selection"] = str(_copy_model(run, tmp / "m_no_selection", lambda name: name != "selection.parquet"))
    # Output places: a plain file (as a parent), a folder nobody may write in, a non-empty unrelated folder.
    (tmp / "a_file").write_text("not a folder\n")
    f["file"] = str(tmp / "a_file")
    if os.geteuid() == 0:  # root writes through chmod: use a folder of a read-only file system instead
        f["readonly"] = "/sys"
    else:
        (tmp / "readonly").mkdir()
        (tmp / "readonly").chmod(0o555)
        f["readonly"] = str(tmp / "readonly")
    (tmp / "busy").mkdir()
    (tmp / "busy" / "thesis.tex").write_text("\\documentclass{article}\n")
    f["busy"] = str(tmp / "busy")
    return f


# ---- cases --------------------------------------------------------------------------------------------------------


def recipe_cases(f: dict[str, str]) -> list[Case]:
    """sspa-train recipes: each is the tiny recipe with one mistake (so an accepted one trains for seconds)."""
    rdir = Path(f["tmp"]) / "recipes"
    rdir.mkdir()
    base = _yaml(TINY_RECIPE)

    def out(name: str) -> list[str]:
        return ["--output_dir", str(Path(f["tmp"]) / "train_out" / name)]

    def rc(cid: str, text: str, expects: str, name: str | None = None, **kw) -> Case:
        path = _recipe(rdir, name or f"{cid}.yaml", text)
        return Case(cid, "sspa-train", [path, *out(cid)], expects, **kw)

    _recipe(rdir, "cycle_b.yaml", "extends: cycle_a.yaml\n")
    dup_json = json.dumps(TINY_RECIPE)[:-1] + ', "learning_rate": 0.1, "learning_rate": 0.5}'
    return [
        rc("recipe-unknown-key", base + "colour_jitter: 0.4\n", "refused: unknown key"),
        rc("recipe-typo", base + "learnig_rate: 0.1\n", "refused: unknown key, did you mean learning_rate"),
        rc("recipe-wrong-type", base.replace("num_train_epochs: 2", "num_train_epochs: two"), "refused: not an int"),
        rc("recipe-list-for-scalar", base + "learning_rate: [0.1, 0.2]\n", "refused: a list where one number goes"),
        rc("recipe-duplicate-key", base + "learning_rate: 0.1\nlearning_rate: 0.5\n", "refused: duplicate key, lines"),
        rc("recipe-duplicate-key-json", dup_json, "refused: duplicate key", name="recipe-duplicate-key-json.json"),
        rc("recipe-missing-extends", "extends: base_that_moved.yaml\n" + base, "refused: names the missing base"),
        rc("recipe-extends-cycle", "extends: cycle_b.yaml\n" + base, "refused: extends cycle", name="cycle_a.yaml"),
        rc("recipe-bad-yaml", base + "learning_rate: [0.1\n", "refused: not valid YAML, with the line"),
        rc("recipe-empty-file", "", "refused: recipe is empty"),
        rc("recipe-list-top", "- learning_rate: 0.1\n- num_train_epochs: 2\n", "refused: must be a mapping"),
        rc("recipe-image-mean-2", base + "image_mean: [0.5, 0.5]\n", "refused up front: 3 values (RGB)"),
        rc("recipe-image-std-zero", base + "image_std: [0, 0, 0]\n", "refused: std must be > 0"),
        rc("recipe-negative-epochs", base.replace("num_train_epochs: 2", "num_train_epochs: -1"), "refused: > 0"),
        rc(
            "recipe-selection-ge-epochs",
            base.replace("selection_epochs: 1", "selection_epochs: 5"),
            "refused: < epochs",
        ),
        rc("recipe-bad-choice", base + "selection_mode: papper\n", "refused: one of paper, transition, ..."),
        rc("recipe-bad-bool", base.replace("use_cpu: true", "use_cpu: maybe"), "refused: true or false"),
        rc("recipe-batch-zero", base.replace("batch_size: 35", "batch_size: 0"), "refused: batch size >= 1"),
        rc("recipe-image-size-16", base.replace("image_size: 32", "image_size: 16"), "refused: image_size >= 32"),
        rc("recipe-ema-above-1", base + "ema_momentum: 1.5\n", "refused: ema_momentum in [0, 1)"),
        rc("recipe-aux-fraction-zero", base + "auxiliary_fraction: 0\n", "refused: fraction in (0, 1]"),
        Case("recipe-missing-file", "sspa-train", [str(rdir / "quickstrat.yaml")], "refused: recipe not found"),
        Case("recipe-txt-suffix", "sspa-train", [_recipe(rdir, "recipe.txt", base)], "refused: recipe must be .yaml"),
    ]


def flag_cases(f: dict[str, str]) -> list[Case]:
    """Flags of every command: unknown, abbreviated, bad values, missing values, misplaced positionals."""
    tmp = Path(f["tmp"])
    run, good = f["run"], f["good"]
    train = [*TINY_MODEL, *TINY_DATA, *TINY_RUN, "--save_strategy", "no"]

    def tr(cid: str, extra: list[str], expects: str, **kw) -> Case:
        return Case(cid, "sspa-train", [*train, "--output_dir", str(tmp / "train_out" / cid), *extra], expects, **kw)

    return [
        tr("train-flag-unknown", ["--colour_jitter", "0.4"], "refused: unknown flag"),
        tr("train-flag-abbrev", ["--learning", "0.1"], "refused: no abbreviations"),
        tr("train-flag-bad-int", ["--num_train_epochs", "abc"], "refused: not a number"),
        tr("train-flag-bad-choice", ["--selection_mode", "sspa"], "refused: one of ..."),
        tr("train-flag-no-value", ["--learning_rate"], "refused: expects a value"),
        tr("train-flag-stray-positional", ["runs/try"], "refused: unexpected argument"),
        Case(
            "train-recipe-not-first",
            "sspa-train",
            ["--num_train_epochs", "2", _recipe(tmp, "first.yaml", _yaml(TINY_RECIPE))],
            "refused: the recipe comes first",
        ),
        tr("train-flag-lr-negative", ["--learning_rate", "-0.1"], "refused: learning_rate > 0", about=r"learning_rate"),
        tr("train-model-path-missing", ["--model_name_or_path", str(tmp / "no_model")], "refused: no such model"),
        tr("train-backbone-weights-missing", ["--backbone_weights", str(tmp / "r18.pth")], "refused: no such file"),
        Case("eval-flag-unknown", "sspa-eval", [run, "synthetic:?role=target&n=70", "--colour"], "refused"),
        Case(
            "eval-flag-abbrev",
            "sspa-eval",
            [run, "synthetic:?role=target&n=70", "--batch", "8", "--output_dir", str(tmp / "eval_abbrev")],
            "refused: no abbreviations (as sspa-train)",
        ),
        Case(
            "eval-batch-negative",
            "sspa-eval",
            [run, "synthetic:?role=target&n=70", "--batch_size", "-1"],
            "refused: --batch_size >= 1",
        ),
        Case(
            "eval-device-bad",
            "sspa-eval",
            [run, "synthetic:?role=target&n=70", "--device", "tpu"],
            "refused: not a device",
        ),
        Case("predict-top-k-zero", "sspa-predict", [run, good, "--top_k", "0"], "refused: --top_k >= 1"),
        Case(
            "predict-top-k-100",
            "sspa-predict",
            [run, good, "--top_k", "100"],
            "refused: at most 7 classes",
            about=r"top_k",
        ),
        Case("predict-batch-zero", "sspa-predict", [run, good, "--batch_size", "0"], "refused: --batch_size >= 1"),
        Case("predict-every-zero", "sspa-predict", [run, good, "--every", "0"], "refused: --every >= 1"),
        Case(
            "predict-annotate-no-detect",
            "sspa-predict",
            [run, good, "--annotate", str(tmp / "ann")],
            "refused: --annotate needs --detect_faces",
            about=r"annotate",
        ),
        Case(
            "predict-detector-unknown",
            "sspa-predict",
            [run, good, "--detect_faces", "--detector", "yolo"],
            "refused: one of the detectors",
        ),
        Case(
            "prepare-image-size-negative",
            "sspa-prepare",
            [f"imagefolder:{f['tree']}", str(tmp / "prep_neg"), "--image_size", "-5", "--num_proc", "1"],
            "refused: --image_size >= 0",
        ),
        Case(
            "prepare-num-proc-zero",
            "sspa-prepare",
            [f"imagefolder:{f['tree']}", str(tmp / "prep_np0"), "--num_proc", "0"],
            "refused: --num_proc >= 1",
        ),
        Case(
            "prepare-jpeg-quality-150",
            "sspa-prepare",
            [
                f"imagefolder:{f['tree']}",
                str(tmp / "prep_q"),
                "--jpeg_quality",
                "150",
                "--format",
                "jpeg",
                "--num_proc",
                "1",
            ],
            "refused: quality 1..95",
        ),
        Case("onnx-flag-typo", "sspa-export-onnx", [run, str(tmp / "m.onnx"), "--chek"], "refused: unknown flag"),
        Case(
            "selection-flag-abbrev",
            "sspa-export-selection",
            [run, str(tmp / "sel_abbrev"), "--kept"],
            "refused: no abbreviations (as sspa-train)",
        ),
        Case("selection-missing-out", "sspa-export-selection", [run], "refused: OUT is required"),
    ]


def data_cases(f: dict[str, str]) -> list[Case]:
    """Data specs given to sspa-eval, sspa-prepare and sspa-train."""
    tmp, run = Path(f["tmp"]), f["run"]

    def ev(cid: str, spec: str, expects: str, extra: tuple[str, ...] = (), **kw) -> Case:
        return Case(cid, "sspa-eval", [run, spec, "--output_dir", str(tmp / "eval_out" / cid), *extra], expects, **kw)

    def prep(cid: str, spec: str, expects: str, **kw) -> Case:
        return Case(cid, "sspa-prepare", [spec, str(tmp / "prep_out" / cid), "--num_proc", "1"], expects, **kw)

    tree, contempt = f["tree"], f["tree_contempt"]
    return [
        ev("data-unknown-format", f"rafbd:{tree}", "refused: unknown format, did you mean rafdb"),
        ev("data-missing-path", f"imagefolder:{tmp / 'no_such_tree'}", "refused: no such folder"),
        ev("data-bad-query-key", "synthetic:?role=target&nn=70", "refused: unknown option nn"),
        ev("data-bad-query-value", "synthetic:?role=target&n=lots", "refused: n must be an integer"),
        ev("data-empty-folder", f"imagefolder:{f['empty']}", "refused: no images"),
        ev("data-unknown-class", f"imagefolder:{contempt}", "refused: names the contempt folder"),
        ev(
            "data-label-map-keeps-synonyms",
            f"imagefolder:{contempt}?label_map=contempt:drop",
            "works: angry/happy still known, contempt dropped",
            extra=("--split", "train"),
            works=True,
        ),
        ev(
            "data-label-map-unknown-folder",
            f"imagefolder:{contempt}?label_map=angry:anger",
            "refused: contempt is not in label_map (no contradiction)",
            extra=("--split", "train"),
        ),
        ev("data-label-map-bad-target", f"imagefolder:{tree}?label_map=angry:rage", "refused: rage is not a class"),
        ev("data-label-map-malformed", f"imagefolder:{tree}?label_map=angry", "refused: not native:ours"),
        ev("data-split-missing", f"imagefolder:{tree}", "refused: no split test (has train)"),
        ev("data-a-file", f["good"], "refused: a file is not a data set"),
        ev(
            "data-all-images-bad",
            f"imagefolder:{f['tree_bad']}",
            "refused: names the bad images",
            extra=("--split", "train"),
        ),
        ev(
            "data-loose-image",
            f"imagefolder:{f['tree_loose']}",
            "a notice that stray.png is not in a class folder",
            extra=("--split", "train"),
            about=r"stray",
        ),
        prep("prepare-unknown-format", f"imagefoldr:{tree}", "refused: unknown format"),
        prep("prepare-missing-path", f"rafdb:{tmp / 'RAF-DB'}", "refused: no such folder"),
        prep("prepare-wrong-layout", f"rafdb:{tree}", "refused: not the RAF-DB layout"),
        prep("prepare-bad-option", f"imagefolder:{tree}?image_sise=64", "refused: unknown option"),
        Case(
            "prepare-out-is-file",
            "sspa-prepare",
            [f"imagefolder:{tree}", f["file"], "--num_proc", "1"],
            "refused: OUTPUT_DIR is a file",
        ),
        Case(
            "prepare-out-busy",
            "sspa-prepare",
            [f"imagefolder:{tree}", f["busy"], "--num_proc", "1"],
            "refused: OUTPUT_DIR holds other files",
        ),
        Case(
            "train-target-missing",
            "sspa-train",
            [
                *TINY_MODEL,
                *TINY_RUN,
                "--target_dataset",
                f"imagefolder:{tmp / 'nothere'}",
                "--output_dir",
                str(tmp / "train_out" / "tm"),
            ],
            "refused: no such folder",
        ),
        Case(
            "train-aux-unknown-format",
            "sspa-train",
            [
                *TINY_MODEL,
                *TINY_RUN,
                "--target_dataset",
                "synthetic:?role=target&n=70",
                "--auxiliary_dataset",
                "afectnet:/data/AN",
                "--output_dir",
                str(tmp / "train_out" / "ta"),
            ],
            "refused: unknown format",
        ),
    ]


def image_cases(f: dict[str, str]) -> list[Case]:
    """Images given to sspa-predict (face crops, no detection)."""
    tmp, run = Path(f["tmp"]), f["run"]

    def pr(cid: str, images: list[str], expects: str, **kw) -> Case:
        return Case(
            cid, "sspa-predict", [run, *images, "--output", str(tmp / "pred_out" / f"{cid}.csv")], expects, **kw
        )

    bad_row = r"(?i)error|unreadable|cannot read|not an image"
    return [
        pr("image-truncated", [f["truncated"]], "refused or an error row naming the file", about=bad_row),
        pr("image-zero-bytes", [f["zero"]], "refused or an error row naming the file", about=bad_row),
        pr("image-not-an-image", [f["text"]], "refused or an error row naming the file", about=bad_row),
        pr("image-one-pixel", [f["tiny"]], "classified with a warning (1x1 is not a face)", about=r"1x1|1 x 1|small"),
        pr(
            "image-144-megapixels",
            [f["huge"]],
            "classified with one plain line (no raw DecompressionBombWarning)",
            about=r"(?i)decompression|megapixel|pixels",
        ),
        pr("image-cmyk", [f["cmyk"]], "works: converted to RGB", works=True),
        pr("image-16-bit", [f["sixteen"]], "works: converted to 8-bit RGB", works=True),
        pr("image-animated-gif", [f["gif"]], "works: first frame", works=True),
        pr(
            "image-one-bad-of-four",
            [f["mixed"]],
            "three rows and one error row naming broken.jpg, exit != 0",
            about=r"broken\.jpg",
        ),
        pr("image-missing-file", [str(tmp / "face_missing.png")], "refused: no such file"),
        pr("image-empty-folder", [f["empty"]], "refused: no images in the folder"),
        pr("image-glob-no-match", [str(tmp / "images" / "*.jpeg")], "refused: the pattern matches nothing"),
        pr("image-png-named-txt", [f["png_as_txt"]], "refused: not an image file name (or read it)"),
    ]


def model_cases(f: dict[str, str]) -> list[Case]:
    """Model folders given to sspa-predict, sspa-eval, sspa-export-onnx, sspa-export-selection, sspa-train."""
    tmp, good = Path(f["tmp"]), f["good"]
    spec = "synthetic:?role=target&n=70"

    def pr(cid: str, model: str, expects: str, **kw) -> Case:
        return Case(cid, "sspa-predict", [model, good], expects, **kw)

    def ev(cid: str, model: str, expects: str) -> Case:
        return Case(cid, "sspa-eval", [model, spec, "--output_dir", str(tmp / "eval_out" / cid)], expects)

    def ox(cid: str, model: str, expects: str) -> Case:
        return Case(cid, "sspa-export-onnx", [model, str(tmp / "onnx_out" / f"{cid}.onnx")], expects)

    return [
        pr("model-missing-predict", str(tmp / "runs" / "rafdb"), "refused: no such folder"),
        ev("model-missing-eval", str(tmp / "runs" / "rafdb"), "refused: no such folder"),
        ox("model-missing-onnx", str(tmp / "runs" / "rafdb"), "refused: no such folder"),
        pr("model-empty-predict", f["empty"], "refused: not a model folder"),
        pr("model-truncated-predict", f["truncated_model"], "refused: model.safetensors is truncated"),
        ev("model-truncated-eval", f["truncated_model"], "refused: model.safetensors is truncated"),
        ox("model-truncated-onnx", f["truncated_model"], "refused: model.safetensors is truncated"),
        pr("model-garbage-weights", f["garbage_model"], "refused: model.safetensors is not a safetensors file"),
        pr("model-config-only", f["config_only"], "refused: weights missing"),
        pr("model-bad-config-json", f["bad_config"], "refused: config.json is not valid JSON"),
        pr("model-killed-mid-save-predict", f["mid_save"], "refused: the save did not finish, how to finish it"),
        ev("model-killed-mid-save-eval", f["mid_save"], "refused: the save did not finish, how to finish it"),
        pr("model-checkpoint-folder", f["checkpoint"], "works: a checkpoint is a model", works=True),
        pr("model-is-an-image", good, "refused: not a model folder"),
        pr("model-hub-id-offline", "someone/sspa-rafdb-nothere", "refused: not found, offline"),
        Case(
            "selection-run-missing",
            "sspa-export-selection",
            [str(tmp / "runs" / "x"), str(tmp / "sel_x")],
            "refused: no such run folder",
        ),
        Case(
            "selection-no-parquet",
            "sspa-export-selection",
            [f["no_selection"], str(tmp / "sel_np")],
            "refused: selection.parquet is missing",
        ),
        Case(
            "selection-of-a-checkpoint",
            "sspa-export-selection",
            [f["checkpoint"], str(tmp / "sel_ck")],
            "refused: give the run folder",
        ),
    ]


def output_cases(f: dict[str, str]) -> list[Case]:
    """Output paths: parent is a file, a read-only folder, an existing run or data set."""
    tmp, run, good, ro, file = Path(f["tmp"]), f["run"], f["good"], f["readonly"], f["file"]
    spec = "synthetic:?role=target&n=70"
    train = [*TINY_MODEL, *TINY_DATA, *TINY_RUN, "--save_strategy", "no"]
    return [
        Case(
            "out-predict-parent-file",
            "sspa-predict",
            [run, good, "--output", f"{file}/preds.csv"],
            "refused before inference: parent is a file",
        ),
        Case(
            "out-predict-read-only",
            "sspa-predict",
            [run, good, "--output", f"{ro}/preds.csv"],
            "refused before inference: cannot write",
        ),
        Case(
            "out-predict-suffix",
            "sspa-predict",
            [run, good, "--output", str(tmp / "preds.xlsx")],
            "refused: .csv or .json",
        ),
        Case(
            "out-predict-annotate-file",
            "sspa-predict",
            [run, good, "--detect_faces", "--annotate", file],
            "refused before inference: --annotate is a file",
        ),
        Case(
            "out-eval-read-only",
            "sspa-eval",
            [run, spec, "--output_dir", f"{ro}/eval"],
            "refused before evaluation: cannot write",
        ),
        Case(
            "out-eval-parent-file",
            "sspa-eval",
            [run, spec, "--output_dir", f"{file}/eval"],
            "refused before evaluation: parent is a file",
        ),
        Case(
            "out-train-parent-file", "sspa-train", [*train, "--output_dir", f"{file}/run"], "refused: parent is a file"
        ),
        Case("out-train-read-only", "sspa-train", [*train, "--output_dir", f"{ro}/run"], "refused: cannot write"),
        Case(
            "out-train-complete-run",
            "sspa-train",
            [*train, "--output_dir", f["run_copy"]],
            "refused: holds a complete run",
        ),
        Case("out-onnx-suffix", "sspa-export-onnx", [run, str(tmp / "model.txt")], "refused: must end with .onnx"),
        Case("out-onnx-parent-file", "sspa-export-onnx", [run, f"{file}/m.onnx"], "refused before export"),
        Case("out-onnx-read-only", "sspa-export-onnx", [run, f"{ro}/m.onnx"], "refused before export"),
        Case("out-selection-busy", "sspa-export-selection", [run, f["busy"]], "refused: OUT is not empty"),
        Case("out-selection-parent-file", "sspa-export-selection", [run, f"{file}/sel"], "refused: parent is a file"),
        Case(
            "out-prepare-read-only",
            "sspa-prepare",
            [f"imagefolder:{f['tree']}", f"{ro}/prep", "--num_proc", "1"],
            "refused: cannot write",
        ),
    ]


def all_cases(f: dict[str, str]) -> list[Case]:
    return [*recipe_cases(f), *flag_cases(f), *data_cases(f), *image_cases(f), *model_cases(f), *output_cases(f)]


# ---- running and sorting ------------------------------------------------------------------------------------------


def classify(case: Case, code: int | None, out: str, err: str) -> tuple[str, str]:
    """(category, detail) of one outcome."""
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    bars = [line for line in lines if PROGRESS_BAR.search(line)]
    lines = [line for line in lines if not PROGRESS_BAR.search(line)]  # a progress bar is not a message
    after = " (after a progress bar)" if bars else ""
    if code is None:
        return "other", f"hang: no exit after {case.timeout:.0f} s"
    if "Traceback (most recent call last)" in err or "Traceback (most recent call last)" in out:
        last = lines[-1] if lines else ""
        return "traceback", f"exit {code}: {last[:150]}"
    prefix = f"{case.command}: error: "
    if code != 0:
        if case.works:
            return "other", f"exit {code}, a fine input refused: {lines[-1][:150] if lines else ''}"
        if len(lines) == 1 and lines[0].startswith(prefix):
            return "refusal", lines[0][len(prefix) :][:200] + after
        errors = [line for line in lines if line.startswith(prefix)]
        said = errors[-1][:150] if errors else (lines[-1][:150] if lines else "(nothing on stderr)")
        return "other", f"exit {code}, {len(lines)} stderr lines: {said}"
    if case.works:
        return "ok", "exit 0 as expected"
    said = [line for line in (err + "\n" + out).splitlines() if re.search(case.about, line)]
    if said:
        return "other", f"exit 0, warned and went on: {said[0].strip()[:150]}"
    return "silent", "exit 0, nothing said"


def run_case(case: Case, env: dict[str, str], cwd: Path) -> Outcome:
    cmd = [sys.executable, "-m", f"sspa_hf.commands.{COMMANDS[case.command]}", *case.argv]
    start = time.monotonic()
    try:
        done = subprocess.run(
            cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=case.timeout, stdin=subprocess.DEVNULL
        )
        code, out, err = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:
        code = None
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
    seconds = time.monotonic() - start
    out, err = out.replace(str(cwd.parent), "TMP"), err.replace(str(cwd.parent), "TMP")  # never match our own paths
    category, detail = classify(case, code, out, err)
    tail = [line for line in err.splitlines() if line.strip()][-6:]
    return Outcome(case.id, case.command, case.expects, category, detail, code, round(seconds, 1), tail)


def print_table(outcomes: list[Outcome]) -> None:
    width = max(len(o.id) for o in outcomes)
    for o in outcomes:
        print(f"{o.id:<{width}}  {o.command:<21}  {o.category:<9}  {o.detail}")
        print(f"{'':<{width}}  {'':<21}  {'expects':<9}  {o.expects}")
    totals = Counter(o.category for o in outcomes)
    print(f"\n{len(outcomes)} cases: " + ", ".join(f"{totals.get(c, 0)} {c}" for c in CATEGORIES))
    for command in COMMANDS:
        mine = Counter(o.category for o in outcomes if o.command == command)
        if mine:
            print(f"  {command:<21} " + ", ".join(f"{mine.get(c, 0)} {c}" for c in CATEGORIES))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", metavar="PATH", help="write the outcomes as JSON here")
    parser.add_argument("--jobs", type=int, default=2, help="cases run at once (default 2: the CPU is shared)")
    parser.add_argument(
        "-k", metavar="PATTERN", help="only the cases whose id contains PATTERN (or one of several, comma-separated)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (its path is printed)")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="sspa-bad-inputs-"))
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp / "hf_home"),
        "XDG_CACHE_HOME": str(tmp / "cache"),
        "MPLCONFIGDIR": str(tmp / "mpl"),
    }
    try:
        started = time.monotonic()
        fixtures = build_fixtures(tmp, env)
        cases = [c for c in all_cases(fixtures) if not args.k or any(k in c.id for k in args.k.split(","))]
        ids = [c.id for c in cases]
        assert len(ids) == len(set(ids)), "duplicate case ids"
        print(f"fixtures in {time.monotonic() - started:.0f} s; {len(cases)} cases, {args.jobs} at a time", flush=True)
        work = tmp / "cwd"
        work.mkdir()
        done: list[Outcome] = []

        def one(case: Case) -> Outcome:
            outcome = run_case(case, env, work)
            done.append(outcome)
            print(f"[{len(done)}/{len(cases)}] {case.id}: {outcome.category} ({outcome.seconds} s)", file=sys.stderr)
            return outcome

        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            outcomes = list(pool.map(one, cases))
        print_table(outcomes)
        if args.json:
            totals = Counter(o.category for o in outcomes)
            report = {
                "pythonpath": os.environ.get("PYTHONPATH", ""),
                "cases": len(outcomes),
                "totals": {c: totals.get(c, 0) for c in CATEGORIES},
                "outcomes": [o.__dict__ for o in outcomes],
            }
            Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
