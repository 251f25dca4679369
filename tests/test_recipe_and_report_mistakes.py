"""Issue 33, part 5: recipe and data-spec mistakes are one line naming the culprit; a full disk at the end-of-run
reports keeps the model and says so."""

from __future__ import annotations

import errno
import json

import pytest
from helpers import QUICKSTART, TINY_FLAGS, one_line_error, save_image

from sspa_hf.commands.train import main, parse_arguments
from sspa_hf.data import read_source
from sspa_hf.errors import UserInputError
from sspa_hf.labels import EXPRESSIONS


@pytest.mark.parametrize(
    "suffix,text,where",
    [
        (".yaml", "extends: {q}\nlearning_rate: 0.1\nnum_experts: 2\nlearning_rate: 0.5\n", "lines 2 and 4"),
        (".json", '{{"extends": "{q}",\n "learning_rate": 0.1,\n "learning_rate": 0.5}}\n', "lines 2 and 3"),
        (".json", '{{"learning_rate": 0.1, "learning_rate": 0.5}}', "line 1, columns 2 and 24"),
    ],
)
def test_a_key_given_twice_in_a_recipe_is_refused_with_both_places(tmp_path, capsys, suffix, text, where):
    recipe = tmp_path / f"recipe{suffix}"
    recipe.write_text(text.format(q=QUICKSTART))
    out = tmp_path / "out"
    assert main([str(recipe), "--output_dir", str(out)]) == 2
    message = one_line_error(capsys)
    assert f"recipe {recipe}" in message and "'learning_rate' is given twice" in message and where in message
    assert not out.exists()


def test_the_same_key_in_two_mappings_is_no_duplicate(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f'extends: {QUICKSTART}\nlr_scheduler_kwargs: {{"num_cycles": 2}}\noptim_args: "num_cycles=1"\n')
    assert parse_arguments([str(recipe)])[2].lr_scheduler_kwargs == {"num_cycles": 2}


def test_a_missing_extends_names_the_recipe_that_extends_it(tmp_path, capsys):
    child = tmp_path / "child.yaml"
    child.write_text("extends: moved/base.yaml\nnum_experts: 2\n")
    assert main([str(child), "--output_dir", str(tmp_path / "out")]) == 2
    message = one_line_error(capsys)
    assert f"recipe {child}: extends moved/base.yaml" in message and str(tmp_path / "moved" / "base.yaml") in message


@pytest.mark.parametrize(
    "where,needle",
    [
        (["--image_mean", "0.5", "0.5"], "flag --image_mean: image_mean needs 3 values (red, green, blue), got 2"),
        (["--image_std", "0.5", "0", "0.5"], "flag --image_std: image_std values must be > 0"),
        ("image_mean: [0.5, 0.5, 0.5, 0.5]\n", "key image_mean: image_mean needs 3 values (red, green, blue), got 4"),
    ],
)
def test_normalisation_of_the_wrong_shape_is_refused_when_parsed(tmp_path, where, needle):
    """Before: accepted, then a traceback once the data set was built."""
    if isinstance(where, str):
        recipe = tmp_path / "recipe.yaml"
        recipe.write_text(f"extends: {QUICKSTART}\n{where}")
        argv = [str(recipe), *TINY_FLAGS]
    else:
        argv = [str(QUICKSTART), *TINY_FLAGS, *where]
    with pytest.raises(UserInputError) as refused:
        parse_arguments(argv)
    assert needle in str(refused.value)


def test_label_map_keeps_the_common_spellings_of_the_folders_it_does_not_name(tmp_path):
    for i, folder in enumerate(["angry", "happy", "contempt"]):
        save_image(tmp_path / folder / f"{i}.png", 20, 20, i)
    source = read_source(f"imagefolder:{tmp_path}?label_map=contempt:drop")
    names = [EXPRESSIONS[label] for label in source.splits["train"]["label"]]
    assert sorted(names) == ["anger", "happiness"] and source.dropped["train"] == {"contempt": 1}
    remapped = read_source(f"imagefolder:{tmp_path}?label_map=happy:surprise,contempt:drop")  # the map comes first
    assert sorted(EXPRESSIONS[label] for label in remapped.splits["train"]["label"]) == ["anger", "surprise"]


def test_an_unknown_folder_next_to_a_label_map_is_named_without_contradiction(tmp_path):
    for i, folder in enumerate(["anger", "Verachtung"]):
        save_image(tmp_path / folder / f"{i}.png", 20, 20, i)
    with pytest.raises(UserInputError) as refused:
        read_source(f"imagefolder:{tmp_path}?label_map=Wut:anger")
    message = str(refused.value)
    assert f"unknown class folder {tmp_path / 'Verachtung'}: neither in label_map (Wut) nor a class name" in message
    assert "label_map=name:class or name:drop" in message


def test_a_full_disk_at_the_end_of_run_plots_keeps_the_model_and_says_how_to_finish(tmp_path, capsys, monkeypatch):
    """Before: a traceback after the model was saved. Now one line, run_status.json names what was kept, and the
    resume it suggests writes the reports without training again."""
    from matplotlib.figure import Figure

    def no_space(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    out = tmp_path / "run"
    argv = [*TINY_FLAGS, "--save_strategy", "epoch", "--use_cpu", "true", "--output_dir", str(out)]
    with monkeypatch.context() as patch:
        patch.setattr(Figure, "savefig", no_space)
        assert main(argv) == 2
    message = one_line_error(capsys)
    assert f"writing the end-of-run reports into {out} failed: no space left on device" in message
    kept = "kept: the trained model (model.safetensors, config.json, preprocessor_config.json) and checkpoint-"
    assert kept in message
    assert "--resume_from_checkpoint true" in message
    status = json.loads((out / "run_status.json").read_text())
    assert status["status"] == "failed" and "kept: the trained model" in status["error"]
    assert (out / "model.safetensors").is_file() and not (out / "class_distribution.png").exists()
    assert main([*argv, "--resume_from_checkpoint", "true"]) == 0
    assert json.loads((out / "run_status.json").read_text())["status"] == "complete"
    assert (out / "class_distribution.png").is_file() and (out / "confusion_matrix.png").is_file()
