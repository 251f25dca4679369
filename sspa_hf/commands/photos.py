"""Faces in, faces out: find every face in a photo or video frame, prepare it as the training faces were, classify it.

The face work is read from the model's config (`face_preparation`, written by sspa-train from the target data
set) and done by `sspa_hf.data.prepare.crop_detected` / `fit_size`, the functions sspa-prepare uses, so a face
reaches the model exactly as the training faces did (a JPEG source is the one difference: sspa-prepare re-encodes
its crops as JPEG quality 95, inference keeps the decoded pixels).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from ..data.faces import DEFAULT_DETECTOR, DETECTION_MARGIN, Box, check_detector, get_detector

logger = logging.getLogger(__name__)

#: Used for models saved before `face_preparation` was recorded: Haar, sspa-prepare's widening, no alignment.
DEFAULT_PREPARATION: dict[str, Any] = {
    "faces": "unknown",
    "detector": DEFAULT_DETECTOR,
    "box_widening": DETECTION_MARGIN,
    "align": False,
    "crop_size": 0,
}


@dataclass
class FaceRow:
    """One result row: the image (and video frame), the face index (None: no face found), its box and top-k, or
    why the image could not be read (`error`; then no face and no predictions)."""

    image: str
    frame: int | None
    face: int | None
    box: tuple[int, int, int, int] | None
    predictions: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


#: How the training faces of each recorded `faces` kind were made, for the --detect_faces notice.
_NOT_DETECTED = {
    "given": "came as face crops (the data set's images, used as they are)",
    "cropped_to_box": "were cut with the data set's own face boxes",
    "aligned_on_landmarks": "were aligned on the data set's own landmarks",
}


def preparation_of(config: Any, detector: str | None = None) -> dict[str, Any]:
    """The face work recorded in a model config, completed with the defaults; logs what a mismatch means.

    `detector` (sspa-predict --detector) replaces the recorded detector, with a warning when it differs."""
    if detector is not None:
        check_detector(detector, "--detector")
    recorded = getattr(config, "face_preparation", None) or {}
    preparation = {**DEFAULT_PREPARATION, **recorded}
    if preparation["faces"] != "detected":
        how = _NOT_DETECTED.get(preparation["faces"])
        logger.warning(
            "--detect_faces: %s; here each face is found with the %s detector and cut with its box widened %.2fx, "
            "so it may be framed differently (looser, tighter, not aligned) from the faces the model learned on, "
            "and the predictions may be less accurate. If your images are already face crops, leave out "
            "--detect_faces; otherwise check a few results with --annotate",
            f"this model's training faces {how}, not found by a face detector"
            if how
            else "this model does not record how its training faces were made (saved by an older version)",
            detector or DEFAULT_PREPARATION["detector"],
            DEFAULT_PREPARATION["box_widening"],
        )
        preparation.update(
            align=False, box_widening=DEFAULT_PREPARATION["box_widening"], detector=DEFAULT_PREPARATION["detector"]
        )
    elif detector is not None and detector != preparation["detector"]:
        logger.warning(
            "--detector %s differs from the detector the model's training faces were found with (%s): "
            "faces may be framed differently from those the model learned on",
            detector,
            preparation["detector"],
        )
    if detector is not None:
        preparation["detector"] = detector
    return preparation


def find_faces(image: Image.Image, preparation: dict[str, Any]) -> list[tuple[Box, Image.Image]]:
    """Every detected face of `image` (largest first): its box and the face prepared as at training time."""
    from ..data.prepare import ALIGNED_SIZE, crop_detected, fit_size  # `datasets`: not before sspa-predict's checks

    detector = get_detector(preparation["detector"])
    crop_size = int(preparation["crop_size"])
    widening, align = float(preparation["box_widening"]), bool(preparation["align"])
    faces = []
    for box in detector.detect_all(image):
        face, _ = crop_detected(image, box, detector, widening, align, crop_size or ALIGNED_SIZE)
        faces.append((box, fit_size(face, crop_size)))
    return faces


def classify_frame(
    classifier: Any,
    name: str,
    image: Image.Image,
    preparation: dict[str, Any],
    top_k: int,
    frame: int | None = None,
    batch_size: int = 32,
) -> list[FaceRow]:
    """One row per face of `image` (top-k from the pipeline), or one "no face" row."""
    faces = find_faces(image, preparation)
    if not faces:
        return [FaceRow(name, frame, None, None)]
    outputs = classifier([face for _, face in faces], top_k=top_k, batch_size=batch_size)
    rows = []
    for index, ((box, _), output) in enumerate(zip(faces, outputs, strict=True)):
        predictions = [{"label": p["label"], "score": float(p["score"])} for p in output]
        rows.append(FaceRow(name, frame, index, tuple(round(v) for v in box), predictions))
    return rows


BOX_COLOUR = (0, 200, 0)  # the box and the label's background; the label text is black on it
NO_FACE_COLOUR = (200, 30, 30)  # the "no face" / error label's background; its text is white


@functools.lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's own font at `size` px (Pillow >= 10.1 with FreeType; else its fixed bitmap font)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def _label(draw: ImageDraw.ImageDraw, anchor: tuple[int, int], text: str, size: int, fill: tuple, ink: tuple) -> None:
    """`text` on a filled box whose bottom-left corner is `anchor` (moved down and left to stay in the image)."""
    font = _font(size)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    pad = max(2, size // 6)
    width, height = right - left + 2 * pad, bottom - top + 2 * pad
    image_w, _ = draw.im.size
    x = max(0, min(anchor[0], image_w - width))
    y = max(0, anchor[1] - height)
    draw.rectangle((x, y, x + width, y + height), fill=fill)
    draw.text((x + pad - left, y + pad - top), text, font=font, fill=ink)


def annotate(image: Image.Image, rows: Sequence[FaceRow]) -> Image.Image:
    """A copy of `image` with each face's box and its top label and score on a filled label, sized to the face and
    readable over any background (or a "no face" label)."""
    drawn = image.convert("RGB")
    draw = ImageDraw.Draw(drawn)
    for row in rows:
        if row.box is None:
            size = max(12, round(min(drawn.size) / 30))
            _label(draw, (0, 0), "no face", size, NO_FACE_COLOUR, (255, 255, 255))
            continue
        x, y, w, h = row.box
        draw.rectangle((x, y, x + w, y + h), outline=BOX_COLOUR, width=max(2, round(min(w, h) / 50)))
        best = row.predictions[0]
        size = min(64, max(12, round(w / 8)))  # about the face's width for a typical label; never below 12 px
        _label(draw, (x, y), f"{row.face}: {best['label']} {best['score']:.2f}", size, BOX_COLOUR, (0, 0, 0))
    return drawn


def video_frames(path: str, every: int) -> Iterable[tuple[int, Image.Image, float]]:
    """(frame index, RGB frame, frames per second) for every `every`-th frame of a video, with OpenCV."""
    from ..data.faces import require_cv2

    cv2 = require_cv2()
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise OSError(f"cannot open video {path}")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    index = 0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if index % every == 0:
                yield index, Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)), fps
            index += 1
    finally:
        capture.release()


def frame_count(path: str) -> int:
    """The frame count a video's header gives (0 when unknown), for the progress bar."""
    from ..data.faces import require_cv2

    cv2 = require_cv2()
    capture = cv2.VideoCapture(path)
    try:
        return int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    finally:
        capture.release()


#: (fourcc, file suffix, codec name) in order of preference: H.264 plays everywhere but needs an OpenCV build with an
#: H.264 encoder (the opencv-python wheels have none); VP8 in WebM plays in web browsers and is in those wheels
#: (VP9 too, about 5x slower to encode); mp4v, the last resort, does not play in browsers.
VIDEO_CODECS = (("avc1", ".mp4", "H.264"), ("VP80", ".webm", "VP8"), ("mp4v", ".mp4", "MPEG-4 part 2 (mp4v)"))


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (FFmpeg's and OpenCV's C-level messages while encoders are tried)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class VideoWriter:
    """An annotated video written frame by frame, opened on the first frame's size with the first codec of
    VIDEO_CODECS this OpenCV build can write; `path` and `codec` say which, `note` why when it is not H.264."""

    def __init__(self, stem: Path, fps: float) -> None:
        from ..data.faces import require_cv2

        self._cv2 = require_cv2()
        self._stem, self._fps, self._writer = stem, fps, None
        self.path: Path | None = None
        self.codec = ""

    def _open(self, size: tuple[int, int]) -> None:
        cv2 = self._cv2
        for fourcc, suffix, codec in VIDEO_CODECS:
            path = self._stem.with_name(self._stem.name + suffix)
            with _quiet_stderr():
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), self._fps, size)
            if writer.isOpened():
                self._writer, self.path, self.codec = writer, path, codec
                return
            writer.release()
            path.unlink(missing_ok=True)
        raise OSError(f"OpenCV cannot write a video here (tried {', '.join(c for _, _, c in VIDEO_CODECS)})")

    @property
    def note(self) -> str | None:
        """Why the video is not H.264 (None when it is)."""
        if self.codec in ("", "H.264"):
            return None
        plays = "web browsers play it" if self.codec == "VP8" else "web browsers do not play it"
        return f"{self.path} is {self.codec}, not H.264: this OpenCV build has no H.264 encoder ({plays})"

    def write(self, image: Image.Image) -> None:
        import numpy as np

        if self._writer is None:
            self._open(image.size)
        self._writer.write(self._cv2.cvtColor(np.asarray(image.convert("RGB")), self._cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
