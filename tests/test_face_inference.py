"""Inference on whole photos and videos: real faces (scikit-image's bundled astronaut) pasted into 640x480 frames
are found by `sspa-predict --detect_faces` and classified exactly as `sspa-predict` classifies the crops
`sspa-prepare` makes from the same frames, with each face detector (Haar, and dlib when installed)."""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY_BACKBONE as TINY
from PIL import Image

cv2 = pytest.importorskip("cv2")
skimage_data = pytest.importorskip("skimage.data")

from sspa_hf import SSPAConfig, SSPAForImageClassification, make_image_processor  # noqa: E402
from sspa_hf.commands import evaluate as eval_command  # noqa: E402
from sspa_hf.commands import predict as predict_command  # noqa: E402
from sspa_hf.commands import prepare as prepare_command  # noqa: E402
from sspa_hf.commands.photos import preparation_of  # noqa: E402
from sspa_hf.data import load_prepared  # noqa: E402
from sspa_hf.data.faces import DETECTION_MARGIN, DlibFaceDetector  # noqa: E402
from sspa_hf.data.sources import face_preparation  # noqa: E402
from sspa_hf.errors import UserInputError  # noqa: E402

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
#: Turned 30 degrees: Haar misses this face, dlib finds it (IoU 0.65).
TURNED_30 = [(200, 30, (200, 150))]
IOU_THRESHOLD = 0.5
DLIB = pytest.param(
    "dlib", marks=pytest.mark.skipif(importlib.util.find_spec("dlib") is None, reason="needs dlib-bin (dev extra)")
)


def astronaut_face() -> Image.Image:
    """The real face crop, read from the file scikit-image ships inside its wheel (nothing is downloaded)."""
    path = Path(skimage_data.__file__).parent / "astronaut.png"
    x, y, w, h = ASTRONAUT_FACE
    with Image.open(path) as image:
        return image.convert("RGB").crop((x - w // 2, y - h // 2, x + w + w // 2, y + h + h // 2))


def known_boxes(pasted: list) -> list[tuple[float, float, float, float]]:
    """Where the faces of a frame are: the middle half of each pasted crop."""
    return [(x + side / 4, y + side / 4, side / 2, side / 2) for side, _, (x, y) in pasted]


def make_frame(pasted: list, seed: int) -> Image.Image:
    noise = np.random.default_rng(seed).integers(60, 200, (480, 640, 3), dtype=np.uint8)
    frame = Image.fromarray(noise)
    for side, angle, corner in pasted:
        frame.paste(astronaut_face().resize((side, side)).rotate(angle, resample=Image.Resampling.BILINEAR), corner)
    return frame


def iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / (aw * ah + bw * bh - w * h)


@pytest.fixture(scope="module", params=["haar", DLIB])
def setup(request, tmp_path_factory) -> dict:
    """CAER-S-style frames, sspa-prepare's crops of them (found by one detector: Haar by default, or the spec's
    `detector=`), and a tiny model trained (recorded) on those crops."""
    detector = request.param
    root = tmp_path_factory.mktemp(f"faceinference_{detector}")
    frames = root / "frames"
    frames.mkdir()
    for seed, name in enumerate(FRAMES):
        image = make_frame(FRAMES[name], seed)
        image.save(frames / f"{name}.png")
        for split in ("train", "test"):
            (root / "caer" / split / "Happy").mkdir(parents=True, exist_ok=True)
            image.save(root / "caer" / split / "Happy" / f"{name}.png")
    prepared = root / "prepared"
    spec = f"caer_s:{root / 'caer'}" + ("" if detector == "haar" else f"?detector={detector}")
    assert prepare_command.main([spec, str(prepared), "--image_size", "64", "-q"]) == 0
    torch.manual_seed(0)
    model = SSPAForImageClassification(SSPAConfig(backbone_config=TINY, image_size=48)).eval()
    with torch.no_grad():
        model.moe.experts.weight.mul_(30)
    model.config.face_preparation = face_preparation(str(prepared))  # what sspa-train records
    model.save_pretrained(root / "model")
    make_image_processor(48).save_pretrained(root / "model")
    return {"root": root, "frames": frames, "prepared": prepared, "model": root / "model", "detector": detector}


def _predict_faces(setup, *extra: str) -> list[dict]:
    out = setup["root"] / "faces.json"
    argv = [str(setup["model"]), str(setup["frames"]), "--detect_faces", "--top_k", "7", "--output", str(out)]
    assert predict_command.main([*argv, *extra]) == 0
    return json.loads(out.read_text())


def test_the_model_folder_records_the_face_work_of_its_training_faces(setup):
    config = json.loads((setup["model"] / "config.json").read_text())
    assert config["face_preparation"] == {
        "faces": "detected",
        "detector": setup["detector"],
        "box_widening": DETECTION_MARGIN,
        "align": False,
        "crop_size": 64,
    }
    assert preparation_of(SSPAConfig(**config))["crop_size"] == 64
    manifest = json.loads((setup["prepared"] / "sspa_prepare.json").read_text())
    assert manifest["face_work"]["detector"] == setup["detector"]


def test_detect_faces_finds_every_pasted_face_and_says_when_there_is_none(setup):
    annotated = setup["root"] / "annotated"
    rows = _predict_faces(setup, "--annotate", str(annotated))
    for name in FRAMES:
        mine = [r for r in rows if Path(r["path"]).stem == name]
        if not FRAMES[name]:
            no_face = {"path": mine[0]["path"], "frame": None, "face": None, "box": None, "predictions": []}
            assert mine == [{**no_face, "error": None}]
            continue
        assert len(mine) == len(FRAMES[name]), name
        for known in known_boxes(FRAMES[name]):
            assert max(iou(known, r["box"]) for r in mine) >= IOU_THRESHOLD, (name, known, mine)
        assert (annotated / f"{name}.annotated.png").is_file()


def test_each_face_is_classified_as_sspa_predict_classifies_sspa_prepares_crop(setup):
    faces = {Path(r["path"]).stem: r for r in _predict_faces(setup) if r["face"] == 0}
    crops = setup["root"] / "crops"
    crops.mkdir()
    for row in load_prepared(setup["prepared"])["test"]:  # sspa-prepare keeps the largest face of each frame
        row["image"].save(crops / f"{Path(row['id']).stem}.png")
    out = setup["root"] / "crops.json"
    argv = [str(setup["model"]), str(crops), "--top_k", "7", "--output", str(out)]
    assert predict_command.main(argv) == 0
    on_crops = {Path(r["path"]).stem: r["predictions"] for r in json.loads(out.read_text())}
    assert sorted(on_crops) == sorted(name for name in FRAMES if FRAMES[name])
    for name, predictions in on_crops.items():
        assert [p["label"] for p in faces[name]["predictions"]] == [p["label"] for p in predictions]
        np.testing.assert_allclose(
            [p["score"] for p in faces[name]["predictions"]], [p["score"] for p in predictions], rtol=0, atol=1e-6
        )


@pytest.mark.parametrize("setup", ["haar"], indirect=True)
def test_a_video_gives_rows_per_frame_and_an_annotated_video(setup, tmp_path, capsys):
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (640, 480))
    for name in ("two", "none", "tilted", "none", "turned"):
        writer.write(cv2.imread(str(setup["frames"] / f"{name}.png")))
    writer.release()
    out, annotated = tmp_path / "frames.json", tmp_path / "annotated"
    argv = [str(setup["model"]), str(clip), "--detect_faces", "--every", "2", "--output", str(out)]
    assert predict_command.main([*argv, "--annotate", str(annotated)]) == 0
    rows = json.loads(out.read_text())
    assert sorted({r["frame"] for r in rows}) == [0, 2, 4]  # every 2nd frame: two, tilted, turned
    assert [r["face"] for r in rows if r["frame"] == 0] == [0, 1]
    (written,) = annotated.glob("clip.annotated.*")
    video = cv2.VideoCapture(str(written))
    codec = int(video.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode().lower()
    frames = 0
    while video.read()[0]:
        frames += 1
    video.release()
    assert frames == 3
    # H.264 where OpenCV can write it, else VP8 in WebM (both play in web browsers; the opencv-python wheels have
    # VP8), said in one line; never mp4v where a browser-playable codec can be written.
    assert (written.suffix, codec) in {(".mp4", "avc1"), (".mp4", "h264"), (".webm", "vp80"), (".webm", "vp08")}
    if written.suffix == ".webm":
        line = f"sspa-predict: {written} is VP8, not H.264: this OpenCV build has no H.264 encoder "
        line += "(web browsers play it)"
        assert line in capsys.readouterr().err


@pytest.mark.parametrize("setup", ["haar"], indirect=True)
def test_a_video_without_detect_faces_and_annotate_alone_are_one_line_errors(setup, tmp_path, capsys):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"")
    assert predict_command.main([str(setup["model"]), str(clip)]) == 2
    assert "is a video: videos are read with --detect_faces" in capsys.readouterr().err
    assert predict_command.main([str(setup["model"]), str(setup["frames"]), "--annotate", str(tmp_path)]) == 2
    assert "--annotate needs --detect_faces" in capsys.readouterr().err


@pytest.mark.parametrize("setup", ["haar"], indirect=True)
@pytest.mark.parametrize("command", [predict_command, eval_command])
def test_a_killed_run_names_its_last_checkpoint(setup, tmp_path, capsys, command):
    run = tmp_path / "run"
    for step in (5, 10):
        shutil.copytree(setup["model"], run / f"checkpoint-{step}")
    weights = run / "checkpoint-10" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # torn: the newest loadable checkpoint is checkpoint-5
    (run / "run_status.json").write_text('{"status": "running"}')
    assert command.main([str(run), str(setup["frames"])]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{run} is an unfinished training run (run_status.json: running; config.json, model.safetensors" in err
    assert "--resume_from_checkpoint true" in err and f"give its last checkpoint {run / 'checkpoint-5'}" in err


@pytest.mark.parametrize("setup", [DLIB], indirect=True)
def test_the_recorded_detector_finds_the_faces_at_inference_and_detector_overrides_it(setup, tmp_path, caplog):
    make_frame(TURNED_30, 7).save(tmp_path / "turned30.png")
    out = tmp_path / "rows.json"
    argv = [str(setup["model"]), str(tmp_path / "turned30.png"), "--detect_faces", "--output", str(out)]
    assert predict_command.main(argv) == 0
    rows = json.loads(out.read_text())
    assert len(rows) == 1 and iou(known_boxes(TURNED_30)[0], rows[0]["box"]) >= IOU_THRESHOLD, rows
    with caplog.at_level(logging.WARNING, logger="sspa_hf.commands.photos"):
        assert predict_command.main([*argv, "--detector", "haar"]) == 0
    assert "--detector haar differs from the detector the model's training faces were found with (dlib)" in caplog.text
    assert [r["face"] for r in json.loads(out.read_text())] == [None]  # Haar misses the turned face


@pytest.mark.parametrize("setup", ["haar"], indirect=True)
def test_an_unknown_detector_is_a_one_line_error_naming_it_and_the_choices(setup, tmp_path, capsys):
    spec = f"caer_s:{setup['root'] / 'caer'}?detector=yolo"
    assert prepare_command.main([spec, str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "detector='yolo'" in err and "haar, dlib" in err, err
    assert not (tmp_path / "out").exists()
    argv = [str(setup["model"]), str(setup["frames"]), "--detect_faces", "--detector", "yolo"]
    assert predict_command.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--detector: unknown face detector 'yolo'; expected one of haar, dlib" in err
    assert predict_command.main([str(setup["model"]), str(setup["frames"]), "--detector", "dlib"]) == 2
    assert "--detector needs --detect_faces" in capsys.readouterr().err


def test_missing_dlib_gives_an_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)
    with pytest.raises(UserInputError, match=r"pip install 'sspa-hf\[dlib\]'"):
        DlibFaceDetector()
