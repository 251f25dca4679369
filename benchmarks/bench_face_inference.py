"""Issue 20 figures: faces found per detector on 640x480 frames with real faces pasted at known places, time per
frame, and ONNX Runtime against PyTorch (parity of the probabilities, images/s) for ResNet-18 and ARM, k = 3.

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/bench_face_inference.py

The face is scikit-image's bundled astronaut (tests/test_face_inference.py). Both detectors of
`sspa_hf.data.faces.DETECTORS` are measured through `get_detector(name).detect_all`, as sspa-prepare and
sspa-predict use them (dlib: pip install 'sspa-hf[dlib]'; a row says when it is missing). One thread everywhere
(cv2.setNumThreads(1), torch.set_num_threads(1), onnxruntime intra_op 1).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_face_inference import astronaut_face, iou  # noqa: E402

from sspa_hf import SSPAConfig, SSPAForImageClassification, make_image_processor  # noqa: E402
from sspa_hf.data.faces import get_detector  # noqa: E402
from sspa_hf.errors import UserInputError  # noqa: E402
from sspa_hf.model.onnx_export import export_onnx, onnx_probabilities  # noqa: E402

SIDES = (64, 96, 128, 192, 256)  # pasted crop side; the face is its middle half (32 to 128 px)
ANGLES = (-30, -15, 0, 15, 30)


def frames() -> list[tuple[Image.Image, tuple[float, float, float, float]]]:
    """25 frames (5 face sizes x 5 in-plane rotations), one face each at a seeded position, and its box."""
    rng = np.random.default_rng(0)
    face, out = astronaut_face(), []
    for side in SIDES:
        for angle in ANGLES:
            frame = Image.fromarray(rng.integers(60, 200, (480, 640, 3), dtype=np.uint8))
            x, y = int(rng.integers(0, 640 - side)), int(rng.integers(0, 480 - side))
            frame.paste(face.resize((side, side)).rotate(angle, resample=Image.Resampling.BILINEAR), (x, y))
            out.append((frame, (x + side / 4, y + side / 4, side / 2, side / 2)))
    return out


def measure_detector(name: str, detect, data) -> None:
    found = {0.5: 0, 0.3: 0}
    false, seconds = 0, []
    for frame, known in data:
        start = time.perf_counter()
        boxes = detect(frame)
        seconds.append(time.perf_counter() - start)
        overlaps = [iou(known, box) for box in boxes]
        for threshold in found:
            found[threshold] += any(o >= threshold for o in overlaps)
        false += sum(o < 0.3 for o in overlaps)
    print(
        f"| {name} | {found[0.5]}/{len(data)} | {found[0.3]}/{len(data)} | {false} | "
        f"{1000 * np.median(seconds):.1f} ms |"
    )


def measure_onnx(backbone: str) -> None:
    torch.manual_seed(0)
    model = SSPAForImageClassification(SSPAConfig(backbone=backbone, image_size=224, num_experts=3)).eval()
    processor = make_image_processor(224)
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, Path(tmp) / "model.onnx")
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        faces = [astronaut_face().rotate(a) for a in np.linspace(-20, 20, 8)]
        pixels = processor(faces, return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            expected = model(pixel_values=pixels).logits.softmax(-1).numpy()
        diffs = [np.abs(onnx_probabilities(path, pixels.numpy()) - expected).max()]
        diffs += [np.abs(onnx_probabilities(path, pixels[i : i + 1].numpy()) - expected[i]).max() for i in range(8)]
        rates = {}
        for batch in (1, 8):
            x = pixels[:batch]
            with torch.no_grad():
                model(pixel_values=x)
                start, runs = time.perf_counter(), 0
                while time.perf_counter() - start < 5:
                    model(pixel_values=x)
                    runs += 1
            rates[("torch", batch)] = runs * batch / (time.perf_counter() - start)
            session.run(None, {"pixel_values": x.numpy()})
            start, runs = time.perf_counter(), 0
            while time.perf_counter() - start < 5:
                session.run(None, {"pixel_values": x.numpy()})
                runs += 1
            rates[("onnx", batch)] = runs * batch / (time.perf_counter() - start)
    print(
        f"| {backbone} (ResNet-18, k = 3, 224 px) | {max(diffs):.1e} | "
        + " | ".join(f"{rates[(kind, b)]:.1f}" for b in (1, 8) for kind in ("torch", "onnx"))
        + " |"
    )


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    data = frames()
    print("| detector | found, IoU >= 0.5 | found, IoU >= 0.3 | other boxes | median time per 640x480 frame |")
    print("|---|---|---|---|---|")
    for name, label in (("haar", "Haar (OpenCV, default)"), ("dlib", "dlib HOG (upsample 1, grey)")):
        try:
            measure_detector(label, get_detector(name).detect_all, data)
        except UserInputError as err:
            print(f"| {label} | not installed: {err} | | | |")
    print()
    print(
        "| model | max abs diff of probabilities (batch 8, and 8 x batch 1) | PyTorch img/s, batch 1 | ONNX Runtime "
        "img/s, batch 1 | PyTorch img/s, batch 8 | ONNX Runtime img/s, batch 8 |"
    )
    print("|---|---|---|---|---|---|")
    for backbone in ("resnet", "arm"):
        measure_onnx(backbone)


if __name__ == "__main__":
    main()
