"""Phase-map benchmarks: map accuracy with 20-shot models, throughput (1 vs 2 dask workers), memory at 1M points.

    python bench/phasemap.py accuracy [--quick]      # Voronoi maps + the real SDSS layout, ground truth known
    python bench/phasemap.py [throughput] [--quick]  # in-process vs dask LocalCluster with 1 and 2 workers (default)
    python bench/phasemap.py memory [--points N]     # streams an N-point 60x60 scan, reports peak RSS
    python bench/phasemap.py cleanup                 # grain clean-up settings on maps the accuracy run never sees
    python bench/phasemap.py hexagonal               # the clean-up on a hexagonal grid's six neighbours
    python bench/phasemap.py views                   # shared test-time views vs each point's own, same maps
    python bench/phasemap.py prior                   # ImageNet vs an EBSD prior as the start, same maps
    python bench/phasemap.py accuracy --prior        # the accuracy maps with models started from the prior

Targets (issue #5): accuracy >= 98 % austenite/ferrite, >= 95 % Ni/Ni3Al; >= 1,000 patterns/s on the
2-core CPU; 1,000,000 patterns in < 2 GB resident memory.
"""

from __future__ import annotations

import dataclasses
import resource
import shutil
import time

import h5py
import numpy as np
from _common import OUT, SHARED, emit, parser

from ebsd_core.datasets import simulate_dataset
from ebsd_core.grain_cleanup import PASSES, SAME_GRAIN_NCC, neighbour_similarity, smooth_probabilities
from ebsd_core.io.dataset import Dataset, write_dataset
from ebsd_core.io.readers import open_patterns
from ebsd_core.phasemap import MAP_VIEWS, clean_up, map_scan, map_scan_distributed, open_cluster
from ebsd_core.phases import get_material
from ebsd_core.prior import build_prior
from ebsd_core.simulate_map import layout_from_ang, simulate_scan, voronoi_layout
from ebsd_core.store import load_model, save_model
from ebsd_core.train import TrainConfig, train_model

PAIRS = {"austenite/ferrite": ("austenite", "ferrite"), "Ni/Ni3Al": ("ni", "ni3al")}
#: (seed, grain size) of the maps that choose the clean-up settings; the accuracy maps use seed 1, grains of 8.
DEV_MAPS = ((7, 8.0), (8, 5.0))
THRESHOLDS = (0.4, 0.5, 0.6, 0.7)
PASS_COUNTS = (1, 3, 5, 8, 12, 20)


def prior_dir() -> str:
    """An EBSD prior that has never seen any phase of PAIRS (built once, about 4 minutes on 2 cores)."""
    target = OUT / "models" / "prior-maps"
    if not (target / "model.json").exists():
        shutil.rmtree(target, ignore_errors=True)
        build_prior([p for pair in PAIRS.values() for p in pair], target)
    return str(target)


def train_pair(phases, size: int, input_size: int, epochs: int, tag: str, weights: str | None = None):
    dataset = simulate_dataset(per_class=30, phases=list(phases), size=size, seed=0)
    config = TrainConfig(shots=20, epochs=epochs, input_size=input_size, patience=epochs, weights_file=weights)
    result = train_model(dataset, config)
    target = OUT / "models" / tag
    shutil.rmtree(target, ignore_errors=True)
    save_model(result.model, result.card, target)
    return target, result


def accuracy(args) -> dict:
    size, input_size, epochs = (60, 64, 10) if args.quick else (args.size, args.input_size, args.epochs)
    shape = (30, 40) if args.quick else (100, 117)
    weights = prior_dir() if args.prior else None
    out = {"settings": {"pattern_size": size, "input_size": input_size, "epochs": epochs, "shots": 20}}
    out["settings"]["start"] = "EBSD prior (bench/out/models/prior-maps)" if weights else "ImageNet"
    for label, phases in PAIRS.items():
        tag = f"map-{phases[0]}-{phases[1]}{'-prior' if weights else ''}"
        model_dir, result = train_pair(phases, size, input_size, epochs, tag, weights)
        model, card = load_model(model_dir)
        layout = voronoi_layout([get_material(p) for p in phases], shape, seed=1)
        scan_path = write_dataset(simulate_scan(layout, size=size, seed=1), OUT / f"map-{phases[0]}.h5")
        start = time.perf_counter()
        phase_map = map_scan(model, card, open_patterns(scan_path))
        out[label] = {
            "voronoi_accuracy": round(phase_map.accuracy(), 4),
            "voronoi_accuracy_before_cleanup": phase_map.summary()["accuracy_before_cleanup"],
            "points": phase_map.size,
            "train_seconds": round(result.seconds, 1),
            "map_seconds": round(time.perf_counter() - start, 1),
        }
        layout_file = SHARED / "layouts" / "sdss_ferrite_austenite.ang"
        if phases == ("austenite", "ferrite") and layout_file.exists():
            real = layout_from_ang(layout_file)
            scan_path = write_dataset(simulate_scan(real, size=size, seed=2), OUT / "map-sdss.h5")
            phase_map = map_scan(model, card, open_patterns(scan_path))
            out[label]["sdss_layout_accuracy"] = round(phase_map.accuracy(), 4)
            out[label]["sdss_layout_accuracy_before_cleanup"] = phase_map.summary()["accuracy_before_cleanup"]
    return out


def dev_maps(args, weights: str | None = None):
    """(name, model, card, source) of the development maps: both pairs, seeds and grain sizes of DEV_MAPS."""
    for label, phases in PAIRS.items():
        model_dir = OUT / "models" / f"map-{phases[0]}-{phases[1]}{'-prior' if weights else ''}"
        if not model_dir.exists():
            model_dir, _ = train_pair(phases, args.size, args.input_size, args.epochs, model_dir.name, weights)
        model, card = load_model(model_dir)
        for seed, grain_size in DEV_MAPS:
            scan_path = OUT / f"dev-{phases[0]}-{seed}.h5"
            if not scan_path.exists():
                materials = [get_material(p) for p in phases]
                layout = voronoi_layout(materials, (60, 80), grain_size=grain_size, seed=seed)
                write_dataset(simulate_scan(layout, size=args.size, seed=seed), scan_path)
            yield f"{label} seed {seed} grains {grain_size:g}", model, card, open_patterns(scan_path)


def with_mean(maps: dict) -> dict:
    """``maps`` (name -> {setting: accuracy}) plus the mean of each setting and the best one."""
    mean = {name: round(float(np.mean([m[name] for m in maps.values()])), 4) for name in next(iter(maps.values()))}
    return {"maps": maps, "mean": mean, "best": max((name for name in mean if not name.endswith("raw")), key=mean.get)}


def cleanup(args) -> dict:
    """Map accuracy for each clean-up threshold and pass count, on development maps only."""
    maps = {}
    for name, model, card, source in dev_maps(args):
        phase_map = map_scan(model, card, source, cleanup=False)
        similarity = neighbour_similarity(source, phase_map.nav_shape, card.preprocess)
        cells = {
            f"ncc>{t} x{k}": phase_map.accuracy(smooth_probabilities(phase_map.probabilities, similarity, t, k))
            for t in THRESHOLDS
            for k in PASS_COUNTS
        }
        maps[name] = {"raw": round(phase_map.accuracy(), 4), **{n: round(v, 4) for n, v in cells.items()}}
    return {**with_mean(maps), "default": f"ncc>{SAME_GRAIN_NCC} x{PASSES}"}


def hexagonal_scan(phases, shape: tuple[int, int], size: int, seed: int):
    """A scan of ``phases`` on a hexagonal grid with its ground truth: simulated on a square grid of half steps of
    ``shape``, every other point kept (each row alternately offset by one), saved as images named by their places
    (read as a hexagonal grid); its source and the space group at each of its points."""
    from PIL import Image

    layout = voronoi_layout([get_material(p) for p in phases], shape, grain_size=8, seed=seed)
    scan = simulate_scan(layout, size=size, seed=seed)
    folder = OUT / f"hex-{phases[0]}-{seed}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    truth = {}
    for index, pattern in enumerate(scan.patterns):
        row, column = divmod(index, shape[1])
        if (row + column) % 2 == 0:
            Image.fromarray(pattern).save(folder / f"x{column}_y{row}.png")
            truth[row, column] = scan.classes[scan.labels[index]]
    source = open_patterns(folder)
    assert source.hexagonal_places is not None, "not read as a hexagonal grid"
    return source, np.array([truth[int(r), int(c)] for r, c in source.hexagonal_places])


def share_right(index: np.ndarray, classes: list[int], truth: np.ndarray) -> float:
    """The share of points whose decided class (``index`` into ``classes``, -1 unknown) is their ``truth``."""
    return round(float(np.mean(np.where(index >= 0, np.array(classes)[index], -1) == truth)), 4)


def hexagonal(args) -> dict:
    """Accuracy of scans on a hexagonal grid, each pattern alone (the model's views) and after the grain clean-up
    over its six neighbours (each point's own views, as for a square map: the classify job's two settings)."""
    from ebsd_core.grain_cleanup import clean_up_hexagonal
    from ebsd_core.inference import predict_source

    out = {}
    for label, phases in PAIRS.items():
        model_dir = OUT / "models" / f"map-{phases[0]}-{phases[1]}"
        if not model_dir.exists():
            model_dir, _ = train_pair(phases, args.size, args.input_size, args.epochs, model_dir.name)
        model, card = load_model(model_dir)
        for seed in (1, 2):
            source, truth = hexagonal_scan(phases, (40, 100), args.size, seed)
            spread = dataclasses.replace(card, views=min(card.views, MAP_VIEWS))
            own = predict_source(model, card, source)
            scattered = predict_source(model, spread, source, scatter_views=True)
            start = time.perf_counter()
            cleaned = clean_up_hexagonal(scattered.probabilities, source, card.preprocess)
            seconds = time.perf_counter() - start
            after = dataclasses.replace(scattered, probabilities=cleaned)
            out[f"{label} seed {seed}"] = {
                "points": len(source),
                "each alone": share_right(own.index, card.classes, truth),
                "own views, before clean-up": share_right(scattered.index, card.classes, truth),
                "after clean-up": share_right(after.index, card.classes, truth),
                "cleanup_seconds": round(seconds, 2),
            }
    return out


def views(args) -> dict:
    """Map accuracy after the default clean-up: the model's shared test-time views vs views of each point's own.

    With ``--views-below P``: :func:`views_below` instead."""
    if args.views_below is not None:
        return views_below(args)
    maps = {}
    for name, model, card, source in dev_maps(args):
        shared = map_scan(model, card, source, cleanup=False)
        row = {"raw": round(shared.accuracy(), 4)}
        row[f"shared x{card.views}"] = round(clean_up(shared, source, card).accuracy(), 4)
        for k in (1, 2, 4):
            row[f"own x{k}"] = round(map_scan(model, card, source, views=k).accuracy(), 4)
        maps[name] = row
    return {**with_mean(maps), "default": f"own x{MAP_VIEWS}"}


def views_below(args) -> dict:
    """Default maps (clean-up, each point's own views) with the views given to every point, and only to the
    points whose first view's top probability is below ``--views-below``: accuracy, seconds, changed points."""
    maps = {}
    for name, model, card, source in dev_maps(args):
        row, labels = {}, {}
        for label, below in (("every point", None), ("unsure points", args.views_below)):
            start = time.perf_counter()
            phase_map = map_scan(model, card, source, views_below=below)
            row[f"{label} seconds"] = round(time.perf_counter() - start, 1)
            row[f"{label} accuracy"] = round(phase_map.accuracy(), 4)
            labels[label] = phase_map.index
        row["points changed"] = int((labels["every point"] != labels["unsure points"]).sum())
        maps[name] = row
    mean = {key: round(float(np.mean([m[key] for m in maps.values()])), 4) for key in next(iter(maps.values()))}
    return {"views": MAP_VIEWS, "views_below": args.views_below, "maps": maps, "mean": mean}


def prior(args) -> dict:
    """Map accuracy (default views and clean-up) of 20-shot models started from ImageNet vs an EBSD prior."""
    maps = {}
    for start, weights in (("ImageNet", None), ("EBSD prior", prior_dir())):
        for name, model, card, source in dev_maps(args, weights):
            phase_map = map_scan(model, card, source)
            row = maps.setdefault(name, {})
            row[f"{start} raw"] = phase_map.summary()["accuracy_before_cleanup"]
            row[start] = round(phase_map.accuracy(), 4)
    return with_mean(maps)


def make_scan(points: int, size: int = 60) -> str:
    """A chunked scan of ``points`` patterns, tiled from 2,000 simulated ones (written in blocks), with their
    orientations, as an indexed scan has them (the map keeps them for its exports)."""
    path = OUT / f"scan-{points}-{size}-indexed.h5"
    if path.exists():
        return str(path)
    layout = voronoi_layout([get_material("austenite"), get_material("ferrite")], (40, 50), seed=3)
    block = simulate_scan(layout, size=size, seed=3)
    cols = 1000
    rows = points // cols
    small = Dataset(block.patterns[:1], [0], block.classes, ["austenite"], nav_shape=(1, 1))
    write_dataset(small, path)  # the header and metadata, then grow the arrays in place
    with h5py.File(path, "a") as f:
        for name in list(f):
            del f[name]
        f.attrs["nav_shape"] = np.array([rows, cols])
        dset = f.create_dataset("patterns", (rows * cols, size, size), np.uint8, chunks=(256, size, size))
        for start in range(0, rows * cols, len(block.patterns)):
            stop = min(rows * cols, start + len(block.patterns))
            dset[start:stop] = block.patterns[: stop - start]
        quaternions = np.resize(block.quaternions.reshape(-1, 4), (rows * cols, 4)).astype(np.float32)
        f.create_dataset("quaternions", data=quaternions)
        f.create_dataset("labels", data=np.full(rows * cols, -1, np.int16))
        f.create_dataset("material", data=np.full(rows * cols, "", dtype=object), dtype=h5py.string_dtype())
        f.create_dataset("split", data=np.full(rows * cols, "train", dtype=object), dtype=h5py.string_dtype())
    return str(path)


def speed_model() -> str:
    """A 20-shot austenite/ferrite model at the default input size (its weights only matter for bf16's check)."""
    target = OUT / "models" / "speed"
    if not target.exists():
        dataset = simulate_dataset(per_class=30, phases=["austenite", "ferrite"], size=60, seed=0)
        result = train_model(dataset, TrainConfig(shots=20, epochs=5, input_size=64))
        save_model(result.model, result.card, target)
    return str(target)


def precision_used(card) -> dict:
    import torch

    from ebsd_core.inference import inference_precision

    return {"precision": inference_precision(torch.device("cpu"), "auto", card), **card.training.get("bf16_check", {})}


def throughput(args) -> dict:
    points = 20_000 if args.quick else 100_000
    scan, model_dir = make_scan(points), speed_model()
    model, card = load_model(model_dir)
    start = time.perf_counter()
    map_scan(model, card, open_patterns(scan), batch_size=512)
    results = {"points": points, "in_process_patterns_per_s": round(points / (time.perf_counter() - start))}
    results["bf16"] = precision_used(card)
    for workers in (1, 2):
        with open_cluster("local", workers) as client:
            start = time.perf_counter()
            map_scan_distributed(model_dir, scan, client, chunk=2048, device="cpu")
            results[f"dask_{workers}_workers_patterns_per_s"] = round(points / (time.perf_counter() - start))
    return results


def memory(args) -> dict:
    scan, model_dir = make_scan(args.points), speed_model()
    model, card = load_model(model_dir)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    phase_map = map_scan(model, card, open_patterns(scan), batch_size=512)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "points": phase_map.size,
        "pattern_shape": [60, 60],
        "scan_file_gb": round(open_patterns(scan).patterns.id.get_storage_size() / 1e9, 2),
        "peak_rss_mb": round(peak),
        "rss_before_mb": round(before),
        "seconds": round(seconds),
        "patterns_per_s": round(phase_map.size / seconds),
        "orientations_kept": phase_map.rotations is not None,
        "bf16": precision_used(card),
    }


if __name__ == "__main__":
    p = parser(__doc__.splitlines()[0])
    p.add_argument(
        "what",
        nargs="?",
        default="throughput",
        choices=["accuracy", "throughput", "memory", "cleanup", "hexagonal", "views", "prior"],
    )
    p.add_argument("--prior", action="store_true", help="accuracy: start the 20-shot models from an EBSD prior")
    p.add_argument("--points", type=int, default=1_000_000)
    p.add_argument("--size", type=int, default=60)
    p.add_argument("--input-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--views-below", type=float, help="views: every point's views against the unsure points' only")
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    emit(
        {
            "benchmark": f"phasemap {args.what}",
            **{
                "accuracy": accuracy,
                "throughput": throughput,
                "memory": memory,
                "cleanup": cleanup,
                "hexagonal": hexagonal,
                "views": views,
                "prior": prior,
            }[args.what](args),
        }
    )
