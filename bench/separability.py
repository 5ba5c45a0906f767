"""How far the simulated data lets the six classes be told apart: matching at the true orientation.

Every pattern of a simulated set is compared with each candidate material's master projected at
the pattern's own orientation, projection centre and tilts and rendered through the detector
model's noise-free part (backscatter lobe and point-spread blur, the best NCC over a grid of both,
after the project's preprocessing), and gets the class of the material that matches best. This
reference knows what no classifier is told (the orientation, the geometry and the list of
materials), so it says how much the detector model's noise leaves to learn, not what a network
trained on 20 patterns can reach. Where it falls short of a target, no classifier of those
patterns can be expected to meet the target either. The data is bench/fewshot.py's with
``--prior``: the materials the prior does not use, the same seed and counts.

Scores, per pattern size:
- ``known``: patterns of the few-shot training materials, candidates those materials (issue 3's
  test (a), unseen orientations);
- ``holdout_known``: patterns of the held-out materials, candidates every material (their own
  master included: is the class in the patterns at all?);
- ``holdout_nearest``: held-out patterns, candidates the training materials only (does the
  nearest known material share the class?).
Also the NCC gap between the true material and the best wrong class, for the same-lattice pairs.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from _common import SHARED, emit, parser
from fewshot import HOLDOUT, PRIOR_MATERIALS

from ebsd_core.calibration import indexed_scans
from ebsd_core.datasets import resolve_materials, simulate_dataset
from ebsd_core.masters import load_master
from ebsd_core.phases import get_material
from ebsd_core.preprocess import PreprocessConfig, preprocess
from ebsd_core.simulate import DetectorModel, backscatter_background, blurred, kikuchi_signal, project

TRAINING = [m.key for m in resolve_materials("default") if m.key not in PRIOR_MATERIALS + HOLDOUT]
REAL_NI = SHARED / "real" / "ni_kikuchipy_small" / "patterns.h5"
#: Materials that share Ni's face-centred sublattice, so Ni's recorded orientation suits them too.
FCC_LATTICE = ["ni", "austenite", "cu", "al", "ni3al", "cu3au"]


#: Nuisances the reference fits for every candidate (best NCC over the grid): the detector model's
#: point-spread sigmas in pixels, and its backscatter-lobe widths (None: a flat screen, as after a
#: static background correction of real patterns).
PSF_GRID = (0.0, 0.4, 0.8, 1.2)
LOBE_GRID = (0.5, 0.75, 1.0, None)
TEMPLATE_CONTRAST = 0.2  # mid-range of DetectorModel.band_contrast


def standardised(patterns: np.ndarray, size: int, static_background: np.ndarray | None = None) -> np.ndarray:
    """The project's preprocessing at full resolution, flattened to unit-norm rows."""
    flat = preprocess(patterns, PreprocessConfig(size=size), static_background).reshape(len(patterns), -1)
    return flat / np.linalg.norm(flat, axis=1, keepdims=True)


def best_match(recorded: np.ndarray, clean: np.ndarray, pcs: np.ndarray) -> np.ndarray:
    """(N,) best NCC of unit rows ``recorded`` with the detector model's noise-free recording of
    ``clean`` (N, size, size) over :data:`PSF_GRID` x :data:`LOBE_GRID`."""
    n, size = len(clean), clean.shape[-1]
    best = np.full(n, -np.inf, dtype=np.float32)
    for width in LOBE_GRID:
        lobe = np.ones_like(clean) if width is None else backscatter_background(pcs, size, np.full(n, width))
        screen = kikuchi_signal(clean, lobe, np.full(n, TEMPLATE_CONTRAST))
        for sigma in PSF_GRID:
            template = standardised(blurred(screen.copy(), np.full(n, sigma)), size)
            best = np.maximum(best, np.sum(recorded * template, axis=1))
    return best


def correlations(dataset, candidates: list[str], size: int) -> np.ndarray:
    """(N, len(candidates)) best NCC of each recorded pattern with each candidate at its true geometry."""
    recorded = standardised(dataset.patterns, size)
    out = np.empty((len(dataset), len(candidates)), dtype=np.float32)
    groups = defaultdict(list)
    for i, tilts in enumerate(zip(dataset.detector_tilt, dataset.sample_tilt)):
        groups[tilts].append(i)
    for j, key in enumerate(candidates):
        master = load_master(get_material(key))
        for (det_tilt, samp_tilt), index in groups.items():
            index = np.asarray(index)
            pcs = dataset.pc[index]
            clean = project(master, dataset.quaternions[index], pcs, size, det_tilt, samp_tilt)
            out[index, j] = best_match(recorded[index], clean, pcs)
    return out


def real_scan(path, candidates: list[str]) -> dict:
    """Each real pattern of an indexed h5ebsd scan against every candidate at the recorded orientation
    (from dictionary indexing with the true material, so only same-lattice candidates compare fairly)."""
    ncc = {key: [] for key in candidates}
    for scan in indexed_scans(path):
        recorded = standardised(scan.patterns, scan.size, scan.static_background)
        for key in candidates:
            master = load_master(get_material(key))
            clean = project(master, scan.quaternions, scan.pcs, scan.size, scan.detector_tilt, scan.sample_tilt)
            ncc[key] += best_match(recorded, clean, scan.pcs).tolist()
    table = np.array([ncc[key] for key in candidates])  # (candidates, patterns)
    best = [candidates[j] for j in table.argmax(axis=0)]
    return {
        "file": str(path),
        "ncc": {key: [round(v, 4) for v in values] for key, values in ncc.items()},
        "best_material": best,
        "best_space_group": [get_material(m).space_group for m in best],
    }


def score(dataset, rows: np.ndarray, candidates: list[str], ncc: np.ndarray) -> dict:
    """Class accuracy of the best-matching candidate, overall and per material."""
    group = {key: get_material(key).space_group for key in candidates}
    truth = np.array([get_material(m).space_group for m in dataset.material[rows]])
    chosen = np.array([group[candidates[j]] for j in ncc.argmax(axis=1)])
    right = chosen == truth
    per_material = {
        m: round(float(right[dataset.material[rows] == m].mean()), 3) for m in sorted(set(dataset.material[rows]))
    }
    return {"accuracy": round(float(right.mean()), 4), "per_material": per_material}


def class_margin(dataset, rows: np.ndarray, candidates: list[str], ncc: np.ndarray) -> dict:
    """Median NCC of the true material minus the best candidate of another class, per material."""
    group = np.array([get_material(k).space_group for k in candidates])
    out = {}
    for m in sorted(set(dataset.material[rows])):
        own = candidates.index(m)
        sel = dataset.material[rows] == m
        other = np.where(group[None, :] != get_material(m).space_group, ncc[sel], -np.inf).max(axis=1)
        out[m] = {
            "ncc_true": round(float(np.median(ncc[sel, own])), 3),
            "margin_median": round(float(np.median(ncc[sel, own] - other)), 4),
            "margin_below_0": round(float(np.mean(ncc[sel, own] - other <= 0)), 3),
        }
    return out


def run(size: int, per_class: int, seed: int, counts_scale: float = 1.0) -> dict:
    counts = DetectorModel.counts_per_pixel
    detector = DetectorModel(counts_per_pixel=(counts[0] * counts_scale, counts[1] * counts_scale))
    dataset = simulate_dataset(
        per_class=per_class,
        phases=TRAINING + HOLDOUT,
        size=size,
        seed=seed,
        holdout_materials=HOLDOUT,
        detector=detector,
    )
    known = np.flatnonzero(dataset.split == "train")
    held = np.flatnonzero(dataset.split == "holdout")
    everything = TRAINING + HOLDOUT
    ncc = correlations(dataset, everything, size)
    train_cols = [everything.index(k) for k in TRAINING]
    return {
        "size": size,
        "counts_scale": counts_scale,
        "patterns": len(dataset),
        "known": score(dataset, known, TRAINING, ncc[np.ix_(known, train_cols)]),
        "known_margins": class_margin(dataset, known, TRAINING, ncc[np.ix_(known, train_cols)]),
        "holdout_known": score(dataset, held, everything, ncc[held]),
        "holdout_margins": class_margin(dataset, held, everything, ncc[held]),
        "holdout_nearest": score(dataset, held, TRAINING, ncc[np.ix_(held, train_cols)]),
    }


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--sizes", default="60,120,240", help="comma-separated pattern sizes")
    p.add_argument("--per-class", type=int, default=80, help="patterns per space group and split")
    p.add_argument("--seed", type=int, default=123)
    p.add_argument(
        "--counts-scale",
        type=float,
        default=1.0,
        help="electrons per pixel times this (the detector model fixes counts per pixel, so a 240 px "
        "pattern carries 4x the electrons of a 120 px one; scale 4 at 120 px matches them)",
    )
    args = p.parse_args()
    sizes = [60] if args.quick else [int(s) for s in args.sizes.split(",")]
    per_class = 12 if args.quick else args.per_class
    results = [run(size, per_class, args.seed, args.counts_scale) for size in sizes]
    real = real_scan(REAL_NI, FCC_LATTICE) if REAL_NI.exists() else None
    emit({"benchmark": "separability", "quick": args.quick, "per_class": per_class, "results": results, "real": real})


if __name__ == "__main__":
    main()
