"""Realism of the simulator against real patterns, with a side-by-side figure.

NCC between each real Ni pattern (kikuchipy's 2x 3x3 scans, 60x60) and its
simulation at the recorded orientation and projection centre, after the same
background correction. Target: mean >= 0.45. Also compares simple image
statistics (band contrast, high-frequency noise) of real Ni/Si/Fe patterns with
simulated ones, and writes docs/realism.png.
"""

from __future__ import annotations

import numpy as np
import torch
from _common import ROOT, SHARED, emit, parser
from scipy.ndimage import gaussian_filter
from scipy.stats import skew

from ebsd_core.calibration import realism_against_scan
from ebsd_core.io.readers import open_patterns
from ebsd_core.phases import get_material
from ebsd_core.preprocess import PreprocessConfig, crop_to_square, preprocess, resize_batch
from ebsd_core.simulate import simulate_material

REAL = {
    "Ni (Fm-3m)": ("real/ni_kikuchipy_small/patterns.h5", "ni"),
    "Si (Fd-3m)": ("real/si_kikuchipy_moving_screen/si_in.h5", "si"),
    "Fe (Im-3m)": ("real/fe_astroebsd/astroebsd_Fe_pattern_1.tif", "ferrite"),
}


def image_stats(patterns: np.ndarray) -> dict:
    """Band contrast and high-frequency noise, each relative to the mean intensity, and the skewness
    of the background-corrected intensities (real patterns 0.2-0.8, simulations about 1.1)."""
    p = patterns.astype(float)
    mean = p.mean(axis=(1, 2))
    detail = p - gaussian_filter(p, (0, p.shape[-1] / 8, p.shape[-1] / 8))
    noise = detail - gaussian_filter(detail, (0, 1, 1))
    corrected = preprocess(patterns.astype(np.float32), PreprocessConfig(size=p.shape[-1]))
    return {
        "band_contrast": round(float(np.median(detail.std(axis=(1, 2)) / mean)), 4),
        "hf_noise": round(float(np.median(noise.std(axis=(1, 2)) / mean)), 4),
        "skewness": round(float(np.median(skew(corrected.reshape(len(p), -1), axis=1))), 3),
    }


def raw_at_60(path) -> tuple[np.ndarray, np.ndarray | None]:
    source = open_patterns(path)
    raw = crop_to_square(source.batch(0, min(len(source), 9)).astype(np.float32))
    background = source.static_background
    if background is not None:
        raw = raw - background[None] + background.mean()
    return resize_batch(torch.from_numpy(raw), 60).numpy(), None


def figure(rows: list[tuple[str, np.ndarray, np.ndarray]], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 4, figsize=(8, 2.1 * len(rows)))
    for (name, real, sim), ax in zip(rows, axes):
        for a, image, title in zip(
            ax,
            [real[0], preprocess(real[:1])[0], sim[0], preprocess(sim[:1])[0]],
            ["real", "real, corrected", "simulated", "simulated, corrected"],
        ):
            a.imshow(image, cmap="gray")
            a.set_title(f"{name}: {title}" if title == "real" else title, fontsize=8)
            a.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser(__doc__).parse_args()
    result: dict = {"benchmark": "realism"}
    ni = SHARED / REAL["Ni (Fm-3m)"][0]
    if ni.exists():
        scores = realism_against_scan(ni, "ni")
        result["ni_ncc"] = scores.summary()
        result["ni_ncc_target"] = 0.45
    rows, stats = [], {}
    for name, (relative, key) in REAL.items():
        path = SHARED / relative
        if not path.exists():
            continue
        real, _ = raw_at_60(path)
        sim = simulate_material(get_material(key), 64, 60, seed=1).patterns
        stats[name] = {"real": image_stats(real), "simulated_median": image_stats(sim)}
        rows.append((name, real, sim))
    result["image_stats"] = stats
    if rows:
        out = ROOT / "docs" / "realism.png"
        out.parent.mkdir(exist_ok=True)
        figure(rows, out)
        result["figure"] = str(out.relative_to(ROOT))
    emit(result)


if __name__ == "__main__":
    main()
