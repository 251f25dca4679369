"""sspa-predict: the top-k expressions of face images, with a saved model and `transformers.pipeline`.

sspa-predict runs/rafdb face.jpg
sspa-predict runs/rafdb faces/ 'more/*.png' --top_k 2 --output preds.csv
"""

from __future__ import annotations

import argparse
import csv
import glob
import io
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..data.faces import DETECTORS, check_detector, get_detector, require_cv2
from ..data.images import IMAGE_EXTENSIONS, BadImageError, decode, to_rgb
from ..errors import UserInputError
from ..face_inference import (
    FaceRow,
    VideoWriter,
    annotate,
    classify_frame,
    frame_count,
    preparation_of,
    video_frames,
)
from . import run_command, snake_case_flags
from .model_io import add_model_options, load_model, resolve_device

PROG = "sspa-predict"
OUTPUT_FORMATS = (".csv", ".json")
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm"})
_GLOB_CHARS = set("*?[")

DESCRIPTION = """\
Predict the facial expression of images with a trained model: runs
pipeline("image-classification", model=MODEL) and reports the top-k classes and their probabilities
(the mean of the model's expert probabilities) for every image.

IMAGES are image files, folders (searched recursively for .jpg, .jpeg, .png, .bmp, .gif, .webp, .tif,
.tiff files) or glob patterns (quote them; ** matches sub-folders). Without --detect_faces each image is
classified whole: give face crops. With --detect_faces every face is found and prepared as the model's training
faces were (the face work recorded in its config), one row per face (a "no face" row when none is found); videos
(.mp4, .avi, .mov, .mkv, .webm) are read frame by frame (every N-th frame with --every N).
Results go to --output (CSV: path,label_1,score_1,...; with --detect_faces path,frame,face,x,y,w,h,label_1,...;
JSON: a list of {path, predictions} or of {path, frame, face, box, predictions}) or, without it, to stdout as CSV."""

EPILOG = f"""\
examples:
  {PROG} runs/rafdb face.jpg
  {PROG} runs/rafdb faces/ 'more/**/*.png' --top_k 2 --output preds.csv
  {PROG} someone/sspa-rafdb photo.png --output preds.json --trust_remote_code
  {PROG} runs/caer_s photo.jpg --detect_faces --annotate annotated/
  {PROG} runs/caer_s clip.mp4 --detect_faces --every 5 --annotate annotated/ --output frames.csv"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also renders --help)."""
    parser = argparse.ArgumentParser(
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
        help="with --detect_faces: write each image (or video) with boxes and labels drawn into OUT_DIR",
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


def read_image(path: Path) -> Any:
    """A fully decoded PIL image, upright (the pipeline makes it RGB); an unreadable file is a user error naming it."""
    try:
        return decode(path.read_bytes(), str(path))
    except BadImageError as exc:
        raise UserInputError(str(exc)) from None
    except OSError as exc:
        raise UserInputError(f"cannot read image {path}: {exc.strerror or exc}") from None


def _chunks(items: Sequence[Path], size: int) -> Iterator[Sequence[Path]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def predict_images(
    classifier: Any, paths: Sequence[Path], top_k: int, batch_size: int
) -> list[tuple[str, list[dict[str, Any]]]]:
    """(path, [{label, score}, ... top_k, most probable first]) for every image, decoding a few batches at a time."""
    from tqdm.auto import tqdm

    results: list[tuple[str, list[dict[str, Any]]]] = []
    progress = tqdm(total=len(paths), desc="predicting", unit="image", disable=None, leave=False)
    for chunk in _chunks(paths, batch_size * 4):
        images = [read_image(path) for path in chunk]
        outputs = classifier(images, top_k=top_k, batch_size=batch_size)
        for path, output in zip(chunk, outputs, strict=True):
            results.append((str(path), [{"label": row["label"], "score": float(row["score"])} for row in output]))
        progress.update(len(chunk))
    progress.close()
    return results


def to_csv(results: Sequence[tuple[str, list[dict[str, Any]]]], top_k: int) -> str:
    """CSV text: path,label_1,score_1,...,label_k,score_k (one row per image)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path"] + [f"{kind}_{i}" for i in range(1, top_k + 1) for kind in ("label", "score")])
    for path, predictions in results:
        writer.writerow([path] + [value for p in predictions for value in (p["label"], repr(p["score"]))])
    return buffer.getvalue()


def to_json(results: Sequence[tuple[str, list[dict[str, Any]]]]) -> str:
    """JSON text: a list of {"path": ..., "predictions": [{"label": ..., "score": ...}, ...]}."""
    return json.dumps([{"path": path, "predictions": preds} for path, preds in results], indent=2) + "\n"


def predict_faces(
    classifier: Any,
    paths: Sequence[Path],
    preparation: dict[str, Any],
    top_k: int,
    every: int = 1,
    annotate_dir: Path | None = None,
) -> list[FaceRow]:
    """One row per face (or per image/frame without one) of every image and video; annotated copies if asked."""
    from tqdm.auto import tqdm

    rows: list[FaceRow] = []
    if annotate_dir is not None:
        annotate_dir.mkdir(parents=True, exist_ok=True)
    for path in paths:
        if path.suffix.lower() in VIDEO_EXTENSIONS:
            rows.extend(_predict_video(classifier, path, preparation, top_k, every, annotate_dir))
            continue
        image = to_rgb(read_image(path))
        found = classify_frame(classifier, str(path), image, preparation, top_k)
        if annotate_dir is not None:
            annotate(image, found).save(annotate_dir / f"{path.stem}.annotated.png")
        rows.extend(found)
    if not any(path.suffix.lower() in VIDEO_EXTENSIONS for path in paths):
        tqdm.write(f"{len(paths)} images, {sum(r.face is not None for r in rows)} faces", file=sys.stderr)
    return rows


def _predict_video(
    classifier: Any, path: Path, preparation: dict[str, Any], top_k: int, every: int, annotate_dir: Path | None
) -> list[FaceRow]:
    """Rows for every `every`-th frame of a video, with a frames/s progress bar and an annotated mp4 if asked."""
    from tqdm.auto import tqdm

    total = frame_count(str(path))
    progress = tqdm(total=-(-total // every) if total else None, desc=path.name, unit="frame", disable=None)
    writer = None
    rows: list[FaceRow] = []
    try:
        for index, frame, fps in video_frames(str(path), every):
            found = classify_frame(classifier, str(path), frame, preparation, top_k, frame=index)
            rows.extend(found)
            if annotate_dir is not None:
                writer = writer or VideoWriter(str(annotate_dir / f"{path.stem}.annotated.mp4"), fps / every)
                writer.write(annotate(frame, found))
            progress.update(1)
    except OSError as exc:
        raise UserInputError(str(exc)) from None
    finally:
        progress.close()
        if writer is not None:
            writer.close()
    return rows


def face_rows_csv(rows: Sequence[FaceRow], top_k: int) -> str:
    """CSV text: path,frame,face,x,y,w,h,label_1,score_1,... (frame empty for photos; face empty: no face)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    labels = [f"{kind}_{i}" for i in range(1, top_k + 1) for kind in ("label", "score")]
    writer.writerow(["path", "frame", "face", "x", "y", "w", "h", *labels])
    for row in rows:
        box = list(row.box) if row.box else ["", "", "", ""]
        face = "" if row.face is None else row.face
        frame = "" if row.frame is None else row.frame
        scores = [value for p in row.predictions for value in (p["label"], repr(p["score"]))]
        writer.writerow([row.image, frame, face, *box, *scores])
    return buffer.getvalue()


def face_rows_json(rows: Sequence[FaceRow]) -> str:
    """JSON text: a list of {path, frame, face, box: [x, y, w, h], predictions} (face and box null: no face)."""
    items = [
        {"path": r.image, "frame": r.frame, "face": r.face, "box": r.box, "predictions": r.predictions} for r in rows
    ]
    return json.dumps(items, indent=2) + "\n"


def run(args: argparse.Namespace) -> int:
    """Check the arguments, expand the images, classify them, write the results."""

    if args.top_k < 1:
        raise UserInputError(f"--top_k must be >= 1, got {args.top_k}")
    if args.batch_size < 1:
        raise UserInputError(f"--batch_size must be >= 1, got {args.batch_size}")
    output = Path(args.output) if args.output else None
    if output is not None and output.suffix.lower() not in OUTPUT_FORMATS:
        raise UserInputError(f"--output {args.output}: the file name must end with .csv or .json")
    if args.every < 1:
        raise UserInputError(f"--every must be >= 1, got {args.every}")
    if args.annotate and not args.detect_faces:
        raise UserInputError("--annotate needs --detect_faces")
    if args.detector is not None:
        if not args.detect_faces:
            raise UserInputError("--detector needs --detect_faces")
        check_detector(args.detector, "--detector")
    paths = expand_images(args.images)
    videos = [path for path in paths if path.suffix.lower() in VIDEO_EXTENSIONS]
    if videos and not args.detect_faces:
        raise UserInputError(f"{videos[0]} is a video: videos are read with --detect_faces")
    if args.detect_faces:
        require_cv2()
    device = resolve_device(args.device)
    model, processor = load_model(args.model, args.trust_remote_code)
    from transformers import pipeline  # both import transformers' model stack: after the checks above

    from ..pipeline_sspa import SSPAImageClassificationPipeline

    top_k = min(args.top_k, model.config.num_labels)
    classifier = pipeline(
        "image-classification",
        model=model,
        image_processor=processor,
        device=device,
        pipeline_class=SSPAImageClassificationPipeline,  # the one the model folder names: to_rgb, as in training
    )
    as_json = output is not None and output.suffix.lower() == ".json"
    if args.detect_faces:
        annotate_dir = Path(args.annotate) if args.annotate else None
        preparation = preparation_of(model.config, args.detector)
        get_detector(preparation["detector"])  # a missing detector package fails here, before any image is read
        rows = predict_faces(classifier, paths, preparation, top_k, args.every, annotate_dir)
        results: Sequence[Any] = rows
        text = face_rows_json(rows) if as_json else face_rows_csv(rows, top_k)
    else:
        results = predict_images(classifier, paths, top_k, args.batch_size)
        text = to_json(results) if as_json else to_csv(results, top_k)
    if output is None:
        sys.stdout.write(text)
        return 0
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    print(f"wrote {len(results)} prediction rows to {output}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run sspa-predict; returns the exit status (2 for bad input, with a one-line message)."""
    args = build_parser().parse_args(snake_case_flags(argv))
    return run_command(PROG, lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
