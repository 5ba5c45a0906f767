"""The README's worked example: SHAP of an Fm-3m (Ni) / Pm-3m (Ni3Al) pattern pair with the band overlay.

Simulates Ni and Ni3Al at the same orientation and geometry, explains the Pm-3m output of a Ni/Ni3Al
model with SHAP (DeepLIFT, exactly additive) and Grad-CAM, and reports how much of the evidence sits
on Kikuchi bands and on the superlattice bands that only Ni3Al has. Writes docs/explain_example.png.

    python bench/explain_example.py [--model bench/out/models/map-ni-ni3al]

The default model is the Ni/Ni3Al one of ``bench/phasemap.py accuracy --size 120 --input-size 128 --epochs 30``.
``--quick`` without it trains a small one (60 px, 10 epochs, about a minute) and writes the figure under bench/out,
so that `make bench` runs from a fresh clone and leaves the README's figure alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from _common import OUT, ROOT, emit, parser
from phasemap import train_pair

from ebsd_core.band_check import band_masks, band_report
from ebsd_core.explain import grad_cam, shap_values
from ebsd_core.inference import predict_tensor
from ebsd_core.masters import load_master
from ebsd_core.phases import get_material
from ebsd_core.preprocess import preprocess
from ebsd_core.simulate import DetectorModel, apply_detector_model, project, random_quaternions
from ebsd_core.store import load_model

MAP_MODEL = OUT / "models" / "map-ni-ni3al"  # saved by bench/phasemap.py accuracy
QUICK_MODEL = "map-ni-ni3al-quick"


def model_to_explain(args) -> Path:
    """``--model``, else the phase-map benchmark's Ni/Ni3Al model, else (``--quick``) a small one trained now."""
    if args.model or (MAP_MODEL / "model.json").exists():
        return Path(args.model or MAP_MODEL)
    if not args.quick:
        raise SystemExit(
            f"{MAP_MODEL} is missing: run 'python bench/phasemap.py accuracy --size 120 --input-size 128 --epochs 30' "
            "first, give --model, or run with --quick"
        )
    quick = OUT / "models" / QUICK_MODEL
    if not (quick / "model.json").exists():
        train_pair(("ni", "ni3al"), size=60, input_size=64, epochs=10, tag=QUICK_MODEL)
    return quick


def main(args) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model_dir = model_to_explain(args)
    model, card = load_model(model_dir)
    size = int(card.training.get("pattern_size", 120))
    rng = np.random.default_rng(args.seed)
    quaternion = random_quaternions(1, rng)
    pc = np.array([[0.5, 0.25, 0.55]])
    detector = DetectorModel(band_contrast=(0.3, 0.3), counts_per_pixel=(8000, 8000))
    background_raw = []
    for key in ("ni", "ni3al"):
        q = random_quaternions(8, rng)
        clean = project(load_master(get_material(key)), q, np.repeat(pc, 8, 0), size)
        background_raw.append(apply_detector_model(clean, np.repeat(pc, 8, 0), detector, rng))
    background = preprocess(np.concatenate(background_raw), card.preprocess)
    pm3m = card.classes.index(221)
    fig, axes = plt.subplots(2, 3, figsize=(11, 7.4))
    report = {}
    for row, key in enumerate(("ni", "ni3al")):
        material = get_material(key)
        clean = project(load_master(material), quaternion, pc, size)
        raw = apply_detector_model(clean, pc, detector, np.random.default_rng(1))
        pattern = preprocess(raw, card.preprocess)[0]
        probabilities = predict_tensor(model, pattern[None])[0]
        shap = shap_values(model, pattern[None], background, method="deep").values[0, pm3m]
        cam = grad_cam(model, pattern, pm3m)
        masks = band_masks(get_material("ni3al"), quaternion[0], pc[0], card.input_size)
        report[key] = {
            "p_Pm-3m": round(float(probabilities[pm3m]), 3),
            "shap": band_report(shap, masks),
            "gradcam": band_report(cam, masks),
        }
        label = f"{material.name} ({material.symbol}): P(Pm-3m) = {probabilities[pm3m]:.2f}"
        axes[row, 0].imshow(pattern, cmap="gray")
        axes[row, 0].set_title(label, fontsize=9)
        limit = np.abs(shap).max() or 1
        axes[row, 1].imshow(shap, cmap="bwr", vmin=-limit, vmax=limit)
        axes[row, 1].set_title(
            f"SHAP for Pm-3m: {report[key]['shap'].get('superlattice_mass', 0):.0%} on superlattice bands", fontsize=9
        )
        axes[row, 2].imshow(pattern, cmap="gray")
        axes[row, 2].imshow(cam, cmap="jet", alpha=0.5)
        axes[row, 2].set_title("Grad-CAM for Pm-3m, bands of Ni3Al", fontsize=9)
        for colour, lines in (("lime", masks.lines), ("magenta", masks.superlattice_lines)):
            for x0, y0, x1, y1 in lines:
                for ax in (axes[row, 1], axes[row, 2]):
                    ax.plot([x0, x1], [y0, y1], color=colour, lw=0.5, alpha=0.7)
        for ax in axes[row]:
            ax.set_xlim(0, card.input_size - 1)
            ax.set_ylim(card.input_size - 1, 0)
            ax.set_axis_off()
    fig.suptitle(
        "Fm-3m Ni vs Pm-3m Ni3Al, same orientation: green = fundamental bands, magenta = superlattice bands",
        fontsize=10,
    )
    fig.tight_layout()
    out = (OUT if model_dir.name == QUICK_MODEL else ROOT / "docs") / "explain_example.png"
    fig.savefig(out, dpi=90)
    return {"model": str(model_dir), "figure": str(out.relative_to(ROOT)), **report}


if __name__ == "__main__":
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--model", help=f"a saved Ni/Ni3Al model (default: {MAP_MODEL.relative_to(ROOT)})")
    p.add_argument("--seed", type=int, default=7)
    emit({"benchmark": "explain example", **main(p.parse_args())})
