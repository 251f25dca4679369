"""`sspa-prepare SPEC OUTPUT_DIR`: turn a raw dataset into a cached, ready `datasets` folder, once."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import datasets

from ..data import FORMATS, PrepareOptions, parse_spec, prepare_source
from ..data.prepare import NO_FACE_REPORT
from ..data.saved import MANIFEST
from ..errors import UserInputError
from ..run.folder import BAD_IMAGES_REPORT
from . import CommandParser, run_command, snake_case_flags
from .output_paths import check_output_folder

PROG = "sspa-prepare"

DESCRIPTION = """\
Turn a raw facial-expression dataset into a ready `datasets` folder (save_to_disk): labels mapped onto
anger, disgust, fear, happiness, neutral, sadness, surprise; faces cropped (AffectNet boxes), detected
(CAER-S) or aligned (--align) and resized once, in parallel processes. Train on OUTPUT_DIR afterwards
(give it as the dataset spec). Re-running on an unchanged source with the same options reuses OUTPUT_DIR.

SPEC is FORMAT:PATH[?key=value&...]. Formats:
""" + "\n".join(f"  {name:16s} {fmt.description}" for name, fmt in FORMATS.items())

EPILOG = f"""\
examples:
  {PROG} rafdb:~/data/RAF-DB/basic prepared/rafdb --image_size 112
  {PROG} affectnet:~/data/AffectNet prepared/affectnet --align --num_proc 8
  {PROG} caer_s:~/data/CAER-S prepared/caer_s          (needs: pip install 'sspa-hf[faces]')
  {PROG} 'ferplus:~/data/fer2013?label=ferplus&rule=majority' prepared/ferplus --image_size 48

OUTPUT_DIR holds the DatasetDict, {MANIFEST} (source fingerprint, options, counts), and
{BAD_IMAGES_REPORT} / {NO_FACE_REPORT} when images were left out. See docs/datasets.md."""


def build_parser() -> CommandParser:
    """The argument parser (also used to render --help)."""
    parser = CommandParser(
        prog=PROG, description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("spec", metavar="SPEC", help="the raw dataset, FORMAT:PATH[?key=value&...]")
    parser.add_argument("output_dir", metavar="OUTPUT_DIR", help="folder to write (or reuse) the prepared dataset in")
    parser.add_argument(
        "--image_size",
        type=int,
        default=None,
        metavar="N",
        help="store faces at most N x N pixels; smaller faces are kept as they are, 0 keeps every crop's size "
        "(default: the spec's image_size option, else 224)",
    )
    parser.add_argument(
        "--num_proc", type=int, default=os.cpu_count() or 1, metavar="N", help="worker processes (default: all CPUs)"
    )
    parser.add_argument(
        "--skip_bad_images",
        action="store_true",
        help=f"leave out unreadable, truncated or missing images and list them in OUTPUT_DIR/{BAD_IMAGES_REPORT} "
        "(default: stop with an error naming the file)",
    )
    parser.add_argument(
        "--align",
        action="store_true",
        help="align faces on their eye centres by a similarity transform (affectnet: from the 68 landmarks; "
        "caer_s: from detected eyes)",
    )
    parser.add_argument(
        "--format",
        choices=("auto", "png", "jpeg"),
        default="auto",
        help="storage format: auto = PNG when the source pixels are lossless (CSV, PNG), JPEG when they are JPEG",
    )
    parser.add_argument("--jpeg_quality", type=int, default=95, metavar="Q", help="JPEG quality (default 95)")
    parser.add_argument("--force", action="store_true", help="rebuild even if OUTPUT_DIR is up to date")
    parser.add_argument("-q", "--quiet", action="store_true", help="only print errors and the result line")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run sspa-prepare; returns the exit status (2 for bad input, with a one-line message)."""
    parser = build_parser()
    try:
        args = parser.parse_args(snake_case_flags(argv))
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 2
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format=f"{PROG}: %(message)s")
    bars = datasets.is_progress_bar_enabled()
    if args.quiet:
        datasets.disable_progress_bars()
    try:
        return run_command(PROG, lambda: _run(args))
    finally:
        if bars:
            datasets.enable_progress_bars()


def _run(args: argparse.Namespace) -> int:
    spec = parse_spec(args.spec)
    if args.align:
        if spec.format is None or not FORMATS[spec.format].can_align:
            raise UserInputError(
                f"--align needs facial landmarks (affectnet) or face detection (caer_s), not {spec.text}"
            )
        spec = spec.with_options(align="1")
    if args.num_proc < 1:
        raise UserInputError(f"--num_proc {args.num_proc}: expected at least 1")
    if not 1 <= args.jpeg_quality <= 100:
        raise UserInputError(f"--jpeg_quality {args.jpeg_quality}: expected 1..100")
    image_size = args.image_size
    if image_size is None:
        image_size = int(spec.options.get("image_size", 224)) if spec.options.get("image_size", "").isdigit() else 224
    if image_size < 0:
        raise UserInputError(f"--image_size {image_size}: expected 0 (keep) or a positive size")
    options = PrepareOptions(
        image_size=image_size,
        image_format=args.format,
        jpeg_quality=args.jpeg_quality,
        skip_bad_images=args.skip_bad_images,
        num_proc=args.num_proc,
    )
    output_dir = os.path.expanduser(args.output_dir)
    check_output_folder(Path(output_dir), "OUTPUT_DIR")  # and its folder, where the partial copy is written:
    check_output_folder(Path(output_dir).absolute().parent, f"OUTPUT_DIR {output_dir}: its folder")
    if args.force:
        _forget(output_dir)
    result = prepare_source(spec, output_dir, options)
    manifest = result.manifest
    rows = ", ".join(f"{name} {info['rows']}" for name, info in manifest["splits"].items())
    if result.reused:
        print(
            f"{PROG}: {output_dir} is up to date with {spec.text} "
            f"(fingerprint {manifest['fingerprint'][:12]}); reusing it"
        )
    else:
        print(f"{PROG}: wrote {output_dir} ({rows})")
    if manifest.get("bad_images"):
        print(f"{PROG}: {manifest['bad_images']} bad image(s) left out, listed in {output_dir}/{BAD_IMAGES_REPORT}")
    if manifest.get("no_face"):
        print(
            f"{PROG}: {manifest['no_face']} frame(s) without a detected face left out, listed in "
            f"{output_dir}/{NO_FACE_REPORT}"
        )
    return 0


def _forget(output_dir: str) -> None:
    """Make an existing manifest stale so the folder is rebuilt (only folders written by sspa-prepare)."""
    manifest = os.path.join(output_dir, MANIFEST)
    if os.path.isfile(manifest):
        os.remove(manifest)
        with open(manifest, "w") as handle:
            handle.write("{}\n")


if __name__ == "__main__":
    sys.exit(main())
