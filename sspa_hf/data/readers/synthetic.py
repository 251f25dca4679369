"""The built-in generated faces (`synthetic:?role=auxiliary&n=800`), read through the spec grammar."""

from __future__ import annotations

from pathlib import Path

from ...errors import UserInputError
from .. import synthetic
from ..schema import Options, RawSource, ReadContext


def read_synthetic(path: Path, options: Options, ctx: ReadContext) -> RawSource:
    """Generate a split set. Options: `role` (target|auxiliary), `n`, `n_test`, `image_size`, `seed`."""
    role = options.text("role", "target")
    n = options.integer("n", None, minimum=1)
    image_size = options.integer("image_size", 48, minimum=8)
    seed = options.integer("seed", 0, minimum=0)
    n_test = options.integer("n_test", None, minimum=1)
    options.done()
    if options.spec.path:
        raise UserInputError(
            f"dataset spec {options.spec.text!r}: synthetic takes no path; write synthetic:?role=...&n=..."
        )
    splits = synthetic.load_synthetic(role=role, n=n, image_size=image_size, seed=seed, n_test=n_test)
    return RawSource(name="synthetic", splits=splits, content_key=options.spec.canonical())
