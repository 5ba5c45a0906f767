"""Few-shot training on labelled regions of the scan itself: how many grains must a microscopist label?

The Phase map page's "Train on this scan's own patterns" (and ``dataset --region``) makes a dataset of
rectangles of a map, each labelled with its phase's space group. This simulates a dual-phase scan with
ground truth (Voronoi grains, or a real map's with ``--layout``), labels ``--regions`` 3x3 windows per
phase, each in its own grain (as a microscopist would box grains they know), trains 20 shots per class on
them, maps the whole scan and reports the map accuracy against the truth next to the test accuracy on the
regions' own patterns. With ``--start-from-simulation`` the same is done from a 20-shot model trained on
simulated patterns of the pair (the recipe for a real scan: simulation for the crystals, the regions for
this camera). ``--start-model`` fine-tunes a saved model instead (a six-class one, say, from the Train
page): the scan is mapped with it alone first.
"""

from __future__ import annotations

import shutil

import numpy as np
from _common import OUT, emit, parser

from ebsd_core.assemble import MapRegion, dataset_from_regions, region_shots
from ebsd_core.datasets import simulate_dataset
from ebsd_core.io.dataset import write_dataset
from ebsd_core.io.readers import open_patterns
from ebsd_core.phasemap import map_scan
from ebsd_core.phases import get_material
from ebsd_core.simulate_map import MapLayout, layout_from_ang, simulate_scan, voronoi_layout
from ebsd_core.store import load_model, save_model
from ebsd_core.train import TrainConfig, record_metrics, train_model

WINDOW = 3  # rows and columns of each labelled region
SAME_GRAIN_DOT = np.cos(np.deg2rad(2.5))  # quaternions of one grain differ by its 0.5 degree spread


def grain_windows(layout: MapLayout, per_phase: int, seed: int) -> list[MapRegion]:
    """``per_phase`` WINDOW x WINDOW regions of each phase, each inside one grain, each grain at most once."""
    rng = np.random.default_rng(seed)
    rows, cols = layout.shape
    corners = [(r, c) for r in range(rows - WINDOW + 1) for c in range(cols - WINDOW + 1)]
    chosen: list[tuple[MapRegion, np.ndarray]] = []
    for index in rng.permutation(len(corners)):
        r, c = corners[index]
        phase = layout.phase[r : r + WINDOW, c : c + WINDOW]
        quats = layout.quaternions[r : r + WINDOW, c : c + WINDOW].reshape(-1, 4)
        centre = quats[len(quats) // 2]
        one_grain = (phase == phase[0, 0]).all() and (np.abs(quats @ centre) > SAME_GRAIN_DOT).all()
        group = layout.materials[phase[0, 0]].space_group
        if not one_grain or sum(region.space_group == group for region, _ in chosen) >= per_phase:
            continue
        if any(abs(q @ centre) > SAME_GRAIN_DOT for _, q in chosen):  # a grain already labelled
            continue
        chosen.append((MapRegion(group, (r, r + WINDOW - 1), (c, c + WINDOW - 1)), centre))
    return [region for region, _ in chosen]


def train(dataset, args, weights: str | None, tag: str):
    """Up to ``--shots`` per class, half a class's patterns at most (the rest validate and test)."""
    shots = region_shots(dataset.labels, args.shots)
    config = TrainConfig(
        shots=shots,
        epochs=args.epochs,
        input_size=args.input_size,
        patience=args.epochs,
        weights_file=weights,
        lr=args.lr if weights else None,
        rehearsal_per_class=args.rehearse if weights else 0,
    )
    result = train_model(dataset, config)
    record_metrics(result, dataset)
    target = OUT / "models" / tag
    shutil.rmtree(target, ignore_errors=True)
    save_model(result.model, result.card, target)
    return target, result


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--phases", default="ni,ni3al", help="the scan's two catalogue phases")
    p.add_argument("--regions", default="2,4,8", help="regions labelled per phase, each in its own grain")
    p.add_argument("--shots", type=int, default=20)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--lr", type=float, help="learning rate of the fine-tuning from the simulation-trained model")
    # the demo map's sizes: at 60 px / 64 even austenite vs ferrite stayed near chance (ebsd_core.workflows)
    p.add_argument("--size", type=int, default=120, help="pattern size of the simulated scan")
    p.add_argument("--input-size", type=int, default=128)
    p.add_argument("--shape", default="60x80", help="the scan's rows x columns")
    p.add_argument("--layout", help="a real map's phases and orientations (.ang, .ctf, orix .h5) instead of Voronoi")
    p.add_argument("--start-from-simulation", action="store_true", help="also fine-tune a simulation-trained model")
    p.add_argument("--only-from-simulation", action="store_true", help="... and not from ImageNet")
    p.add_argument("--start-model", help="a saved model to fine-tune too (its folder), mapped alone first")
    p.add_argument(
        "--rehearse", type=int, default=0, help="from a model trained on simulations: N simulated patterns per class"
    )
    args = p.parse_args()
    if args.quick:
        args.regions, args.shots, args.epochs, args.shape, args.size, args.input_size = "2", 5, 2, "20x24", 60, 64
    phases = args.phases.split(",")
    rows, cols = (int(v) for v in args.shape.split("x"))
    if args.layout:  # its phases in file order are --phases
        layout = layout_from_ang(args.layout, phases)
    else:
        layout = voronoi_layout([get_material(m) for m in phases], (rows, cols), seed=4)
    OUT.mkdir(parents=True, exist_ok=True)
    scan_path = write_dataset(simulate_scan(layout, size=args.size, seed=4), OUT / "map-regions-scan.h5")
    source = open_patterns(scan_path)
    args.start_from_simulation |= args.only_from_simulation
    out = {"settings": {**vars(args), "window": WINDOW}, "runs": []}
    starts = {} if args.only_from_simulation else {"ImageNet": None}
    if args.start_from_simulation:
        simulated = simulate_dataset(per_class=60, phases=phases, size=args.size, seed=0)
        model_dir, result = train(simulated, args, None, "map-regions-simulation")
        model, card = load_model(model_dir)
        alone = map_scan(model, card, source)
        out["simulation_only"] = {"map_accuracy": round(alone.accuracy(), 4), "train_seconds": round(result.seconds, 1)}
        starts["simulation-trained pair model"] = str(model_dir)
    if args.start_model:
        model, card = load_model(args.start_model)
        alone = map_scan(model, card, source)
        out["start_model_only"] = {"map_accuracy": round(alone.accuracy(), 4), "classes": card.class_symbols}
        starts[f"saved model {card.name}"] = args.start_model
    for per_phase in (int(v) for v in args.regions.split(",")):
        regions = grain_windows(layout, per_phase, seed=per_phase)
        dataset = dataset_from_regions(source, regions)
        for start, weights in starts.items():
            model_dir, result = train(dataset, args, weights, f"map-regions-{per_phase}")
            model, card = load_model(model_dir)
            phase_map = map_scan(model, card, source)
            out["runs"].append(
                {
                    "regions_per_phase": per_phase,
                    "start": start,
                    "patterns": len(dataset.labels),
                    "shots": result.card.training["config"]["shots"],
                    "test_accuracy_on_regions": round(float(result.card.metrics["test"]["accuracy"]), 4),
                    "map_accuracy": round(phase_map.accuracy(), 4),
                    "map_accuracy_before_cleanup": phase_map.summary()["accuracy_before_cleanup"],
                    "train_seconds": round(result.seconds, 1),
                }
            )
            print(out["runs"][-1], flush=True)
    emit(out)


if __name__ == "__main__":
    main()
