"""Issue 12: every user mistake is one line (exit 2) before any work, and runs say honestly how they ended."""

from __future__ import annotations

import fnmatch
import json
import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from helpers import QUICKSTART, one_line_error
from helpers import TINY_FLAGS as TINY

from sspa_hf.commands import evaluate as eval_command
from sspa_hf.commands.train import main, parse_arguments


def test_selection_epochs_must_leave_a_pairing_stage(tmp_path, capsys):
    out = tmp_path / "out"
    flags = [QUICKSTART, *TINY, "--output_dir", str(out)]
    assert main([*flags, "--num_train_epochs", "2", "--selection_epochs", "5"]) == 2
    message = one_line_error(capsys)
    assert "selection_epochs (5)" in message and "num_train_epochs (2)" in message and "use_pairing" in message
    assert not out.exists()
    from sspa_hf.training.arguments import SSPATrainingArguments

    with pytest.raises(ValueError, match=r"selection_epochs \(5\) must be smaller"):  # code that skips the command
        SSPATrainingArguments(output_dir=str(out), num_train_epochs=2, selection_epochs=5)
    _, _, beyond = parse_arguments(  # no selection stage in the transition mode: nothing to refuse
        [*flags, "--num_train_epochs", "2", "--selection_epochs", "5", "--selection_mode", "transition"]
    )
    assert beyond.selection_mode == "transition"


def test_without_pairing_a_long_selection_is_allowed_and_explained(tmp_path, caplog):
    from sspa_hf.commands.train import check_arguments

    with caplog.at_level("WARNING"):  # said while the arguments are validated
        out = ["--output_dir", str(tmp_path / "out")]  # never the recipe's own, relative to the checkout
        args = parse_arguments([QUICKSTART, *TINY, *out, "--selection_epochs", "5", "--use_pairing", "false"])
        assert check_arguments(*args) is False
    assert "never frozen" in caplog.text


def test_saved_config_has_label2id(tmp_path):
    from transformers import AutoConfig

    from sspa_hf import SSPAConfig

    SSPAConfig(image_size=48).save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["label2id"]["happiness"] == 3
    assert AutoConfig.from_pretrained(tmp_path).label2id["happiness"] == 3


@pytest.mark.parametrize(
    "make_flags,needle",
    [
        (lambda tmp: ["--output_dir", str(tmp / "a_file")], "is an existing file"),
        (lambda tmp: ["--model_name_or_path", str(tmp / "no_model")], "no model folder"),
        (lambda tmp: ["--model_name_or_path", "runs/typo"], "no model folder runs/typo (and no Hub access"),
        (lambda tmp: ["--backbone_checkpoint", "microsoft/resnet-18"], "backbone_checkpoint: no model folder"),
        (lambda tmp: ["--report_to", "tensorboard"], "report_to tensorboard"),
        (lambda tmp: ["--push_to_hub", "true", "--hub_model_id", "me/x"], "push_to_hub: the Hub cannot be reached"),
    ],
)
def test_start_up_mistakes_are_one_line_before_any_work(tmp_path, capsys, monkeypatch, make_flags, needle):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("not a folder")
    flags = [QUICKSTART, *TINY, "--output_dir", str(tmp_path / "out"), *make_flags(tmp_path)]
    assert main(flags) == 2
    assert needle in one_line_error(capsys)
    assert not (tmp_path / "out").exists()
    assert (tmp_path / "a_file").read_text() == "not a folder"


def test_push_at_the_end_only_trains_now_when_the_hub_is_unreachable(tmp_path, monkeypatch):
    import huggingface_hub.constants

    from sspa_hf.commands.train import check_arguments

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    out = ["--output_dir", str(tmp_path / "out")]
    args = parse_arguments([QUICKSTART, *TINY, *out, "--push_to_hub", "true", "--hub_strategy", "end"])
    assert check_arguments(*args) is True  # push deferred to the end
    assert args[2].push_to_hub is False  # so the Trainer does not create the repository now


@pytest.mark.slow
def test_sigterm_marks_the_run_interrupted_and_names_no_incomplete_checkpoint(tmp_path):
    out = tmp_path / "run"
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        from pathlib import Path
        import sspa_hf.commands.train as train_command

        def fake_train(*args, **kwargs):
            (Path({str(out)!r}) / "checkpoint-7").mkdir(parents=True)
            os.kill(os.getpid(), signal.SIGTERM)
            raise AssertionError("SIGTERM did not stop the run")

        train_command.train = fake_train
        sys.exit(train_command.main({[QUICKSTART, *TINY, "--output_dir", str(out)]!r}))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 143, result.stderr[-3000:]
    status = json.loads((out / "run_status.json").read_text())
    assert status["status"] == "interrupted" and "SIGTERM" in status["error"]
    assert status["last_checkpoint"] is None  # an empty checkpoint folder is no resume point (issue 18)
    assert "last checkpoint: none yet" in result.stderr


class _RevisionHub:
    """A file-based Hub double: every upload_folder call becomes one revision folder, as the Hub would hold it."""

    def __init__(self, root: Path) -> None:
        self.root, self.revisions = root, []

    def create_repo(self, repo_id, token=None, private=None, exist_ok=False, **kwargs):
        return SimpleNamespace(repo_id=repo_id)

    def upload_folder(self, repo_id, folder_path, path_in_repo=None, ignore_patterns=(), **kwargs):
        previous = self.revisions[-1] if self.revisions else None
        revision = self.root / f"rev{len(self.revisions)}"
        if previous is not None:
            shutil.copytree(previous, revision)
        base = revision / (path_in_repo or "")
        for path in Path(folder_path).rglob("*"):
            relative = path.relative_to(folder_path).as_posix()
            if path.is_file() and not any(fnmatch.fnmatch(relative, p) for p in ignore_patterns or ()):
                (base / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, base / relative)
        self.revisions.append(revision)
        done = Future()
        done.set_result(SimpleNamespace(commit_url="local"))
        return done if kwargs.get("run_as_future") else done.result()


@pytest.mark.slow
def test_every_pushed_revision_loads_with_remote_code(tmp_path, monkeypatch):
    import transformers.trainer

    import sspa_hf.commands.hub
    from sspa_hf.commands.model_io import load_model

    hub = _RevisionHub(tmp_path / "hub")
    monkeypatch.setattr(transformers.trainer, "hf_api", lambda: hub)
    monkeypatch.setattr(sspa_hf.commands.hub, "push_problem", lambda token=None: None)
    out = tmp_path / "run"
    flags = [QUICKSTART, *TINY, "--output_dir", str(out), "--save_strategy", "epoch", "--push_to_hub", "true"]
    assert main([*flags, "--hub_model_id", "me/sspa", "--hub_strategy", "every_save"]) == 0
    assert len(hub.revisions) >= 3  # two epochs' saves, then the final push
    for revision in hub.revisions:
        for name in ("modeling_sspa.py", "configuration_sspa.py", "config.json", "model.safetensors"):
            assert (revision / name).is_file(), f"{revision.name}: {name} missing"
        model, _ = load_model(str(revision), trust_remote_code=True)
        assert not type(model).__module__.startswith("sspa_hf")  # the revision's own code
    final = json.loads((hub.revisions[-1] / "run_status.json").read_text())
    assert final["status"] == "complete"


def test_eval_of_a_second_dataset_on_the_same_split_keeps_the_first(tmp_path, capsys):
    from PIL import Image

    from sspa_hf import EXPRESSIONS, SSPAConfig, SSPAForImageClassification, make_image_processor

    config = SSPAConfig(backbone_config={"depths": [1], "hidden_sizes": [8], "embedding_size": 8}, image_size=32)
    SSPAForImageClassification(config).save_pretrained(tmp_path / "model")
    make_image_processor(32, [0.5] * 3, [0.5] * 3).save_pretrained(tmp_path / "model")
    specs = []
    for name in ("first", "second"):
        for i, label in enumerate(EXPRESSIONS):
            (tmp_path / name / "test" / label).mkdir(parents=True)
            Image.new("RGB", (32, 32), (i * 30, 0, 0)).save(tmp_path / name / "test" / label / "a.png")
        specs.append(f"imagefolder:{tmp_path / name}")
    for spec in specs:
        assert eval_command.main([str(tmp_path / "model"), spec]) == 0
    folders = sorted((tmp_path / "model").glob("eval-*"))
    assert [json.loads((f / "eval_metrics.json").read_text())["dataset"] for f in folders] == specs
    # a folder holding another dataset's evaluation is never overwritten silently
    assert eval_command.check_not_another_dataset(folders[0], specs[0], "test") is None
    with pytest.raises(eval_command.UserInputError, match="already holds"):
        eval_command.check_not_another_dataset(folders[0], specs[1], "test")


@pytest.mark.slow
def test_selection_stage_prints_one_line_per_epoch_and_announces_the_frozen_partition(tmp_path, capfd):
    out = tmp_path / "run"
    flags = [QUICKSTART, *TINY, "--output_dir", str(out), "--num_train_epochs", "3", "--selection_epochs", "2"]
    assert main([*flags, "--save_strategy", "epoch", "--disable_tqdm", "false"]) == 0
    captured = capfd.readouterr()
    printed = captured.out + captured.err
    lines = [line for line in printed.splitlines() if line.startswith("[selection] epoch")]
    assert [line.split(":")[0] for line in lines] == ["[selection] epoch 1", "[selection] epoch 2"]
    assert all("auxiliary clean" in line and "precision" in line and "mean tau" in line for line in lines)
    frozen = [line for line in printed.splitlines() if "partition frozen after 2 epochs" in line]
    assert len(frozen) == 1 and "anger " in frozen[0] and "paired augmentation" in frozen[0]
    assert "selection/aux_clean_ratio" not in printed  # no per-epoch statistics dict
    assert "Writing model shards" not in printed


def test_plots_go_to_tensorboard_as_images(tmp_path):
    """tensorboard is not installed here: a SummaryWriter double behind the Trainer's TensorBoardCallback."""
    import numpy as np
    from PIL import Image
    from transformers.integrations import TensorBoardCallback

    from sspa_hf.commands.train import log_plots_to_tensorboard

    class Writer:
        written: list = []

        def __init__(self, log_dir):
            self.log_dir = log_dir

        def add_image(self, tag, array, step, dataformats):
            Writer.written.append((self.log_dir, tag, array.shape, array.dtype, step, dataformats))

        def close(self):
            Writer.written.append("closed")

    Image.new("RGB", (30, 20), (255, 0, 0)).save(tmp_path / "clean_ratio.png")
    Image.new("L", (10, 10)).save(tmp_path / "confusion_matrix.png")
    callback = object.__new__(TensorBoardCallback)  # its __init__ needs tensorboard
    callback._SummaryWriter, callback.logging_dir = Writer, str(tmp_path / "tb")
    handler = SimpleNamespace(callbacks=[callback])
    trainer = SimpleNamespace(callback_handler=handler, state=SimpleNamespace(global_step=9))
    log_plots_to_tensorboard(trainer, [tmp_path / "clean_ratio.png", tmp_path / "confusion_matrix.png"])
    assert Writer.written == [
        (str(tmp_path / "tb"), "plots/clean_ratio", (20, 30, 3), np.uint8, 9, "HWC"),
        (str(tmp_path / "tb"), "plots/confusion_matrix", (10, 10, 3), np.uint8, 9, "HWC"),
        "closed",
    ]


def test_a_busy_machine_gets_a_warning_unless_the_threads_are_already_chosen(caplog, monkeypatch):
    from sspa_hf.commands.train import warn_if_oversubscribed

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with caplog.at_level("WARNING"):
        assert warn_if_oversubscribed(load=3.7, cores=2) is False  # issue 18: it advised what was already done
    assert caplog.text == ""
    monkeypatch.delenv("OMP_NUM_THREADS")
    with caplog.at_level("WARNING"):
        assert warn_if_oversubscribed(load=0.5, cores=2) is False
        assert caplog.text == ""
        assert warn_if_oversubscribed(load=3.7, cores=2) is True
    assert "load 3.7 on 2 cores" in caplog.text and "OMP_NUM_THREADS" in caplog.text


def test_eval_of_a_mistyped_model_folder_says_so_without_hub_retries(tmp_path, capsys, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    monkeypatch.chdir(tmp_path)
    assert eval_command.main(["runs/typo", "synthetic:?role=target&n=14"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "sspa-eval: error: model: no model folder runs/typo (and no Hub access: HF_HUB_OFFLINE is set)"


def test_a_folder_that_is_not_a_model_is_one_line(tmp_path, capsys):
    (tmp_path / "not_a_model").mkdir()
    flags = [QUICKSTART, *TINY, "--output_dir", str(tmp_path / "out")]
    assert main([*flags, "--model_name_or_path", str(tmp_path / "not_a_model")]) == 2
    assert f"model_name_or_path: cannot load {tmp_path / 'not_a_model'}" in one_line_error(capsys)


@pytest.mark.parametrize(
    "flags,needle",
    [
        (["--learning_rate", "-0.1"], "flag --learning_rate: learning_rate must be >= 0"),
        (["--image_size", "0"], "flag --image_size: image_size must be >= 32"),
        (["--per_device_train_batch_size", "0"], "flag --per_device_train_batch_size: per_device_train_batch_size"),
        (["--num_experts", "0"], "flag --num_experts: num_experts must be >= 1"),
        (["--auxiliary_fraction", "1.5"], "flag --auxiliary_fraction: auxiliary_fraction must be in (0, 1]"),
        (["--backbone", "vit"], "flag --backbone: backbone must be one of resnet, arm"),
        (["--resume_from_checkpoint", "true"], "No checkpoint to resume from"),
        (["--backbone_weights", "weights/resnet18_msceleb.pth"], "MS-Celeb-1M"),
    ],
)
def test_bad_values_are_one_line_naming_the_flag_before_any_data_is_built(tmp_path, capsys, monkeypatch, flags, needle):
    import sspa_hf.training.build

    def no_data(*args, **kwargs):
        raise AssertionError("the data sets were built before the value was refused")

    monkeypatch.setattr(sspa_hf.training.build, "build_datasets", no_data)
    monkeypatch.chdir(tmp_path)
    assert main([QUICKSTART, *TINY, "--output_dir", str(tmp_path / "out"), *flags]) == 2
    assert needle in one_line_error(capsys)
    assert not (tmp_path / "out").exists()  # no folder, no run_status.json


def _hf_folder(path: Path, labels: list[int]) -> Path:
    """A save_to_disk data set whose ClassLabel column holds `labels` (casting does not check the range)."""
    from datasets import ClassLabel, Dataset, DatasetDict
    from datasets import Image as ImageFeature
    from PIL import Image

    from sspa_hf import EXPRESSIONS

    images = [Image.fromarray(np.full((32, 32, 3), 30 * i, np.uint8)) for i in range(len(labels))]
    split = Dataset.from_dict({"image": images, "label": labels}).cast_column("image", ImageFeature())
    split = split.cast_column("label", ClassLabel(names=list(EXPRESSIONS)))
    DatasetDict({"train": split, "test": split}).save_to_disk(str(path))
    return path


@pytest.mark.parametrize("bad", [-1, 7])
def test_a_label_outside_the_classes_is_one_line_before_training(tmp_path, capsys, monkeypatch, bad):
    import sspa_hf.training.trainer

    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(sspa_hf.training.trainer.SSPATrainer, "train", no_training)
    data = _hf_folder(tmp_path / "faces", [0, 1, 2, 3, 4, 5, bad, 6])
    capsys.readouterr()  # the progress bars of saving it
    flags = [QUICKSTART, *TINY, "--output_dir", str(tmp_path / "out"), "--target_dataset", f"hf:{data}"]
    assert main(flags) == 2
    line = one_line_error(capsys)
    assert f"--target_dataset hf:{data}: split train row 6 has label {bad}" in line and "0..6" in line


def test_a_bare_sspa_train_asks_for_a_recipe(capsys):
    assert main([]) == 2
    line = one_line_error(capsys)
    assert "give a recipe: sspa-train recipes/quickstart.yaml" in line and "selection_epochs" not in line


def test_a_run_that_fails_before_any_result_leaves_no_half_made_folder(tmp_path, capsys):
    out = tmp_path / "out"
    flags = [QUICKSTART, *TINY, "--output_dir", str(out), "--target_dataset", f"imagefolder:{tmp_path / 'nowhere'}"]
    assert main(flags) == 2
    assert "nowhere" in capsys.readouterr().err
    assert not out.exists()  # was: a folder holding only run_status.json "failed"
