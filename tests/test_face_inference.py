"""Inference on whole photos and videos: real faces (scikit-image's bundled astronaut) pasted into 640x480 frames
are found by `sspa-predict --detect-faces` and classified exactly as `sspa-predict` classifies the crops
`sspa-prepare` makes from the same frames."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

cv2 = pytest.importorskip("cv2")
skimage_data = pytest.importorskip("skimage.data")

from sspa_hf import SSPAConfig, SSPAForImageClassification, make_image_processor  # noqa: E402
from sspa_hf.commands import evaluate as eval_command  # noqa: E402
from sspa_hf.commands import predict as predict_command  # noqa: E402
from sspa_hf.commands import prepare as prepare_command  # noqa: E402
from sspa_hf.data import load_prepared  # noqa: E402
from sspa_hf.data.faces import DETECTION_MARGIN  # noqa: E402
from sspa_hf.data.sources import face_preparation  # noqa: E402
from sspa_hf.face_inference import preparation_of  # noqa: E402

TINY = {"layer_type": "basic", "depths": [1, 1, 1, 1], "hidden_sizes": [8, 16, 32, 64], "embedding_size": 8}
#: The astronaut's face box in skimage's bundled astronaut.png (Haar finds it there), cropped with half a side of
#: context around it: the face is the middle half of each pasted crop.
ASTRONAUT_FACE = (177, 67, 93, 93)
#: frame name -> pasted crops (side in px, rotation in degrees, top-left corner); 640x480 noise frames.
FRAMES = {
    "two": [(160, 0, (40, 60)), (140, -12, (480, 40))],
    "tilted": [(200, 10, (300, 200))],
    "turned": [(220, 20, (100, 100))],
    "none": [],
}
IOU_THRESHOLD = 0.5


def astronaut_face() -> Image.Image:
    """The real face crop, read from the file scikit-image ships inside its wheel (nothing is downloaded)."""
    path = Path(skimage_data.__file__).parent / "astronaut.png"
    x, y, w, h = ASTRONAUT_FACE
    with Image.open(path) as image:
        return image.convert("RGB").crop((x - w // 2, y - h // 2, x + w + w // 2, y + h + h // 2))


def known_boxes(name: str) -> list[tuple[float, float, float, float]]:
    """Where the faces of a frame are: the middle half of each pasted crop."""
    return [(x + side / 4, y + side / 4, side / 2, side / 2) for side, _, (x, y) in FRAMES[name]]


def make_frame(name: str, seed: int) -> Image.Image:
    noise = np.random.default_rng(seed).integers(60, 200, (480, 640, 3), dtype=np.uint8)
    frame = Image.fromarray(noise)
    for side, angle, corner in FRAMES[name]:
        frame.paste(astronaut_face().resize((side, side)).rotate(angle, resample=Image.Resampling.BILINEAR), corner)
    return frame


def iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / (aw * ah + bw * bh - w * h)


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    """CAER-S-style frames, sspa-prepare's crops of them, and a tiny model trained (recorded) on those crops."""
    root = tmp_path_factory.mktemp("faceinference")
    frames = root / "frames"
    frames.mkdir()
    for seed, name in enumerate(FRAMES):
        image = make_frame(name, seed)
        image.save(frames / f"{name}.png")
        for split in ("train", "test"):
            (root / "caer" / split / "Happy").mkdir(parents=True, exist_ok=True)
            image.save(root / "caer" / split / "Happy" / f"{name}.png")
    prepared = root / "prepared"
    assert prepare_command.main([f"caer_s:{root / 'caer'}", str(prepared), "--image-size", "64", "-q"]) == 0
    torch.manual_seed(0)
    model = SSPAForImageClassification(SSPAConfig(backbone_config=TINY, image_size=48)).eval()
    with torch.no_grad():
        model.moe.experts.weight.mul_(30)
    model.config.face_preparation = face_preparation(str(prepared))  # what sspa-train records
    model.save_pretrained(root / "model")
    make_image_processor(48).save_pretrained(root / "model")
    return {"root": root, "frames": frames, "prepared": prepared, "model": root / "model"}


def _predict_faces(setup, *extra: str) -> list[dict]:
    out = setup["root"] / "faces.json"
    argv = [str(setup["model"]), str(setup["frames"]), "--detect-faces", "--top-k", "7", "--output", str(out)]
    assert predict_command.main([*argv, *extra]) == 0
    return json.loads(out.read_text())


def test_the_model_folder_records_the_face_work_of_its_training_faces(setup):
    config = json.loads((setup["model"] / "config.json").read_text())
    assert config["face_preparation"] == {
        "faces": "detected",
        "detector": "haar",
        "box_widening": DETECTION_MARGIN,
        "align": False,
        "crop_size": 64,
    }
    assert preparation_of(SSPAConfig(**config))["crop_size"] == 64


def test_detect_faces_finds_every_pasted_face_and_says_when_there_is_none(setup):
    annotated = setup["root"] / "annotated"
    rows = _predict_faces(setup, "--annotate", str(annotated))
    for name in FRAMES:
        mine = [r for r in rows if Path(r["path"]).stem == name]
        if not FRAMES[name]:
            assert mine == [{"path": mine[0]["path"], "frame": None, "face": None, "box": None, "predictions": []}]
            continue
        assert len(mine) == len(FRAMES[name]), name
        for known in known_boxes(name):
            assert max(iou(known, r["box"]) for r in mine) >= IOU_THRESHOLD, (name, known, mine)
        assert (annotated / f"{name}.annotated.png").is_file()


def test_each_face_is_classified_as_sspa_predict_classifies_sspa_prepares_crop(setup):
    faces = {Path(r["path"]).stem: r for r in _predict_faces(setup) if r["face"] == 0}
    crops = setup["root"] / "crops"
    crops.mkdir()
    for row in load_prepared(setup["prepared"])["test"]:  # sspa-prepare keeps the largest face of each frame
        row["image"].save(crops / f"{Path(row['id']).stem}.png")
    out = setup["root"] / "crops.json"
    argv = [str(setup["model"]), str(crops), "--top-k", "7", "--output", str(out)]
    assert predict_command.main(argv) == 0
    on_crops = {Path(r["path"]).stem: r["predictions"] for r in json.loads(out.read_text())}
    assert sorted(on_crops) == sorted(name for name in FRAMES if FRAMES[name])
    for name, predictions in on_crops.items():
        assert [p["label"] for p in faces[name]["predictions"]] == [p["label"] for p in predictions]
        np.testing.assert_allclose(
            [p["score"] for p in faces[name]["predictions"]], [p["score"] for p in predictions], rtol=0, atol=1e-6
        )


def test_a_video_gives_rows_per_frame_and_an_annotated_video(setup, tmp_path):
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (640, 480))
    for name in ("two", "none", "tilted", "none", "turned"):
        writer.write(cv2.imread(str(setup["frames"] / f"{name}.png")))
    writer.release()
    out, annotated = tmp_path / "frames.json", tmp_path / "annotated"
    argv = [str(setup["model"]), str(clip), "--detect-faces", "--every", "2", "--output", str(out)]
    assert predict_command.main([*argv, "--annotate", str(annotated)]) == 0
    rows = json.loads(out.read_text())
    assert sorted({r["frame"] for r in rows}) == [0, 2, 4]  # every 2nd frame: two, tilted, turned
    assert [r["face"] for r in rows if r["frame"] == 0] == [0, 1]
    video = cv2.VideoCapture(str(annotated / "clip.annotated.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    video.release()


def test_a_video_without_detect_faces_and_annotate_alone_are_one_line_errors(setup, tmp_path, capsys):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"")
    assert predict_command.main([str(setup["model"]), str(clip)]) == 2
    assert "is a video: videos are read with --detect-faces" in capsys.readouterr().err
    assert predict_command.main([str(setup["model"]), str(setup["frames"]), "--annotate", str(tmp_path)]) == 2
    assert "--annotate needs --detect-faces" in capsys.readouterr().err


@pytest.mark.parametrize("command", [predict_command, eval_command])
def test_a_killed_run_names_its_last_checkpoint(setup, tmp_path, capsys, command):
    run = tmp_path / "run"
    for step in (5, 10):
        (run / f"checkpoint-{step}").mkdir(parents=True)
    (run / "run_status.json").write_text('{"status": "running"}')
    assert command.main([str(run), str(setup["frames"])]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "the run did not finish" in err and str(run / "checkpoint-10") in err
