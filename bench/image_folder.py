"""A scan exported as a folder of images: memory and speed of classifying it, decoded at once or streamed.

Writes ``--count`` PNG patterns of ``--size`` px (uniform noise: the worst case for PNG, so files are as large as
the pixels) under bench/out, then classifies the folder in a fresh process each way (an untrained
EfficientNet-Lite0 at a 64 px input, float32, uncompiled: the reading is what differs):

- ``decoded``: every image decoded when the folder is opened (``open_patterns(..., lazy=False)``; what a folder
  of up to ``IN_MEMORY_BYTES`` of patterns gets);
- ``streamed``: only the headers read when it is opened, each batch decoded when classified (what a larger
  folder gets).

Reports seconds to open, patterns/s of the whole run (open included) and the process's peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import OUT, emit, parser


def make_folder(count: int, size: int) -> Path:
    from PIL import Image

    folder = OUT / f"images-{count}-{size}"
    done = folder / ".complete"
    if not done.exists():
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        for index in range(count):
            Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(folder / f"{index:06d}.png")
        done.touch()
    return folder


def classify(folder: str, mode: str) -> dict:
    """Run in a child process: open and classify the folder one way, with the time and memory it took."""
    import torch

    from ebsd_core.backbones import create_model
    from ebsd_core.inference import predict_source
    from ebsd_core.io import images
    from ebsd_core.io.readers import open_patterns
    from ebsd_core.preprocess import PreprocessConfig
    from ebsd_core.store import ModelCard

    model = create_model("efficientnet_lite0", 6, pretrained=False).to(memory_format=torch.channels_last).eval()
    card = ModelCard("efficientnet_lite0", [221, 223, 225, 227, 229, 230], PreprocessConfig(size=64), views=1)
    baseline_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if mode == "streamed":
        images.IN_MEMORY_BYTES = 0
    start = time.perf_counter()
    source = open_patterns(folder, lazy=mode == "streamed")
    opened = time.perf_counter() - start
    result = predict_source(model, card, source, batch_size=512, precision="fp32", compile="never")
    seconds = time.perf_counter() - start
    return {
        "mode": mode,
        "kind": type(source.patterns).__name__,
        "open_s": round(opened, 2),
        "total_s": round(seconds, 2),
        "patterns_per_s": round(len(result.probabilities) / seconds, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "peak_rss_before_reading_mb": round(baseline_mb),
    }


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--count", type=int, default=20_000)
    p.add_argument("--size", type=int, default=240)
    p.add_argument("--child", nargs=2, metavar=("FOLDER", "MODE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(classify(*args.child)))
        return
    count = 2_000 if args.quick else args.count
    OUT.mkdir(parents=True, exist_ok=True)
    folder = make_folder(count, args.size)
    runs = {}
    for mode in ("decoded", "streamed"):
        child = subprocess.run(
            [sys.executable, __file__, "--child", str(folder), mode], capture_output=True, text=True, check=True
        )
        runs[mode] = json.loads(child.stdout.strip().splitlines()[-1])
        print(json.dumps(runs[mode]), file=sys.stderr, flush=True)
    decoded_mb = count * args.size**2 / 2**20
    emit({"benchmark": "image-folder", "images": count, "size": args.size, "decoded_mb": round(decoded_mb), **runs})


if __name__ == "__main__":
    main()
