"""`sspa-export-onnx MODEL OUT.onnx`: a saved model as one ONNX file (pixel_values in, the pipeline's logits out)."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from ..errors import UserInputError
from . import CommandParser, run_command, snake_case_flags
from .model_io import load_model
from .output_paths import check_output_file

PROG = "sspa-export-onnx"

DESCRIPTION = """\
Export a trained model to ONNX: input `pixel_values` (batch, 3, S, S), float32, as the saved image processor
makes them (resize to S x S, RGB, rescale to [0, 1], ImageNet mean/std); output `logits` (batch, classes), whose
softmax is the score pipeline("image-classification") reports. The batch axis is dynamic. Needs the `onnx` extra
(pip install 'sspa-hf[onnx]'); with --check the file is run with onnxruntime against PyTorch on batches of 1 and 8."""


def build_parser() -> CommandParser:
    """The argument parser (also renders --help)."""
    parser = CommandParser(prog=PROG, description=DESCRIPTION)
    parser.add_argument("model", metavar="MODEL", help="model folder (or Hub id)")
    parser.add_argument("output", metavar="OUT.onnx", help="the ONNX file to write")
    parser.add_argument(
        "--check", action="store_true", help="compare onnxruntime with PyTorch on random batches of 1 and 8"
    )
    parser.add_argument(
        "--trust_remote_code", action="store_true", help="load the modelling code saved in the model folder"
    )
    return parser


def run(args: argparse.Namespace) -> int:
    """Check the arguments, export, optionally check parity, say what was written."""
    output = Path(args.output).expanduser()
    if output.suffix.lower() != ".onnx":
        raise UserInputError(f"{args.output}: the output file name must end with .onnx")
    check_output_file(output, "OUT.onnx")
    if importlib.util.find_spec("onnx") is None:  # the exporter needs it; found without importing it
        raise UserInputError("ONNX export needs the onnx package: pip install 'sspa-hf[onnx]'")
    model, _ = load_model(args.model, args.trust_remote_code, PROG)
    from ..model.onnx_export import export_onnx, parity

    export_onnx(model, output)
    side = model.config.image_size
    print(f"{PROG}: wrote {output} (pixel_values (batch, 3, {side}, {side}) -> logits)")
    if args.check:
        for batch in (1, 8):
            print(f"{PROG}: batch {batch}: max |p_onnx - p_torch| = {parity(model, output, batch):.2e}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run sspa-export-onnx; returns the exit status (2 for bad input, with a one-line message)."""
    return run_command(PROG, lambda: run(build_parser().parse_args(snake_case_flags(argv))))


if __name__ == "__main__":
    sys.exit(main())
