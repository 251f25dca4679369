"""sspa-predict: the top-k expressions of face images, with a saved model and `transformers.pipeline`.

sspa-predict runs/rafdb face.jpg
sspa-predict runs/rafdb faces/ 'more/*.png' --top-k 2 --output preds.csv
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

from ..data.images import BadImageError, decode, to_rgb
from ..data.schema import IMAGE_EXTENSIONS
from ..errors import UserInputError
from . import run_command
from .model_io import add_model_options, load_model, resolve_device

PROG = "sspa-predict"
OUTPUT_FORMATS = (".csv", ".json")
_GLOB_CHARS = set("*?[")

DESCRIPTION = """\
Predict the facial expression of images with a trained model: runs
pipeline("image-classification", model=MODEL) and reports the top-k classes and their probabilities
(the mean of the model's expert probabilities) for every image.

IMAGES are image files, folders (searched recursively for .jpg, .jpeg, .png, .bmp, .gif, .webp, .tif,
.tiff files) or glob patterns (quote them; ** matches sub-folders). Images are not cropped: give face crops.
Results go to --output (CSV: path,label_1,score_1,...; JSON: a list of {path, predictions}) or, without it,
to stdout as CSV."""

EPILOG = f"""\
examples:
  {PROG} runs/rafdb face.jpg
  {PROG} runs/rafdb faces/ 'more/**/*.png' --top-k 2 --output preds.csv
  {PROG} someone/sspa-rafdb photo.png --output preds.json --trust-remote-code"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also renders --help)."""
    parser = argparse.ArgumentParser(
        prog=PROG, description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", metavar="MODEL", help="model folder or Hub id")
    parser.add_argument("images", metavar="IMAGES", nargs="+", help="image files, folders or glob patterns")
    parser.add_argument(
        "--top-k",
        type=int,
        default=3,
        metavar="K",
        help="classes per image, most probable first; at most the model's class count (default: 3)",
    )
    parser.add_argument("--batch-size", type=int, default=32, metavar="N", help="images per batch (default: 32)")
    parser.add_argument(
        "--output", default=None, metavar="FILE", help="write to FILE.csv or FILE.json (default: CSV on stdout)"
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
    """A fully decoded RGB PIL image; an unreadable file is a user error naming it."""
    try:
        return to_rgb(decode(path.read_bytes(), str(path)))
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


def run(args: argparse.Namespace) -> int:
    """Check the arguments, expand the images, classify them, write the results."""
    from transformers import pipeline

    if args.top_k < 1:
        raise UserInputError(f"--top-k must be >= 1, got {args.top_k}")
    if args.batch_size < 1:
        raise UserInputError(f"--batch-size must be >= 1, got {args.batch_size}")
    output = Path(args.output) if args.output else None
    if output is not None and output.suffix.lower() not in OUTPUT_FORMATS:
        raise UserInputError(f"--output {args.output}: the file name must end with .csv or .json")
    paths = expand_images(args.images)
    device = resolve_device(args.device)
    model, processor = load_model(args.model, args.trust_remote_code)
    top_k = min(args.top_k, model.config.num_labels)
    classifier = pipeline("image-classification", model=model, image_processor=processor, device=device)
    results = predict_images(classifier, paths, top_k, args.batch_size)
    text = to_json(results) if output is not None and output.suffix.lower() == ".json" else to_csv(results, top_k)
    if output is None:
        sys.stdout.write(text)
        return 0
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    print(f"wrote predictions for {len(results)} images to {output}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run sspa-predict; returns the exit status (2 for bad input, with a one-line message)."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    return run_command(PROG, lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
