"""Face geometry: crop to a box, align on the eye centres by a similarity transform, and detect faces offline.

Two detectors, in the table `DETECTORS`, both with their weights inside a wheel (nothing is downloaded at run
time): OpenCV's Haar cascades (`haar`, the default; the `faces` extra) and dlib's HOG detector (`dlib`; the `dlib`
extra), which finds more turned and small faces. Either is imported only when detection is asked for.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Protocol

import numpy as np
from PIL import Image

from ..errors import UserInputError

Box = tuple[float, float, float, float]  # x, y, width, height in pixels
Point = tuple[float, float]

#: Where the eye centres land in an aligned face, as fractions of its side (image-left eye first).
EYE_TEMPLATE: tuple[Point, Point] = ((0.3, 0.4), (0.7, 0.4))
#: A detected face box is widened by this factor about its centre (Haar boxes stop at the brows and chin).
DETECTION_MARGIN = 1.2


def crop_to_box(image: Image.Image, box: Sequence[float]) -> Image.Image:
    """Crop to `box` (x, y, w, h), clamped to the image; an empty intersection is an error."""
    x, y, w, h = (float(v) for v in box)
    left, top = max(0, round(x)), max(0, round(y))
    right, bottom = min(image.width, round(x + w)), min(image.height, round(y + h))
    if right - left < 2 or bottom - top < 2:
        raise ValueError(f"face box {tuple(box)} lies outside the {image.width}x{image.height} image")
    return image.crop((left, top, right, bottom))


def widen(box: Box, factor: float, width: int, height: int) -> Box:
    """A square box `factor` times the larger side of `box`, same centre, shifted to stay inside the image."""
    x, y, w, h = box
    side = min(max(w, h) * factor, width, height)
    cx, cy = x + w / 2, y + h / 2
    left = min(max(0.0, cx - side / 2), width - side)
    top = min(max(0.0, cy - side / 2), height - side)
    return left, top, side, side


def eye_centres(landmarks: Sequence[float]) -> tuple[Point, Point]:
    """Eye centres from the 68-point markup (x1, y1, x2, y2, ...): mean of points 36-41 and of 42-47."""
    points = np.asarray(landmarks, dtype=np.float64).reshape(68, 2)
    first, second = points[36:42].mean(axis=0), points[42:48].mean(axis=0)
    left, right = sorted([tuple(first), tuple(second)])  # image-left eye first
    return (float(left[0]), float(left[1])), (float(right[0]), float(right[1]))


def align_on_eyes(image: Image.Image, left_eye: Point, right_eye: Point, size: int) -> Image.Image:
    """The `size` x `size` face whose eye centres sit on EYE_TEMPLATE (rotation, scale and shift only)."""
    src_left, src_right = complex(*left_eye), complex(*right_eye)
    dst_left = complex(EYE_TEMPLATE[0][0] * size, EYE_TEMPLATE[0][1] * size)
    dst_right = complex(EYE_TEMPLATE[1][0] * size, EYE_TEMPLATE[1][1] * size)
    if abs(src_right - src_left) < 1e-6:
        raise ValueError("the two eye centres coincide")
    # PIL wants the output -> input map: src = a * dst + b with complex a (rotation and scale) and b (shift).
    a = (src_right - src_left) / (dst_right - dst_left)
    b = src_left - a * dst_left
    coefficients = (a.real, -a.imag, b.real, a.imag, a.real, b.imag)
    return image.transform((size, size), Image.Transform.AFFINE, coefficients, resample=Image.Resampling.BILINEAR)


def require_cv2():
    """Import OpenCV, or explain how to get it."""
    try:
        import cv2
    except ImportError:
        raise UserInputError(
            "face detection needs OpenCV's Haar cascades: pip install 'sspa-hf[faces]' (opencv-python-headless<5); "
            "or read an already-cropped tree with faces=cropped"
        ) from None
    if not hasattr(cv2, "CascadeClassifier"):
        raise UserInputError(f"OpenCV {cv2.__version__} has no Haar cascades; install opencv-python-headless<5")
    return cv2


#: Frames are shrunk to at most this side before detection, for speed (boxes are given in the frame's pixels).
MAX_SIDE = 640


def shrunk_grey(image: Image.Image, max_side: int) -> tuple[np.ndarray, float]:
    """The grey image shrunk to at most `max_side`, and the scale applied."""
    grey = image.convert("L")
    scale = min(1.0, max_side / max(grey.size))
    if scale < 1.0:
        grey = grey.resize((round(grey.width * scale), round(grey.height * scale)), Image.Resampling.BILINEAR)
    return np.asarray(grey), scale


def largest_first(boxes: Sequence[Box], scale: float) -> list[Box]:
    """Boxes found on a shrunk image, back in the frame's pixels, largest first (ties: leftmost, topmost)."""
    ordered = sorted(boxes, key=lambda f: (-f[2] * f[3], f[0], f[1]))
    return [(x / scale, y / scale, w / scale, h / scale) for x, y, w, h in ordered]


class FaceDetector(Protocol):
    """What sspa-prepare and inference ask of a detector."""

    def detect_all(self, image: Image.Image) -> list[Box]: ...
    def detect(self, image: Image.Image) -> Box | None: ...
    def detect_eyes(self, face: Image.Image) -> tuple[Point, Point] | None: ...


class _LargestFace:
    """`detect` from a detector's `detect_all`: training keeps one face per frame, the largest."""

    def detect_all(self, image: Image.Image) -> list[Box]:
        raise NotImplementedError

    def detect(self, image: Image.Image) -> Box | None:
        """The largest face box (x, y, w, h) in `image` pixels, or None."""
        found = self.detect_all(image)
        return found[0] if found else None


class HaarFaceDetector(_LargestFace):
    """The largest frontal face (and its eyes) in an image, with OpenCV's bundled Haar cascades."""

    def __init__(self) -> None:
        cv2 = require_cv2()
        self._cv2 = cv2
        root = cv2.data.haarcascades
        self._face = cv2.CascadeClassifier(os.path.join(root, "haarcascade_frontalface_default.xml"))
        self._eyes = cv2.CascadeClassifier(os.path.join(root, "haarcascade_eye.xml"))
        if self._face.empty() or self._eyes.empty():
            raise UserInputError(f"OpenCV's Haar cascade files are missing from {root}")

    def detect_all(self, image: Image.Image) -> list[Box]:
        """Every face box (x, y, w, h) in `image` pixels, largest first (inference classifies each)."""
        grey, scale = shrunk_grey(image, MAX_SIDE)
        grey = self._cv2.equalizeHist(grey)
        min_side = max(20, min(grey.shape) // 10)
        faces = self._face.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
        return largest_first([tuple(int(v) for v in f) for f in faces], scale)

    def detect_eyes(self, face: Image.Image) -> tuple[Point, Point] | None:
        """Eye centres in a face crop (two largest detections in its upper half, image-left first), or None."""
        grey = self._cv2.equalizeHist(np.asarray(face.convert("L")))
        upper = grey[: grey.shape[0] * 6 // 10]
        side = max(8, grey.shape[1] // 8)
        eyes = self._eyes.detectMultiScale(upper, scaleFactor=1.1, minNeighbors=5, minSize=(side, side))
        if len(eyes) < 2:
            return None
        two = sorted(eyes, key=lambda e: e[2] * e[3], reverse=True)[:2]
        centres = sorted((x + w / 2, y + h / 2) for x, y, w, h in two)
        if centres[1][0] - centres[0][0] < grey.shape[1] / 5:
            return None  # both boxes on one eye
        return (float(centres[0][0]), float(centres[0][1])), (float(centres[1][0]), float(centres[1][1]))


class DlibFaceDetector(_LargestFace):
    """Faces from dlib's HOG frontal-face detector (its weights are compiled into the `dlib-bin` wheel).

    dlib's landmark model is not shipped, so the eyes for `--align` come from OpenCV's Haar eye cascade on the crop."""

    upsample = 1  # dlib's pyramid upsampling: finds faces down to about 40 px in a 640 px frame

    def __init__(self) -> None:
        try:
            import dlib
        except ImportError:
            raise UserInputError("the dlib face detector needs dlib: pip install 'sspa-hf[dlib]'") from None
        self._hog = dlib.get_frontal_face_detector()
        self._eyes: HaarFaceDetector | None = None

    def detect_all(self, image: Image.Image) -> list[Box]:
        """Every face box (x, y, w, h) in `image` pixels, largest first (inference classifies each)."""
        grey, scale = shrunk_grey(image, MAX_SIDE)
        found = self._hog(grey, self.upsample)
        return largest_first([(r.left(), r.top(), r.width(), r.height()) for r in found], scale)

    def detect_eyes(self, face: Image.Image) -> tuple[Point, Point] | None:
        """Eye centres in a face crop, from the Haar eye cascade (built on first use: only `--align` needs it)."""
        if self._eyes is None:
            self._eyes = HaarFaceDetector()
        return self._eyes.detect_eyes(face)


@dataclass(frozen=True)
class Detector:
    """One face detector a data spec (`detector=NAME`) or `sspa-predict --detector` can name."""

    name: str
    build: Callable[[], FaceDetector]
    description: str


DETECTORS: dict[str, Detector] = {
    d.name: d
    for d in (
        Detector("haar", HaarFaceDetector, "OpenCV's Haar cascades (the faces extra; the default)"),
        Detector("dlib", DlibFaceDetector, "dlib's HOG detector (the dlib extra): more turned and small faces"),
    )
}
DEFAULT_DETECTOR = "haar"


def check_detector(name: str, where: str) -> str:
    """`name` if it is in DETECTORS, else a one-line error naming `where` it came from, the value and the choices."""
    if name not in DETECTORS:
        raise UserInputError(f"{where}: unknown face detector {name!r}; expected one of {', '.join(DETECTORS)}")
    return name


@cache
def get_detector(name: str = DEFAULT_DETECTOR) -> FaceDetector:
    """One detector of each kind per process (worker processes build their own)."""
    return DETECTORS[check_detector(name, "face detection")].build()
