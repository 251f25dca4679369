"""Faces in, faces out: find every face in a photo or video frame, prepare it as the training faces were, classify it.

The face work is read from the model's config (`face_preparation`, written by sspa-train from the target data
set) and done by `sspa_hf.data.prepare.crop_detected` / `fit_size`, the functions sspa-prepare uses, so a face
reaches the model exactly as the training faces did (a JPEG source is the one difference: sspa-prepare re-encodes
its crops as JPEG quality 95, inference keeps the decoded pixels).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageDraw

from .data.faces import DEFAULT_DETECTOR, DETECTION_MARGIN, Box, check_detector, get_detector

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
    """One result row: the image (and video frame), the face index (None: no face found), its box and top-k."""

    image: str
    frame: int | None
    face: int | None
    box: tuple[int, int, int, int] | None
    predictions: list[dict[str, Any]] = field(default_factory=list)


def preparation_of(config: Any, detector: str | None = None) -> dict[str, Any]:
    """The face work recorded in a model config, completed with the defaults; logs what a mismatch means.

    `detector` (sspa-predict --detector) replaces the recorded detector, with a warning when it differs."""
    if detector is not None:
        check_detector(detector, "--detector")
    recorded = getattr(config, "face_preparation", None) or {}
    preparation = {**DEFAULT_PREPARATION, **recorded}
    if preparation["faces"] != "detected":
        known = "record no face preparation" if preparation["faces"] == "unknown" else "were not detected"
        logger.warning(
            "the model's training faces %s (%s): --detect_faces crops with %s and widening %.2f, which may "
            "differ from them",
            known,
            preparation["faces"].replace("_", " "),
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
    from .data.prepare import ALIGNED_SIZE, crop_detected, fit_size  # `datasets`: not before sspa-predict's checks

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


def annotate(image: Image.Image, rows: Sequence[FaceRow]) -> Image.Image:
    """A copy of `image` with each face's box and its top label and score drawn (or "no face")."""
    drawn = image.convert("RGB")
    draw = ImageDraw.Draw(drawn)
    width = max(2, round(max(image.size) / 200))
    for row in rows:
        if row.box is None:
            draw.text((4, 4), "no face", fill=(255, 64, 64))
            continue
        x, y, w, h = row.box
        draw.rectangle((x, y, x + w, y + h), outline=(0, 255, 0), width=width)
        best = row.predictions[0]
        draw.text((x + 2, max(0, y - 12)), f"{row.face}: {best['label']} {best['score']:.2f}", fill=(0, 255, 0))
    return drawn


def video_frames(path: str, every: int) -> Iterable[tuple[int, Image.Image, float]]:
    """(frame index, RGB frame, frames per second) for every `every`-th frame of a video, with OpenCV."""
    from .data.faces import require_cv2

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
    from .data.faces import require_cv2

    cv2 = require_cv2()
    capture = cv2.VideoCapture(path)
    try:
        return int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    finally:
        capture.release()


class VideoWriter:
    """An annotated video written frame by frame (mp4v), opened on the first frame's size."""

    def __init__(self, path: str, fps: float) -> None:
        from .data.faces import require_cv2

        self._cv2 = require_cv2()
        self._path, self._fps, self._writer = path, fps, None

    def write(self, image: Image.Image) -> None:
        import numpy as np

        cv2 = self._cv2
        if self._writer is None:
            self._writer = cv2.VideoWriter(self._path, cv2.VideoWriter_fourcc(*"mp4v"), self._fps, image.size)
        self._writer.write(cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
