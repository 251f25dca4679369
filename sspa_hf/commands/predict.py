"""sspa-predict: the top-k expressions of face images, with a saved model and `transformers.pipeline`.

sspa-predict runs/rafdb face.jpg
sspa-predict runs/rafdb faces/ 'more/*.png' --top_k 2 --output preds.csv
"""

from __future__ import annotations

import argparse
import glob
import io
import re
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from ..data.faces import DETECTORS, check_detector, get_detector, require_cv2
from ..data.image_check import check_one
from ..data.images import IMAGE_EXTENSIONS, BadImageError, decode, to_rgb
from ..errors import UserInputError
from . import CommandParser, run_command, snake_case_flags
from .model_io import add_model_options, load_model, resolve_device
from .output_paths import check_output_file, check_output_folder
from .photos import (
    FaceRow,
    VideoWriter,
    annotate,
    classify_frame,
    frame_count,
    preparation_of,
    video_frames,
)
from .prediction_rows import RowWriter

PROG = "sspa-predict"
OUTPUT_FORMATS = (".csv", ".json")
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm"})
_GLOB_CHARS = set("*?[")
_ADDRESS = re.compile(r"\s*<[^>]* at 0x[0-9a-fA-F]+>")  # PIL names a BytesIO by its address: never shown

DESCRIPTION = """\
Predict the facial expression of images with a trained model: runs
pipeline("image-classification", model=MODEL) and reports the top-k classes and their probabilities
(the mean of the model's expert probabilities) for every image.

IMAGES are image files, folders (searched recursively for .jpg, .jpeg, .png, .bmp, .gif, .webp, .tif,
.tiff files) or glob patterns (quote them; ** matches sub-folders). Without --detect_faces each image is
classified whole: give face crops. With --detect_faces every face is found and prepared as the model's training
faces were (the face work recorded in its config), one row per face (a "no face" row when none is found); videos
(.mp4, .avi, .mov, .mkv, .webm) are read frame by frame (every N-th frame with --every N).
Results go to --output (CSV: path,label_1,score_1,...,error; with --detect_faces path,frame,face,x,y,w,h,
label_1,...,error; JSON: a list of {path, predictions, error} or of {path, frame, face, box, predictions, error})
or, without it, to stdout as CSV. Rows are written as they are done: into FILE.partial.csv (or .json), renamed to
FILE.csv once every image is done, so a run stopped early leaves FILE.partial.csv with the rows done so far (and
an older FILE.csv untouched). An image that cannot be read is a row whose error column says why; the others are
still predicted, and the command then ends with exit status 1 (0: every image read; 2: a mistake in the
arguments, refused before any work)."""

EPILOG = f"""\
examples:
  {PROG} runs/rafdb face.jpg
  {PROG} runs/rafdb faces/ 'more/**/*.png' --top_k 2 --output preds.csv
  {PROG} someone/sspa-rafdb photo.png --output preds.json --trust_remote_code
  {PROG} runs/caer_s photo.jpg --detect_faces --annotate annotated/
  {PROG} runs/caer_s clip.mp4 --detect_faces --every 5 --annotate annotated/ --output frames.csv"""


def build_parser() -> CommandParser:
    """The argument parser (also renders --help)."""
    parser = CommandParser(
        prog=PROG, description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", metavar="MODEL", help="model folder or Hub id")
    parser.add_argument("images", metavar="IMAGES", nargs="+", help="image files, folders or glob patterns")
    parser.add_argument(
        "--top_k",
        type=int,
        default=3,
        metavar="K",
        help="classes per image, most probable first; at most the model's class count (default: 3)",
    )
    parser.add_argument("--batch_size", type=int, default=32, metavar="N", help="images per batch (default: 32)")
    parser.add_argument(
        "--output", default=None, metavar="FILE", help="write to FILE.csv or FILE.json (default: CSV on stdout)"
    )
    parser.add_argument(
        "--detect_faces",
        action="store_true",
        help="find every face (with the model's recorded detector; needs the faces extra) and prepare it as the "
        "model's training faces were",
    )
    parser.add_argument(
        "--detector",
        default=None,
        metavar="NAME",
        help=f"with --detect_faces: one of {', '.join(DETECTORS)} instead of the detector the model's training "
        "faces were found with (recorded in the model; the default)",
    )
    parser.add_argument(
        "--annotate",
        default=None,
        metavar="OUT_DIR",
        help="with --detect_faces: write each image (PNG) or video (H.264 .mp4, or VP8 .webm where OpenCV has no "
        "H.264 encoder, as said then) with boxes and labels drawn into OUT_DIR",
    )
    parser.add_argument(
        "--every", type=int, default=1, metavar="N", help="videos: classify every N-th frame (default: 1)"
    )
    add_model_options(parser)
    return parser


def _is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def _images_in(folder: Path) -> list[Path]:
    """Image files under `folder` (recursive, hidden entries skipped), sorted."""
    found = [
        p
        for p in folder.rglob("*")
        if _is_image_file(p) and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    ]
    return sorted(found)


def expand_images(arguments: Sequence[str]) -> list[Path]:
    """Files as given, folders searched recursively, globs expanded; duplicates kept once, in order.

    A missing path, a glob matching no image, or a folder holding none is a user error naming it.
    """
    paths: list[Path] = []
    for text in arguments:
        path = Path(text).expanduser()
        if path.is_file():
            found = [path]
        elif path.is_dir():
            found = _images_in(path)
            if not found:
                raise UserInputError(f"folder {text} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        elif _GLOB_CHARS & set(text):
            found = []
            for match in sorted(glob.glob(str(path), recursive=True)):
                match_path = Path(match)
                found.extend([match_path] if _is_image_file(match_path) else [])
                found.extend(_images_in(match_path) if match_path.is_dir() else [])
            if not found:
                raise UserInputError(f"no image matches {text}")
        else:
            raise UserInputError(f"{text} not found")
        paths.extend(found)
    return list(dict.fromkeys(paths))


class SizeNotes:
    """Images outside the sizes the model reads well, said in one warning line per kind at the end of a run."""

    def __init__(self, input_size: int) -> None:
        self.input_size = input_size
        self.huge: list[str] = []
        self.tiny: list[str] = []

    def lines(self) -> list[str]:
        """One line per kind of note (none when every image had a usual size)."""
        lines = []
        if self.huge:
            limit = (Image.MAX_IMAGE_PIXELS or 0) / 1e6
            lines.append(
                f"{_count(self.huge)} over the {limit:.3g} megapixels PIL decodes without a decompression-bomb "
                f"warning, e.g. {self.huge[0]}: read anyway (it costs memory; shrinking such images first is faster)"
            )
        if self.tiny:
            side = self.input_size
            lines.append(
                f"{_count(self.tiny)} far smaller than the model's {side}x{side} input, e.g. {self.tiny[0]}: enlarged "
                "to it and classified, but the predictions of so few pixels mean little"
            )
        return lines


def _count(names: list[str]) -> str:
    return "1 image is" if len(names) == 1 else f"{len(names)} images are"


def _pixel_size(data: bytes) -> tuple[int, int] | None:
    """The width and height an image file's header gives, without PIL's decompression-bomb check (None if none)."""
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception:  # an unreadable file: the full decode below says why
        return None
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def read_image(path: Path, notes: SizeNotes | None = None) -> Image.Image:
    """A fully decoded PIL image, upright (the pipeline makes it RGB). An unreadable file raises BadImageError with
    the reason in words; an image above twice PIL's pixel limit is refused as one, a very large or a very small one
    is noted in `notes`."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadImageError(str(path), exc.strerror or str(exc)) from None
    size = _pixel_size(data)
    limit = Image.MAX_IMAGE_PIXELS
    if size is not None and limit and size[0] * size[1] > 2 * limit:
        raise BadImageError(
            str(path),
            f"{size[0]}x{size[1]} pixels ({size[0] * size[1] / 1e6:.3g} megapixels), above the {2 * limit / 1e6:.3g} "
            "megapixels PIL decodes (its guard against decompression bombs): shrink it first",
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # said once, in words, by `notes`
            image = decode(data, str(path))
    except BadImageError as exc:
        reason = check_one({"bytes": data, "path": None}, str(path)) or _ADDRESS.sub("", exc.reason).strip()
        raise BadImageError(str(path), reason or "not readable") from None
    if notes is not None:
        if limit and image.width * image.height > limit:
            notes.huge.append(f"{path} ({image.width}x{image.height})")
        if min(image.size) * 4 < notes.input_size:
            notes.tiny.append(f"{path} ({image.width}x{image.height})")
    return image


def _chunks(items: Sequence[Path], size: int) -> Iterator[Sequence[Path]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _predictions(output: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"label": row["label"], "score": float(row["score"])} for row in output]


def predict_images(
    classifier: Any, paths: Sequence[Path], top_k: int, batch_size: int, writer: RowWriter, notes: SizeNotes
) -> list[FaceRow]:
    """Classify every image whole, a few batches at a time, writing each chunk's rows in order as it is done; an
    unreadable image is a row with its error. Returns the error rows."""
    from tqdm.auto import tqdm

    failed: list[FaceRow] = []
    progress = tqdm(total=len(paths), desc="predicting", unit="image", disable=None, leave=False)
    for chunk in _chunks(paths, batch_size * 4):
        rows: list[FaceRow] = []
        images = []
        for path in chunk:
            try:
                images.append(read_image(path, notes))
                rows.append(FaceRow(str(path), None, None, None))
            except BadImageError as exc:
                rows.append(FaceRow(str(path), None, None, None, error=exc.reason))
                failed.append(rows[-1])
        outputs = iter(classifier(images, top_k=top_k, batch_size=batch_size) if images else [])
        for row in rows:
            if row.error is None:
                row.predictions = _predictions(next(outputs))
        writer.write(rows)
        progress.update(len(chunk))
    progress.close()
    return failed


def predict_faces(
    classifier: Any,
    paths: Sequence[Path],
    preparation: dict[str, Any],
    top_k: int,
    writer: RowWriter,
    every: int = 1,
    annotate_dir: Path | None = None,
    notes: SizeNotes | None = None,
) -> list[FaceRow]:
    """One row per face (or per image/frame without one) of every image and video, written as each is done;
    annotated copies if asked. An unreadable image or video is a row with its error; returns the error rows."""
    from tqdm.auto import tqdm

    failed: list[FaceRow] = []
    faces = 0
    if annotate_dir is not None:
        annotate_dir.mkdir(parents=True, exist_ok=True)
    for path in paths:
        if path.suffix.lower() in VIDEO_EXTENSIONS:
            failed += _predict_video(classifier, path, preparation, top_k, every, annotate_dir, writer)
            continue
        try:
            image = to_rgb(read_image(path, notes))
        except BadImageError as exc:
            failed.append(FaceRow(str(path), None, None, None, error=exc.reason))
            writer.write(failed[-1:])
            continue
        found = classify_frame(classifier, str(path), image, preparation, top_k)
        if annotate_dir is not None:
            annotate(image, found).save(annotate_dir / f"{path.stem}.annotated.png")
        writer.write(found)
        faces += sum(r.face is not None for r in found)
    if not any(path.suffix.lower() in VIDEO_EXTENSIONS for path in paths):
        tqdm.write(f"{len(paths)} images, {faces} faces", file=sys.stderr)
    return failed


def _predict_video(
    classifier: Any,
    path: Path,
    preparation: dict[str, Any],
    top_k: int,
    every: int,
    annotate_dir: Path | None,
    writer: RowWriter,
) -> list[FaceRow]:
    """Rows for every `every`-th frame of a video, written frame by frame, with a frames/s progress bar and an
    annotated video if asked; a video that cannot be read (or stops being readable) ends with an error row."""
    from tqdm.auto import tqdm

    total = frame_count(str(path))
    progress = tqdm(total=-(-total // every) if total else None, desc=path.name, unit="frame", disable=None)
    video = None
    try:
        for index, frame, fps in video_frames(str(path), every):
            found = classify_frame(classifier, str(path), frame, preparation, top_k, frame=index)
            writer.write(found)
            if annotate_dir is not None:
                video = video or VideoWriter(annotate_dir / f"{path.stem}.annotated", fps / every)
                video.write(annotate(frame, found))
            progress.update(1)
    except OSError as exc:
        error = FaceRow(str(path), None, None, None, error=str(exc))
        writer.write([error])
        return [error]
    finally:
        progress.close()
        if video is not None:
            video.close()
            if video.note:
                tqdm.write(f"{PROG}: {video.note}", file=sys.stderr)
    return []


def check_arguments(args: argparse.Namespace) -> tuple[Path | None, Path | None]:
    """Refuse, before any work, a bad option or a place the results cannot be written; returns (output, annotate)."""
    if args.top_k < 1:
        raise UserInputError(f"--top_k must be >= 1, got {args.top_k}")
    if args.batch_size < 1:
        raise UserInputError(f"--batch_size must be >= 1, got {args.batch_size}")
    output = Path(args.output).expanduser() if args.output else None
    if output is not None:
        if output.suffix.lower() not in OUTPUT_FORMATS:
            raise UserInputError(f"--output {args.output}: the file name must end with .csv or .json")
        check_output_file(output, "--output")
    if args.every < 1:
        raise UserInputError(f"--every must be >= 1, got {args.every}")
    if args.annotate and not args.detect_faces:
        raise UserInputError("--annotate needs --detect_faces")
    annotate_dir = Path(args.annotate).expanduser() if args.annotate else None
    if annotate_dir is not None:
        check_output_folder(annotate_dir, "--annotate")
    if args.detector is not None:
        if not args.detect_faces:
            raise UserInputError("--detector needs --detect_faces")
        check_detector(args.detector, "--detector")
    return output, annotate_dir


def run(args: argparse.Namespace) -> int:
    """Check the arguments and the output paths, expand the images, load the model, then classify the images,
    writing the rows as they come; 1 if some image could not be read (its row says why)."""
    output, annotate_dir = check_arguments(args)
    paths = expand_images(args.images)
    videos = [path for path in paths if path.suffix.lower() in VIDEO_EXTENSIONS]
    if videos and not args.detect_faces:
        raise UserInputError(f"{videos[0]} is a video: videos are read with --detect_faces")
    if args.detect_faces:
        require_cv2()
    device = resolve_device(args.device)
    model, processor = load_model(args.model, args.trust_remote_code, PROG)
    from transformers import pipeline  # both import transformers' model stack: after the checks above

    from ..model.pipeline_sspa import SSPAImageClassificationPipeline

    top_k = min(args.top_k, model.config.num_labels)
    if top_k < args.top_k:
        known = f"the model knows {top_k} classes; every row ranks all {top_k}"
        print(f"{PROG}: --top_k {args.top_k}: {known}", file=sys.stderr)
    classifier = pipeline(
        "image-classification",
        model=model,
        image_processor=processor,
        device=device,
        pipeline_class=SSPAImageClassificationPipeline,  # the one the model folder names: to_rgb, as in training
    )
    if args.detect_faces:
        preparation = preparation_of(model.config, args.detector)
        get_detector(preparation["detector"])  # a missing detector package fails here, before any image is read
    notes = SizeNotes(0 if args.detect_faces else int(model.config.image_size))  # faces: no tiny-image note
    writer = RowWriter(output, top_k, faces=args.detect_faces)
    try:
        if args.detect_faces:
            failed = predict_faces(classifier, paths, preparation, top_k, writer, args.every, annotate_dir, notes)
        else:
            failed = predict_images(classifier, paths, top_k, args.batch_size, writer, notes)
    except BaseException as exc:
        kept = writer.stop()
        if kept:
            print(f"{PROG}: {kept}", file=sys.stderr)
        if isinstance(exc, OSError):  # e.g. the disk filled up: one line, what was kept said above
            raise UserInputError(f"writing the results failed: {exc.strerror or exc}") from None
        raise
    writer.finish()
    for line in notes.lines():
        print(f"{PROG}: warning: {line}", file=sys.stderr)
    if output is not None:
        print(f"wrote {writer.rows} prediction rows to {output}", file=sys.stderr)
    if failed:
        first = failed[0]
        print(
            f"{PROG}: {len(failed)} of {len(paths)} {'files' if videos else 'images'} could not be read, e.g. "
            f"{first.image} ({first.error}); their rows carry the error",
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run sspa-predict; returns the exit status (2 for bad input, with a one-line message)."""
    args = build_parser().parse_args(snake_case_flags(argv))
    return run_command(PROG, lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
