"""Explanation timings: SHAP for 4 patterns with a background of 16, Grad-CAM per pattern, band masks.

Targets (issue #6, 2-core CPU): SHAP <= 20 s at the default input size; Grad-CAM <= 1 s per pattern.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from _common import emit, parser

from ebsd_core.backbones import create_model
from ebsd_core.band_check import band_masks
from ebsd_core.explain import grad_cam, shap_values
from ebsd_core.phases import get_material
from ebsd_core.train import TrainConfig


def timed(function, repeats: int = 1) -> float:
    function()  # warm-up (lazy imports, first-call allocations)
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - start) / repeats


def measure(input_size: int, quick: bool) -> dict:
    model = create_model("efficientnet_lite0", 6, pretrained=True).eval()
    rng = np.random.default_rng(0)
    patterns = rng.normal(size=(20, input_size, input_size)).astype(np.float32)
    out = {"input_size": input_size}
    out["gradcam_s_per_pattern"] = round(timed(lambda: grad_cam(model, patterns[0], 0), 3 if quick else 10), 3)
    for method in ("gradient", "deep"):
        seconds = timed(lambda m=method: shap_values(model, patterns[:4], patterns[4:20], method=m))
        out[f"shap_{method}_s_4_patterns_bg16"] = round(seconds, 2)
    q = np.array([1.0, 0, 0, 0])
    out["band_masks_s"] = round(timed(lambda: band_masks(get_material("ni3al"), q, [0.5, 0.25, 0.55], input_size)), 2)
    return out


if __name__ == "__main__":
    args = parser(__doc__.splitlines()[0]).parse_args()
    torch.set_num_threads(2)
    sizes = [TrainConfig().input_size] if args.quick else [TrainConfig().input_size, 128]
    emit(
        {
            "benchmark": "explain",
            "default_input_size": TrainConfig().input_size,
            "results": [measure(s, args.quick) for s in sizes],
        }
    )
