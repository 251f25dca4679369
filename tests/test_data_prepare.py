"""`sspa-prepare` and the prepare library: cache, reuse, resizing, formats, bad images, face detection, alignment."""

from __future__ import annotations

import io
import json
import sys

import numpy as np
import pytest
from datasets import Image as DsImage
from helpers import (
    build_affectnet_csv,
    build_affectnet_npy,
    build_caer_s,
    build_fer2013_csv,
    build_rafdb,
    landmarks_68,
    save_image,
)
from PIL import Image

import sspa_hf.data.prepare as prepare_module
import sspa_hf.data.sources as sources_module
from sspa_hf.commands.prepare import main
from sspa_hf.data import PrepareOptions, load_source, prepare_source
from sspa_hf.data.faces import EYE_TEMPLATE, HaarFaceDetector, align_on_eyes, eye_centres, widen
from sspa_hf.errors import UserInputError

# Tiny fixtures often lack classes on purpose; the empty-class warning has its own test.
pytestmark = pytest.mark.filterwarnings("ignore:.*no samples of class:UserWarning")


def stored(split, row: int = 0) -> bytes:
    return split.cast_column("image", DsImage(decode=False))[row]["image"]["bytes"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([*argv, "-q"])
    out, err = capsys.readouterr()
    return code, out, err


def test_prepare_writes_dataset_and_manifest_then_reuses_it(tmp_path, capsys):
    build_rafdb(tmp_path / "raf")
    out = tmp_path / "prepared"
    code, stdout, _ = run(capsys, f"rafdb:{tmp_path / 'raf'}", str(out), "--num_proc", "1")
    assert code == 0 and "wrote" in stdout and "train 7, test 7" in stdout
    manifest = json.loads((out / "sspa_prepare.json").read_text())
    assert manifest["splits"]["train"]["rows"] == 7 and len(manifest["fingerprint"]) == 64
    assert manifest["options"]["image_size"] == 224
    raw, prepared = load_source(f"rafdb:{tmp_path / 'raf'}"), load_source(str(out))
    assert prepared["train"]["id"] == raw["train"]["id"] and prepared["test"]["label"] == raw["test"]["label"]
    # 100 px JPEG faces under 224 px are stored with their original bytes (no generation loss)
    original = (tmp_path / "raf" / "Image" / "aligned" / "train_00001_aligned.jpg").read_bytes()
    assert stored(prepared["train"]) == original

    stamp = (out / "sspa_prepare.json").stat().st_mtime_ns
    code, stdout, _ = run(capsys, f"rafdb:{tmp_path / 'raf'}", str(out))
    assert code == 0 and "is up to date" in stdout and "reusing it" in stdout
    assert (out / "sspa_prepare.json").stat().st_mtime_ns == stamp

    save_image(tmp_path / "raf" / "Image" / "aligned" / "train_00001_aligned.jpg", 100, 100, seed=99)
    code, stdout, _ = run(capsys, f"rafdb:{tmp_path / 'raf'}", str(out))
    assert code == 0 and "wrote" in stdout  # a changed source file invalidates the cache
    assert stored(load_source(str(out))["train"]) != original

    code, stdout, _ = run(capsys, f"rafdb:{tmp_path / 'raf'}", str(out), "--image_size", "50")
    assert code == 0 and "wrote" in stdout  # so does a changed option
    image = load_source(str(out))["train"][0]["image"]
    assert image.size == (50, 50) and image.format == "JPEG"


def test_lossless_sources_are_stored_as_png_and_format_can_be_forced(tmp_path):
    build_fer2013_csv(tmp_path / "fer2013.csv")
    result = prepare_source(f"fer2013:{tmp_path / 'fer2013.csv'}", tmp_path / "png", PrepareOptions(image_size=48))
    assert not result.reused and set(result.manifest["splits"]) == {"train", "validation", "test"}
    image = load_source(str(tmp_path / "png"))["test"][0]["image"]
    assert image.format == "PNG" and image.mode == "L" and image.size == (48, 48)
    prepare_source(f"fer2013:{tmp_path / 'fer2013.csv'}", tmp_path / "jpg", PrepareOptions(image_format="jpeg"))
    assert Image.open(io.BytesIO(stored(load_source(str(tmp_path / "jpg"))["train"]))).format == "JPEG"


def _folder_with_a_truncated_image(root, n=130):
    for i in range(n):
        save_image(root / ("happy" if i % 2 else "sad") / f"{i:03d}.png", 16, 16, i)
    bad = root / "sad" / "064.png"
    bad.write_bytes(bad.read_bytes()[:60])
    return bad


def test_bad_image_is_an_error_naming_it_or_skipped_and_reported(tmp_path, capsys):
    bad = _folder_with_a_truncated_image(tmp_path / "faces")
    spec = f"imagefolder:{tmp_path / 'faces'}"
    code, _, err = run(capsys, spec, str(tmp_path / "out"), "--num_proc", "2")
    assert code == 2
    assert err.startswith("sspa-prepare: error: cannot read image ") and str(bad) in err and err.count("\n") == 1
    assert "--skip_bad_images" in err
    assert not (tmp_path / "out").exists()

    code, stdout, _ = run(capsys, spec, str(tmp_path / "out"), "--num_proc", "2", "--skip_bad_images")
    assert code == 0 and "1 bad image(s) left out" in stdout
    report = (tmp_path / "out" / "bad_images.tsv").read_text().splitlines()
    assert report[0] == "split\tid\tfile\treason" and report[1].startswith(f"train\tsad/064.png\t{bad}\t")
    assert len(report) == 2
    assert len(load_source(str(tmp_path / "out"))["train"]) == 129


def test_command_errors_are_one_line_and_help_works(tmp_path, capsys):
    code, _, err = run(capsys, f"rafdb:{tmp_path / 'missing'}", str(tmp_path / "out"))
    assert code == 2 and err.count("\n") == 1 and str(tmp_path / "missing") in err
    code, _, err = run(capsys, f"rafdb:{tmp_path}", str(tmp_path / "out"), "--align")
    assert code == 2 and "--align needs facial landmarks (affectnet) or face detection (caer_s)" in err
    build_rafdb(tmp_path / "raf")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    code, _, err = run(capsys, f"rafdb:{tmp_path / 'raf'}", str(tmp_path / "mine"))
    assert code == 2 and "is not an sspa-prepare folder" in err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    assert main(["--help"]) == 0
    help_text = capsys.readouterr().out
    assert "fer2013_ferplus" in help_text and "--skip_bad_images" in help_text and "examples:" in help_text


class FakeDetector:
    """Finds a 20 px face at (30, 8) in every frame except those whose first pixel is pure black."""

    def detect(self, image):
        return None if image.convert("RGB").getpixel((0, 0)) == (0, 0, 0) else (30.0, 8.0, 20.0, 20.0)

    def detect_eyes(self, face):
        return (6.0, 9.0), (18.0, 9.0)


def test_caer_s_faces_are_detected_cropped_and_frames_without_one_listed(tmp_path, monkeypatch, capsys):
    build_caer_s(tmp_path / "caer")
    frame = tmp_path / "caer" / "test" / "Sad" / "0001.png"
    Image.new("RGB", (64, 36)).save(frame)  # a black frame: no face
    monkeypatch.setattr(prepare_module, "get_detector", lambda name: FakeDetector())
    code, stdout, _ = run(capsys, f"caer_s:{tmp_path / 'caer'}", str(tmp_path / "out"), "--image_size", "16")
    assert code == 0 and "1 frame(s) without a detected face left out" in stdout
    ds = load_source(str(tmp_path / "out"))
    assert len(ds["train"]) == 7 and len(ds["test"]) == 6
    assert {ds["train"][i]["image"].size for i in range(7)} == {(16, 16)}
    report = (tmp_path / "out" / "no_face.tsv").read_text().splitlines()
    assert report[1] == f"test\ttest/Sad/0001.png\t{frame}"
    # the crop is the widened square around the detected box
    source = Image.open(tmp_path / "caer" / "train" / "Anger" / "0001.png")
    left, top, side, _ = widen((30.0, 8.0, 20.0, 20.0), 1.2, 64, 36)
    box = (round(left), round(top), round(left + side), round(top + side))
    expected = source.crop(box).resize((16, 16), Image.Resampling.BILINEAR)
    np.testing.assert_array_equal(np.asarray(ds["train"][0]["image"]), np.asarray(expected))  # PNG: lossless
    manifest = json.loads((tmp_path / "out" / "sspa_prepare.json").read_text())
    assert manifest["no_face"] == 1 and manifest["face_work"]["detect"]

    code, _, _ = run(capsys, f"caer_s:{tmp_path / 'caer'}", str(tmp_path / "aligned"), "--align", "--image_size", "24")
    assert code == 0 and load_source(str(tmp_path / "aligned"))["train"][0]["image"].size == (24, 24)


def test_missing_opencv_gives_an_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(UserInputError, match=r"pip install 'sspa-hf\[faces\]'.*faces=cropped"):
        HaarFaceDetector()


def test_haar_detector_runs_offline_and_finds_no_face_in_noise():
    pytest.importorskip("cv2")
    detector = HaarFaceDetector()
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8))
    assert detector.detect(noise) is None
    assert detector.detect(Image.new("RGB", (320, 240), (128, 128, 128))) is None


def test_align_on_eyes_puts_the_eyes_on_the_template():
    image = np.zeros((120, 160, 3), dtype=np.uint8)
    left, right = (50.0, 70.0), (98.0, 40.0)  # a tilted face
    for x, y in (left, right):
        image[int(y) - 2 : int(y) + 3, int(x) - 2 : int(x) + 3] = 255
    aligned = np.asarray(align_on_eyes(Image.fromarray(image), left, right, 100))[..., 0].astype(float)
    assert aligned.shape == (100, 100)
    for (fx, fy), half in zip(EYE_TEMPLATE, (slice(0, 50), slice(50, 100)), strict=True):
        blob = np.zeros_like(aligned)
        blob[:, half] = aligned[:, half]
        ys, xs = np.nonzero(blob > 100)
        assert abs(xs.mean() - fx * 100) < 1.5 and abs(ys.mean() - fy * 100) < 1.5


def test_eye_centres_from_68_landmarks():
    assert eye_centres(landmarks_68((84.0, 45.0), (60.0, 45.0))) == ((60.0, 45.0), (84.0, 45.0))


def test_affectnet_alignment_through_prepare_and_aliased_test_split(tmp_path, capsys):
    build_affectnet_npy(tmp_path / "an")
    code, _, _ = run(capsys, f"affectnet:{tmp_path / 'an'}", str(tmp_path / "out"), "--align", "--image_size", "32")
    assert code == 0
    ds = load_source(str(tmp_path / "out"))
    assert list(ds) == ["train", "validation", "test"] and ds["test"]["id"] == ds["validation"]["id"]
    assert ds["train"][0]["image"].size == (32, 32)
    assert json.loads((tmp_path / "out" / "sspa_prepare.json").read_text())["aliases"] == {"test": "validation"}
    assert not (tmp_path / "out" / "test").exists()  # stored once


def test_load_source_reuses_its_auto_prepared_copy_without_parsing(tmp_path, monkeypatch):
    monkeypatch.setenv("SSPA_HF_CACHE", str(tmp_path / "cache"))
    written = build_affectnet_csv(tmp_path / "an")
    spec = f"affectnet:{tmp_path / 'an'}?image_size=32"
    first = load_source(spec)
    assert first["train"][0]["image"].size == (32, 32)

    def must_not_parse(*args, **kwargs):
        raise AssertionError("the raw source was parsed again")

    monkeypatch.setattr(sources_module, "read_source", must_not_parse)
    assert load_source(spec)["train"]["id"] == first["train"]["id"]
    monkeypatch.undo()
    monkeypatch.setenv("SSPA_HF_CACHE", str(tmp_path / "cache"))
    affectnet_image_path = tmp_path / "an" / "Manually_Annotated_Images" / written["training.csv"][0][0]
    save_image(affectnet_image_path, 160, 120, seed=5)  # a changed image: prepared again
    assert stored(load_source(spec)["train"]) != stored(first["train"])


def test_output_inside_the_source_tree_is_reused(tmp_path, capsys):
    build_rafdb(tmp_path)
    assert run(capsys, f"rafdb:{tmp_path}", str(tmp_path / "prepared"))[0] == 0
    code, stdout, _ = run(capsys, f"rafdb:{tmp_path}", str(tmp_path / "prepared"))
    assert code == 0 and "reusing it" in stdout
