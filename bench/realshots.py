"""A few real labelled patterns on top of simulation: how much of the real-pattern gap do they close?

Not target (c) of the few-shot benchmark, which asks for simulation only: this measures the fix a
microscopist can apply at the microscope. It starts from a simulation-only 20-shot model of
``bench/fewshot.py --prior --size 240 --input-size 224 --shots 20 --modes transfer --rehearse 80
--rehearse-from catalogue --camera-binning 4 --save-models`` and fine-tunes it (8 epochs, lr 3e-4)
on its own shots and rehearsal patterns plus the 3 real Ni patterns of one grain of
``ni_kikuchipy_small`` (repeated ``--repeat`` times). Scored on the other grain's 6 patterns (34
degrees away), the Si and Fe patterns (other cameras), and the simulated test sets.

The camera-swap control asks whether the model learnt "this camera means Fm-3m": each pattern of
the other grain has its simulated Ni signal replaced by another material's at the same orientation
and projection centre (real + alpha x (simulation of X - simulation of Ni), alpha fitted per pattern
after background removal), keeping the camera's noise and background. A shortcut reads them all Fm-3m.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from _common import OUT, SHARED, emit, parser

from ebsd_core.calibration import indexed_scans
from ebsd_core.fewshot import FewShotSplit, few_shot_split
from ebsd_core.fewshot_curve import score_real
from ebsd_core.inference import predict_source, predict_tensor
from ebsd_core.io.dataset import Dataset, read_dataset
from ebsd_core.io.readers import open_patterns
from ebsd_core.masters import load_master
from ebsd_core.phases import get_material, space_group_symbol
from ebsd_core.preprocess import preprocess, remove_dynamic_background, resize_batch
from ebsd_core.rehearsal import rehearsal_for, repeats_for
from ebsd_core.simulate import project
from ebsd_core.store import load_model, save_model
from ebsd_core.train import TrainConfig, evaluate_split, train_model

NI = "real/ni_kikuchipy_small/patterns.h5"
OTHER_REAL = [
    ("real/si_kikuchipy_moving_screen/si_in.h5", 227),
    ("real/si_kikuchipy_moving_screen/si_out5mm.h5", 227),
    ("real/si_kikuchipy_moving_screen/si_out10mm.h5", 227),
    ("real/fe_astroebsd/astroebsd_Fe_pattern_1.tif", 229),
]
#: The file's 9 patterns are two grains 34 degrees apart (misorientations from its crystal map).
GRAIN_A, GRAIN_B = [0, 3, 6], [1, 2, 4, 5, 7, 8]
SWAP_MATERIALS = ["ni", "cu", "ni3al", "nial", "cr3si", "si", "ferrite", "almandine"]
DATA = OUT / "fewshot" / "data-240-80-without-prior-materials.h5"
PRIOR = OUT / "models" / "prior-fewshot-240-224"


def real_grain(scan, index: list[int], size: int) -> np.ndarray:
    """Static-background-corrected real patterns resized to the simulated data's size, on 0-255."""
    raw = scan.patterns[index].astype(np.float32) - scan.static_background[None] + scan.static_background.mean()
    resized = resize_batch(torch.from_numpy(raw), size).numpy()
    lo, hi = resized.min(axis=(1, 2), keepdims=True), resized.max(axis=(1, 2), keepdims=True)
    return (resized - lo) / (hi - lo) * 255


def with_real(data: Dataset, rehearsal: Dataset, real: np.ndarray, pcs: np.ndarray) -> Dataset:
    """The benchmark data, then the rehearsal patterns, then the real Fm-3m patterns, as one dataset."""

    def joined(*parts):
        return np.concatenate([np.asarray(p) for p in parts])

    n = len(real)
    return Dataset(
        patterns=joined(data.patterns.astype(np.float32), rehearsal.patterns.astype(np.float32), real),
        labels=joined(data.labels, rehearsal.labels, np.full(n, data.classes.index(225))),
        classes=list(data.classes),
        material=joined(data.material, rehearsal.material, np.full(n, "ni_real", dtype=object)),
        split=joined(data.split, np.full(len(rehearsal) + n, "train", dtype=object)),
        pc=joined(data.pc, rehearsal.pc, pcs).astype(np.float32),
    )


def camera_swap(model, card, scan) -> dict:
    """Grain B with its Ni signal swapped for each material's: right of 6, mean p(true class), read Fm-3m."""
    real = scan.patterns[GRAIN_B].astype(np.float32) - scan.static_background[None] + scan.static_background.mean()

    def simulated(key: str) -> np.ndarray:
        quats, pcs = scan.quaternions[GRAIN_B], scan.pcs[GRAIN_B]
        return project(load_master(get_material(key)), quats, pcs, scan.size, scan.detector_tilt, scan.sample_tilt)

    def high_pass(x: np.ndarray) -> np.ndarray:
        return remove_dynamic_background(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()

    ni = simulated("ni")
    real_detail, ni_detail = high_pass(real), high_pass(ni)
    alpha = (real_detail * ni_detail).sum(axis=(1, 2)) / (ni_detail**2).sum(axis=(1, 2))
    out = {}
    for key in SWAP_MATERIALS:
        composite = real + alpha[:, None, None] * (simulated(key) - ni)
        p = predict_tensor(model, preprocess(composite, card.preprocess), "fp32", card.views)
        truth = card.classes.index(get_material(key).space_group)
        out[key] = {
            "truth": space_group_symbol(get_material(key).space_group),
            "right": int((p.argmax(1) == truth).sum()),
            "of": len(p),
            "p_truth": round(float(p[:, truth].mean()), 3),
            "read_fm3m": int((p.argmax(1) == card.classes.index(225)).sum()),
        }
    return out


def scores(model, card, data: Dataset, split: FewShotSplit, scan) -> dict:
    ni = predict_source(model, card, open_patterns(SHARED / NI))
    fm3m = card.class_symbols.index("Fm-3m")
    others = [(SHARED / rel, sg) for rel, sg in OTHER_REAL if (SHARED / rel).exists()]
    return {
        "unseen_orientations": round(evaluate_split(model, card, data, split.test)["accuracy"], 4),
        "held_out_materials": round(evaluate_split(model, card, data, split.holdout)["accuracy"], 4),
        "ni_grain_a": [ni.labels[i] for i in GRAIN_A],
        "ni_grain_b": [ni.labels[i] for i in GRAIN_B],
        "ni_grain_b_p_fm3m": round(float(ni.probabilities[GRAIN_B, fm3m].mean()), 3),
        "other_real": [(r["file"], r["prediction"], r["p_truth"]) for r in score_real(model, card, others)],
        "camera_swap": camera_swap(model, card, scan),
    }


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--model", help="a simulation-only model saved by bench/fewshot.py --save-models (required)")
    p.add_argument("--repeat", type=int, default=30, help="times each real pattern is repeated in the training set")
    p.add_argument("--epochs", type=int, default=8)
    args = p.parse_args()
    epochs = 2 if args.quick else args.epochs
    if not (SHARED / NI).exists():
        emit({"benchmark": "realshots", "skipped": f"{SHARED / NI} is absent"})
        return
    missing = [str(path) for path in (DATA, PRIOR) if not path.exists()]
    if not (args.model and (Path(args.model) / "model.json").exists()):
        missing.append(args.model or "--model")
    if missing:
        why = f"missing: {', '.join(missing)}; the bench/fewshot.py command in this script's docstring makes them"
        if args.quick:  # `make bench`: a prior and a 240 px model take half an hour or more on 2 cores
            emit({"benchmark": "realshots", "skipped": why})
            return
        p.error(why)
    torch.set_num_threads(2)
    start = time.perf_counter()
    sim_model, card = load_model(args.model)
    config = TrainConfig.from_dict(card.training["config"])
    data = read_dataset(DATA)
    split = few_shot_split(data, config.shots, config.seed, config.val_per_class)
    (scan,) = indexed_scans(SHARED / NI)
    rehearsal = rehearsal_for(PRIOR, data, config.rehearsal_per_class, config.rehearsal_source).dataset
    combined = with_real(data, rehearsal, real_grain(scan, GRAIN_A, data.patterns.shape[-1]), scan.pcs[GRAIN_A])
    first_rehearsal, first_real = len(data), len(data) + len(rehearsal)
    train = np.concatenate(
        [
            np.tile(split.train, repeats_for(len(split.train), len(rehearsal))),
            np.arange(first_rehearsal, first_real),
            np.tile(np.arange(first_real, first_real + len(GRAIN_A)), args.repeat),
        ]
    )
    tuned_config = dataclasses.replace(
        config, weights_file=str(args.model), epochs=epochs, patience=epochs, lr=3e-4, rehearsal_per_class=0
    )
    tuned = train_model(combined, tuned_config, split=FewShotSplit(train, split.val, split.test, split.holdout))
    name = f"realshots-seed{config.seed}-repeat{args.repeat}-epochs{epochs}"
    save_model(tuned.model, tuned.card, OUT / "realshots" / name, force=True)
    emit(
        {
            "benchmark": "realshots",
            "model": str(args.model),
            "seed": config.seed,
            "repeat": args.repeat,
            "epochs": epochs,
            "real_share_of_training": round(len(GRAIN_A) * args.repeat / len(train), 3),
            "simulation_only": scores(sim_model, card, data, split, scan),
            "with_3_real_patterns": scores(tuned.model, tuned.card, data, split, scan),
            "seconds": round(time.perf_counter() - start),
        }
    )


if __name__ == "__main__":
    main()
