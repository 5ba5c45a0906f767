"""Command line interface: ``python -m ebsd_core COMMAND ...``.

Every command reports user errors as one line ``error: <file>: <problem>`` on
stderr with exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import select
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from ebsd_core.errors import NOT_A_FILE, EbsdError, InputError, os_error_text, out_of_memory_text
from ebsd_core.memory import keep_freed_memory
from ebsd_core.paths import broken_link
from ebsd_core.wording import is_whole_number

log = logging.getLogger(__name__)

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str):
    def register(func):
        COMMANDS[name] = func
        return func

    return register


def _csv(text: str | None) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()] if text else []


def _csv_ints(text: str | None, option: str, low: int = 0) -> list[int]:
    parts = _csv(text)
    # "5.5", "ten", and "٢" or "1_000", which int() takes; a sign is told below
    if not all(is_whole_number(part.removeprefix("-")) for part in parts):
        raise EbsdError(f"{option}: {text!r} is not a comma-separated list of whole numbers")
    values = [int(part) for part in parts]
    if any(value < low for value in values):
        raise EbsdError(f"{option}: {text!r} holds a number below {low}")
    return values


def print_progress(fraction: float, message: str) -> None:
    """``[ 25.0%] message`` on stderr, for long commands (and the benchmarks)."""
    print(f"[{fraction * 100:5.1f}%] {message}", file=sys.stderr, flush=True)


@command("simulate")
def _simulate(args: argparse.Namespace) -> int:
    from ebsd_core.datasets import simulate_dataset
    from ebsd_core.io.dataset import write_dataset
    from ebsd_core.phases import phase_from_cif

    if args.classes and (args.phases or args.cif):
        given = "--phases" if args.phases else "--cif"
        raise EbsdError(f"--classes picks catalogue materials by space group and {given} names the materials: give one")
    extra = [phase_from_cif(p) for p in args.cif or []]
    dataset = simulate_dataset(
        per_class=args.per_class,
        classes=None if args.phases or extra else args.classes or "default",
        phases=_csv(args.phases) or ([] if not extra else None),
        holdout_materials=_csv(args.holdout_materials),
        size=args.size,
        seed=args.seed,
        extra_materials=extra,
        progress=print_progress,
    )
    write_dataset(dataset, args.out)
    print(json.dumps({"out": str(args.out), **dataset.summary()}))
    return 0


@command("dataset")
def _dataset(args: argparse.Namespace) -> int:
    import sys

    from ebsd_core.assemble import (
        PER_SCAN,
        SINGLE_PHASE_SCANS_CAUTION,
        blank_notes,
        dataset_from_labelled,
        dataset_from_scans,
        sampling_notes,
    )
    from ebsd_core.io.dataset import write_dataset
    from ebsd_core.io.readers import open_patterns

    if sum(map(bool, (args.scan, args.labelled, args.region))) != 1:
        raise EbsdError(
            "give either --labelled PATH, two or more --scan PATH=SPACEGROUP, or --region PATH=SPACEGROUP@ROWS,COLUMNS "
            "of two or more phases"
        )
    if args.nav_shape and not args.region:
        raise EbsdError("--nav-shape gives the map shape for --region; the other sources are read as they are")
    if args.region:
        dataset = _dataset_of_regions(args)
    elif args.labelled:
        if args.per_scan is not None:
            raise EbsdError("--per-scan takes patterns of --scan files; a --labelled source is read whole")
        dataset = dataset_from_labelled(open_patterns(args.labelled, labelled=True))
    else:
        pairs = [_path_and_space_group(text, "--scan") for text in args.scan]
        if len(pairs) == 1:
            raise EbsdError(
                "one --scan makes a dataset of one phase, which cannot be trained on: give a scan of each phase "
                "(to score a model on a scan of one known phase: evaluate --data PATH=SPACEGROUP)"
            )
        per_scan = PER_SCAN if args.per_scan is None else args.per_scan
        dataset = dataset_from_scans([(open_patterns(path), group) for path, group in pairs], per_scan)
        for note in sampling_notes(dataset):
            log.warning("%s (--per-scan sets how many)", note)
        print(SINGLE_PHASE_SCANS_CAUTION, file=sys.stderr)
    for note in blank_notes(dataset):
        log.warning("%s", note)
    write_dataset(dataset, args.out)
    print(json.dumps({"out": str(args.out), **dataset.summary()}))
    return 0


def _dataset_of_regions(args: argparse.Namespace):
    import re

    from ebsd_core.assemble import (
        MAP_REGIONS_CAUTION,
        PER_SCAN,
        MapRegion,
        dataset_from_regions,
        few_regions_notes,
        sampling_notes,
    )
    from ebsd_core.io.readers import open_patterns
    from ebsd_core.phases import space_group_of_label
    from ebsd_core.simulate_map import parse_shape

    regions, paths = [], []
    for text in args.region:
        where, _, span = text.rpartition("@")
        path, _, group = where.rpartition("=")
        bounds = re.fullmatch(r"(\d+)-(\d+),(\d+)-(\d+)", span.replace(" ", ""))
        if not path or not bounds:
            raise EbsdError(
                f"--region {text!r}: write it as PATH=SPACEGROUP@ROWS,COLUMNS with first and last row and column, "
                "e.g. scan.h5=Fm-3m@10-19,30-49"
            )
        paths.append(Path(path))
        first_row, last_row, first_col, last_col = map(int, bounds.groups())
        regions.append(MapRegion(space_group_of_label(group), (first_row, last_row), (first_col, last_col)))
    if len({path.resolve() for path in paths}) > 1:
        raise EbsdError(
            "--region: give regions of one scan (map each scan with its own model, or train on both with --scan)"
        )
    source = open_patterns(paths[0])
    per_region = PER_SCAN if args.per_scan is None else args.per_scan
    dataset = dataset_from_regions(source, regions, per_region, parse_shape(args.nav_shape) if args.nav_shape else None)
    for note in sampling_notes(dataset):
        log.warning("%s (--per-scan sets how many)", note)
    for note in few_regions_notes(regions):
        log.warning("%s", note)
    print(MAP_REGIONS_CAUTION, file=sys.stderr)
    return dataset


@command("phases")
def _phases(args: argparse.Namespace) -> int:
    from ebsd_core.masters import master_path
    from ebsd_core.phases import CATALOGUE

    for m in CATALOGUE.values():
        shipped = "master shipped" if master_path(m).exists() else "no master yet"
        print(f"{m.key:10s} {m.symbol:6s} ({m.space_group})  a = {m.a:6.3f} A  {m.name}  [{shipped}]")
    return 0


@command("backbones")
def _backbones(args: argparse.Namespace) -> int:
    from ebsd_core.backbones import describe_registry

    for entry in describe_registry():
        if entry["pretrained_offline"] and entry["weights"] == "timm-hub":
            weights = "ImageNet weights offline: timm's download, in the Hugging Face cache"
        elif entry["pretrained_offline"]:
            weights = "ImageNet weights offline"
        elif entry["weights"] == "timm-hub":
            weights = "ImageNet weights online only (timm's download), or --weights FILE"
        else:
            weights = "no pretrained weights"
        print(f"{entry['name']:22s} {entry['description']}  [{weights}]")
    print("also: any timm model name (python -c 'import timm; print(timm.list_models())'); --scratch: random weights")
    from ebsd_core.backbones import device_label, unused_gpu_reason
    from ebsd_core.threads import fit_torch_threads

    fit_torch_threads()  # as the commands that run a network count them
    reason = unused_gpu_reason()
    print(f"runs on: {device_label()}" + (f" (GPU unused: {reason})" if reason else ""))
    return 0


@command("masters")
def _masters(args: argparse.Namespace) -> int:
    from ebsd_core.masters import build_catalogue, build_master, dynamical_available, master_path, save_master
    from ebsd_core.phases import phase_from_cif

    if args.action != "build":
        raise EbsdError(f"unknown masters action {args.action!r}; use 'build'")
    if not dynamical_available() and not args.cif:
        raise EbsdError("de-ebsd is not installed: 'pip install -r requirements-dev.txt' to rebuild masters")
    for path in args.cif or []:
        material = phase_from_cif(path)
        master = build_master(material, progress=print)
        out = save_master(master, master_path(material))
        print(f"{material.key}: {master.kind} master pattern written to {out}")
    if not args.cif or args.phase:
        for path in build_catalogue(_csv(args.phase) or None, skip_existing=args.missing_only):
            print(f"wrote {path}")
    return 0


@command("info")
def _info(args: argparse.Namespace) -> int:
    from ebsd_core.io.readers import open_found_source, open_patterns, sources_in_folder

    folder = Path(args.path)
    if not (sources := sources_in_folder(folder)):
        print(json.dumps(_description(open_patterns(args.path))))
        return 0
    described = []  # a folder of scans or of sample folders: each source as predict reads it, or why it cannot be
    for path in sources:
        name = {"name": path.relative_to(folder).as_posix()}
        try:
            described.append(name | _description(open_found_source(path)))
        except InputError as exc:
            described.append(name | {"error": exc.reason})
    print(json.dumps({"path": str(folder), "kind": "folder of pattern sources", "sources": described}))
    return 0


def _description(source) -> dict:
    """What ``info`` says of a pattern source."""
    import numpy as np

    return {
        "path": source.path,
        "kind": source.kind,
        "patterns": len(source),
        "pattern_shape": list(source.pattern_shape),
        "nav_shape": list(source.nav_shape) if source.nav_shape else None,
        # the step the file records, which a map's exports and scale bar take (images record none)
        **({"step_um": source.step_um} if source.kind == "kikuchipy" else {}),
        "classes": source.classes,
        **_labelled_summary(source),
        "static_background": source.static_background is not None,
        "orientations": source.orientations_from or None,  # what a phase map's exports would keep
        "hexagonal_grid": source.hexagonal_grid,
        **({"hexagonal_rows": _hexagonal_rows(source.hexagonal_places)} if source.hexagonal_places is not None else {}),
        # a folder of images over IN_MEMORY_BYTES, or a scan kikuchipy reads lazily
        "read": "in memory" if isinstance(source.patterns, np.ndarray) else "from disk, batch by batch",
        "warnings": source.warnings,
    }


def _hexagonal_rows(places) -> list[int]:
    """The points of each row of a hexagonal grid (rows of 3, 4 and 3), as ``info`` says how the grid is laid out."""
    import numpy as np

    return np.bincount(places[:, 0]).tolist()


def _labelled_summary(source) -> dict:
    """What labelled patterns hold: patterns per class (by symbol), materials and the held-out ones."""
    from ebsd_core.io.dataset import label_summary

    return label_summary(source.labels, source.classes, source.material, source.split) if source.labelled else {}


def _train_config(args: argparse.Namespace, shots: int, pretrained: bool, seed: int, pattern_shape: tuple[int, int]):
    """The training of one run; a scratch run (``pretrained`` false) starts from random weights whatever
    ``--weights`` says, rehearses nothing (``--rehearse`` needs the prior it starts from) and trains the
    whole network from the first epoch (a frozen random backbone teaches nothing)."""
    from ebsd_core.augment import AugmentConfig
    from ebsd_core.preprocess import input_size_for
    from ebsd_core.train import TrainConfig

    return TrainConfig(
        backbone=args.backbone,
        pretrained=pretrained,
        weights_file=args.weights if pretrained else None,
        channel_mode=args.channels,
        input_size=args.input_size or input_size_for(pattern_shape),
        shots=shots,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        frozen_warmup_epochs=args.frozen_epochs if pretrained else 0,
        patience=args.patience,
        seed=seed,
        device=args.device,
        unknown_threshold=args.unknown_threshold,
        views=args.views or TrainConfig.views,
        views_below=TrainConfig.views_below if args.views_below is None else args.views_below,
        rehearsal_per_class=args.rehearse if pretrained else 0,
        rehearsal_source=args.rehearse_from,
        augment_config=AugmentConfig(
            rotation=args.rotation,
            crystal_rotation=AugmentConfig.crystal_rotation if args.crystal_rotation is None else args.crystal_rotation,
            resolution=args.camera_binning,
            noise_std=AugmentConfig.noise_std if args.noise is None else args.noise,
        ),
    )


def _eta(progress, what: str = "ETA") -> str:
    return "" if progress.eta_seconds is None else f" ({what} {progress.eta_seconds:.0f} s)"


def print_epoch(progress) -> None:
    """``[ 25.0%] epoch 3: ... (ETA 40 s)`` on stderr: a training run's progress, for ``train`` and ``prior``."""
    if progress.message:
        print(f"[{progress.fraction * 100:5.1f}%] {progress.message}{_eta(progress)}", file=sys.stderr, flush=True)


def print_run_epoch(progress) -> None:
    """Epoch lines within one run of a sweep, indented under the sweep's own progress lines."""
    if progress.message:
        eta = _eta(progress, "this run's ETA")
        print(f"        {progress.message}{eta}", file=sys.stderr, flush=True)


@command("train")
def _train(args: argparse.Namespace) -> int:
    from ebsd_core.workflows import train_dataset_file

    if args.scratch and (args.weights or args.rehearse or args.frozen_epochs):
        given = "--weights" if args.weights else "--rehearse" if args.rehearse else "--frozen-epochs"
        raise EbsdError(f"--scratch starts from random weights and cannot take {given}: leave out one of them")

    def config_for(pattern_shape: tuple[int, int]):
        return _train_config(args, args.shots, not args.scratch, args.seed, pattern_shape)

    summary = train_dataset_file(args.data, args.out, config_for, args.force, print_epoch)
    _say_if_outside_store(Path(summary["model"]))
    print(json.dumps(summary))
    return 0


def _say_if_outside_store(saved: Path) -> None:
    """Say where a model saved by ``--out`` lies outside the store whose models the dashboard offers (``models/NAME``
    taken from another folder than the project's, or beside a lab's ``EBSD_MODEL_STORE``): its pages will not list
    it."""
    from ebsd_core.paths import MODEL_STORE_VARIABLE, default_store

    store = default_store()
    with contextlib.suppress(OSError):
        if saved.resolve().parent == store.resolve():
            return
    set_by = f" ({MODEL_STORE_VARIABLE})" if os.environ.get(MODEL_STORE_VARIABLE) else ""
    log.warning(
        "%s: saved outside the model store whose models the dashboard offers, %s%s: to see it there, save it with "
        "--out %s (a bare name goes into the store) or add it with python -m ebsd_core import-model %s",
        saved,
        store,
        set_by,
        saved.name,
        saved,
    )


@command("prior")
def _prior(args: argparse.Namespace) -> int:
    from ebsd_core.prior import PriorSettings, build_prior

    given = dict(per_class=args.per_class, pattern_size=args.size, input_size=args.input_size, epochs=args.epochs)
    settings = PriorSettings(**{k: v for k, v in given.items() if v is not None})
    summary = build_prior(_csv(args.exclude), args.out, settings, args.force, print_epoch)
    _say_if_outside_store(Path(summary["model"]))
    print(json.dumps(summary))
    return 0


@command("evaluate")
def _evaluate(args: argparse.Namespace) -> int:
    from ebsd_core.workflows import score_source

    model, card = _load_for_inference(args)
    source = _evaluation_source(args.data)
    metrics, notes = score_source(
        model, card, source, split=args.split, batch_size=args.batch_size, precision=args.precision
    )
    for note in notes:
        log.warning("%s: %s", source.path, note)
    print(json.dumps(metrics))
    return 0


def _evaluation_source(data: Path):
    """Labelled data, or ``PATH=SPACEGROUP``: a scan, image or folder of one known phase (a reference sample)."""
    from ebsd_core.io.readers import open_patterns
    from ebsd_core.workflows import one_phase_source

    if data.exists() or "=" not in data.name:
        source = open_patterns(data, labelled=True)
        if not source.labelled:
            raise EbsdError(
                f"{data}: has no labels to evaluate against: for patterns of one known phase give "
                f"--data {data}=SPACEGROUP (a space group such as Fm-3m or 225); otherwise use 'predict'"
            )
        return source
    path, group = _path_and_space_group(str(data), "--data")
    return one_phase_source(path, group, f"evaluate against them with --data {path}")


@command("predict")
def _predict(args: argparse.Namespace) -> int:
    import csv
    import functools
    from collections import Counter

    from ebsd_core.atomic import atomic_path
    from ebsd_core.io.images import first_names
    from ebsd_core.io.readers import sources_in_folder
    from ebsd_core.predictions import csv_header
    from ebsd_core.wording import counted

    model, card = _load_for_inference(args)
    # a folder of scans, or of samples' folders: each source read by itself, rows named by its path in the folder
    sources = sources_in_folder(Path(args.input))
    counts: Counter[str] = Counter()
    noted: dict[str, list[str]] = {}  # each note once, with the files it concerns
    left_out: list[str] = []  # files of the folder that could not be read

    def note_for_the_end(name: str, note: str) -> None:
        noted.setdefault(note, []).append(name)

    with atomic_path(args.out) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(csv_header(card))
        for path in sources or [args.input]:
            name = Path(path).relative_to(args.input).as_posix() if sources else None
            # in a folder, a note is said once at the end for the files it concerns; for one file, at once (before a
            # long run, what makes its answers doubtful)
            say = functools.partial(note_for_the_end, name) if name else functools.partial(log.warning, "%s: %s", path)
            labels = _predict_rows(args, model, card, path, writer, say, name)
            if labels is None:
                left_out.append(name)
            counts.update(labels or [])
        if sources and len(left_out) == len(sources):
            kind = "scan file" if all(p.is_file() for p in sources) else "pattern source"
            found = counted(len(sources), kind)
            raise InputError(f"none of the {kind}s here could be read ({found}, each named above)", args.input)
    for note, names in noted.items():
        log.warning("%s (%s): %s", args.input, first_names(names), note)
    summary = {"out": str(args.out), "patterns": sum(counts.values())}
    summary |= {"files": len(sources) - len(left_out), "left_out": left_out} if sources else {}
    print(json.dumps(summary | {"predictions": dict(sorted(counts.items()))}))
    return 0


def _predict_rows(
    args: argparse.Namespace, model, card, path: Path, writer, say: Callable[[str], object], name: str | None
) -> list[str] | None:
    """Classify the patterns of ``path`` and write their CSV rows; returns their predictions. ``say`` gets the notes
    on how far they can be trusted. ``name``: the path's name in the folder given (None when given by itself), where
    a source that cannot be read, when opened or in the run, is left out with a warning (returns None; its notes
    unsaid) and a folder of images is read for its
    own images alone (its sub-folders are sources of their own)."""
    from ebsd_core.caveats import blank_pattern_note, reading_notes
    from ebsd_core.inference import blank_points, predict_source
    from ebsd_core.io.readers import open_found_source, open_patterns
    from ebsd_core.predictions import csv_rows

    try:  # in a folder, a file found damaged, when opened or in the run, is left out: not the others' answers
        source = open_found_source(Path(path)) if name else open_patterns(path)
        notes = reading_notes(source, card)
        for note in () if name else notes:  # given by itself: said before a long run
            say(note)
        prediction = predict_source(
            model,
            card,
            source,
            batch_size=args.batch_size,
            progress=print_progress if args.verbose else None,
            precision=args.precision,
            compile=args.compile,
        )
    except InputError as exc:
        if not name:
            raise
        log.warning("%s (left out)", exc)
        return None
    for note in (notes if name else []) + blank_pattern_note(
        blank_points(prediction.quality), source.imageless, source.unread
    ):
        say(note)
    writer.writerows(csv_rows(source, prediction, name))
    return prediction.labels


@command("simulate-map")
def _simulate_map(args: argparse.Namespace) -> int:
    from ebsd_core.io.dataset import write_dataset
    from ebsd_core.phases import get_material
    from ebsd_core.simulate_map import layout_from_ang, parse_shape, simulate_scan, voronoi_layout

    phases = _csv(args.phases)
    if args.layout:
        voronoi = [name for name in ("shape", "grain_size", "step") if getattr(args, name) is not None]
        if voronoi:
            named = ", ".join("--" + name.replace("_", "-") for name in voronoi)
            raise EbsdError(f"--layout takes the map's shape, grains and step from {args.layout}: leave out {named}")
        layout = layout_from_ang(args.layout, phases or None)
    else:
        if len(phases) < 2:
            raise EbsdError("--phases needs at least two phases, e.g. ni,ni3al (see 'phases')")
        layout = voronoi_layout(
            [get_material(p) for p in phases],
            parse_shape(args.shape or "100x100"),
            grain_size=args.grain_size or 8.0,
            seed=args.seed,
            step_um=args.step or 1.0,
        )
    scan = simulate_scan(layout, size=args.size, seed=args.seed, progress=print_progress if args.verbose else None)
    write_dataset(scan, args.out)
    print(
        json.dumps(
            {
                "out": str(args.out),
                "nav_shape": list(scan.nav_shape),
                "layout": layout.origin,
                **{k: v for k, v in scan.summary().items() if k != "holdout_materials"},
            }
        )
    )
    return 0


@command("phasemap")
def _phasemap(args: argparse.Namespace) -> int:
    from ebsd_core.map_export import check_export_path, export_map
    from ebsd_core.phasemap import (
        CLUSTER_TASK_PATTERNS,
        attach_orientations,
        map_scan,
        map_scan_distributed,
        open_cluster,
    )
    from ebsd_core.simulate_map import parse_shape

    nav_shape = parse_shape(args.nav_shape) if args.nav_shape else None
    outputs = [Path(p) for p in args.out]
    for out in outputs:
        check_export_path(out)
    progress = print_progress if args.verbose else None
    # One process with every core and the compiled model beat a 2-worker LocalCluster on a 2-core CPU
    # (1,946 vs 1,010 patterns/s, 100,000 points): clusters are opt-in, for many cores, GPUs or nodes.
    scheduler = "none" if args.scheduler == "auto" else args.scheduler
    if args.workers is not None and scheduler != "local":
        raise EbsdError("--workers sizes the cluster that --scheduler local starts: add --scheduler local")
    if scheduler == "none":
        from ebsd_core.io.readers import open_patterns

        model, card = _load_for_inference(args)
        source = open_patterns(args.scan)
        if source.hexagonal_grid and nav_shape is None:
            return _hexagonal_phasemap(args, model, card, source, outputs)
        if args.orientations is not None:
            source = attach_orientations(source, args.orientations, nav_shape)
        phase_map = map_scan(
            model,
            card,
            source,
            nav_shape,
            args.batch_size,
            progress,
            precision=args.precision,
            compile=args.compile,
            cleanup=args.cleanup == "grain",
            views=args.views,
            views_below=args.views_below,
        )
    else:
        with open_cluster(scheduler, args.workers or 2) as client:
            phase_map = map_scan_distributed(
                args.model,
                args.scan,
                client,
                nav_shape,
                args.batch_size or CLUSTER_TASK_PATTERNS,
                args.device,
                progress,
                precision=args.precision,
                compile=args.compile,
                views=args.views,
                cleanup=args.cleanup == "grain",
                orientations=args.orientations,
                views_below=args.views_below,
            )
    if args.unknown_threshold is not None:  # a cluster's workers load the model with its own threshold
        phase_map = dataclasses.replace(phase_map, threshold=args.unknown_threshold)
    written, refused = [], []
    for out in outputs:  # a format that cannot hold this map leaves the others written
        try:
            written.append(str(export_map(phase_map, out)))
        except InputError as exc:
            log.error("%s", exc)
            refused.append(str(out))
    print(json.dumps({"written": written} | ({"refused": refused} if refused else {}) | phase_map.summary()))
    return 2 if refused else 0


#: What ``phasemap`` writes of a scan on a hexagonal grid (:func:`_hexagonal_phasemap`).
HEXAGONAL_OUTPUTS = {".png", ".ang", ".csv"}


def _hexagonal_phasemap(args: argparse.Namespace, model, card, source, outputs: list[Path]) -> int:
    """``phasemap`` of a scan on a hexagonal grid: its phases drawn on that grid (PNG), written into its own .ang
    (``--orientations``, OIM's indexing of it on that grid), whose points' places lay out a scan that does not say
    them, and as ``predict``'s CSV (after the grain clean-up, as the Phase map page's). The square map's formats are
    refused before any work."""
    from ebsd_core.caveats import blank_pattern_note, reading_notes
    from ebsd_core.grain_cleanup import clean_up_hexagonal
    from ebsd_core.inference import blank_points, predict_source
    from ebsd_core.map_export import write_grid_png, write_hexagonal_ang
    from ebsd_core.phasemap import attach_hexagonal_indexing, map_views, phases_for_model
    from ebsd_core.predictions import grid_points, prediction_counts, write_predictions

    indexing = args.orientations
    for out in outputs:
        if out.suffix.lower() == ".ang" and indexing is None:
            raise InputError(
                "the scan's grid is hexagonal: its .ang is its own (OIM's indexing of it, on that grid) with the "
                "model's phases; give that file (--orientations SCAN.ang)",
                out,
            )
        if out.suffix.lower() not in HEXAGONAL_OUTPUTS:
            raise InputError(
                "the scan's grid is hexagonal: its phases are drawn as .png, written into its own .ang "
                "(--orientations SCAN.ang) and given point by point as .csv (predict's columns); no square map is "
                "made of it (.ctf, .h5)",
                out,
            )
    if indexing is not None:
        source = attach_hexagonal_indexing(source, indexing)
    placed = source.hexagonal_places is not None
    if not placed and any(out.suffix.lower() != ".csv" for out in outputs):  # a CSV needs no places
        raise InputError(source.hexagonal_note, source.path)
    progress = print_progress if args.verbose else None
    cleanup = args.cleanup == "grain" and placed  # neighbours only where the points' places are known
    card = dataclasses.replace(card, views=map_views(card, cleanup, args.views))
    prediction = predict_source(
        model,
        card,
        source,
        args.batch_size,
        progress,
        precision=args.precision,
        compile=args.compile,
        scatter_views=cleanup,
    )
    if cleanup:
        smoothed = clean_up_hexagonal(prediction.probabilities, source, card.preprocess, progress)
        prediction = dataclasses.replace(prediction, probabilities=smoothed)
    points = grid_points(prediction, source.hexagonal_places) if placed else None
    blank = blank_points(prediction.quality)
    phases = phases_for_model(card)
    title = Path(source.path).name
    written = []
    for out in outputs:
        if out.suffix.lower() == ".ang":
            written.append(str(write_hexagonal_ang(points, phases, indexing, out)))
        elif out.suffix.lower() == ".csv":
            written.append(str(write_predictions(out, source, prediction, card)))
        else:
            written.append(str(write_grid_png(points, phases, out, title, source.step_um)))
    summary = {
        "source": source.path,
        "model": Path(args.model).name,
        "grid": "hexagonal",
        "grain_cleanup": cleanup,  # over each point's six neighbours
        "points": len(source),
        "phases": [p.label for p in phases],
        "predictions": prediction_counts(prediction),
        "unknown_threshold": card.unknown_threshold,
        "orientations": Path(indexing).name if indexing is not None else None,  # as a square map's summary says
        "notes": source.warnings
        + reading_notes(source, card)
        + blank_pattern_note(blank, source.imageless, source.unread),
    }
    print(json.dumps({"written": written} | summary))
    return 0


EXPLAIN_OPTIONS_USED = {  # besides --model and --out
    "filters": {"compare"},
    "activations": {"input", "index", "layer"},
    "gradcam": {"input", "index", "target", "layer"},
    "shap": {"input", "index", "target", "shap_method"},
}


@command("explain")
def _explain(args: argparse.Namespace) -> int:
    from ebsd_core.explain_report import explain_pattern

    if args.method != "filters" and args.input is None:
        raise EbsdError(f"--method {args.method} needs --input FILE and --index I")
    options = set().union(*EXPLAIN_OPTIONS_USED.values()) - EXPLAIN_OPTIONS_USED[args.method]
    unused = [option for option, value in vars(args).items() if option in options and value is not None]  # as parsed
    if unused:
        named = ", ".join("--" + option.replace("_", "-") for option in unused)
        them = "it" if len(unused) == 1 else "them"
        raise EbsdError(f"--method {args.method} does not use {named}: leave {them} out")
    explanation = explain_pattern(
        args.model,
        args.input,
        args.index or 0,
        args.method,
        target=args.target,
        layer=args.layer,
        compare=args.compare,
        shap_method=args.shap_method,
    )
    for note in explanation.notes:
        log.warning("%s: %s", args.input, note)
    written = explanation.save(args.out)
    print(json.dumps({"written": written, "captions": explanation.captions, **explanation.numbers}))
    return 0


@command("import-model")
def _import_model(args: argparse.Namespace) -> int:
    from ebsd_core.store import import_model, read_card

    target = import_model(args.source, args.name, args.store, force=args.force)
    card = read_card(target)
    print(json.dumps({"model": str(target), "backbone": card.backbone, "classes": card.class_symbols}))
    return 0


def _missing_folder_note(folder: Path) -> str:
    """`` (a link to X, which does not exist)`` or `` (no such folder)`` where ``folder`` is not there; else nothing."""
    if folder.is_dir():
        return ""
    return f" ({broken_link(folder) or 'no such folder'})"


@command("models")
def _models(args: argparse.Namespace) -> int:
    from ebsd_core.store import (
        default_store,
        delete_model,
        export_model,
        list_models,
        lost_store_problem,
        read_card,
        resolve_model_dir,
    )

    if args.action == "list":
        rows = list_models(args.store)
        if args.json:
            print(json.dumps(rows))
            return 0
        if not rows:
            store = args.store or default_store()
            print(f"no saved models in {store}{_missing_folder_note(store)}", file=sys.stderr)
            if lost := lost_store_problem(store):
                print(lost, file=sys.stderr)
        for row in rows:
            print(_model_line(row))
        return 0
    if not args.name:
        raise EbsdError(f"models {args.action}: give the model's NAME")
    if args.action == "show":
        from ebsd_core.caveats import own_test_words

        card = read_card(resolve_model_dir(args.name, args.store))
        told = {
            "Name": card.name or Path(args.name).name,
            **card.how_trained(),
            **({"Tested": words} if (words := own_test_words(card)) else {}),
            "Classes": " ".join(card.class_symbols),
        }
        if args.json:
            print(json.dumps(told))
        else:
            print("\n".join(f"{label}: {text}" for label, text in told.items()))
        return 0
    if args.action == "export":
        out = export_model(args.name, args.out or Path(f"{Path(args.name).name}.zip"), args.store, force=args.force)
        print(json.dumps({"model": args.name, "zip": str(out)}))
    else:
        moved = delete_model(args.name, args.store)
        print(json.dumps({"model": args.name, "moved_to": str(moved)}))
    return 0


def _model_line(row: dict) -> str:
    """One store entry as a tab-separated line: name, backbone, kind, accuracy, classes (or the problem)."""
    if row.get("error"):
        return f"{row['name']}: broken ({row['error']})"
    accuracy = "-" if row["accuracy"] is None else f"{row['accuracy']:.3f}"
    return f"{row['name']}\t{row['backbone']}\t{row['kind']}\taccuracy {accuracy}\t{' '.join(row['classes'])}"


@command("hash-password")
def _hash_password(args: argparse.Namespace) -> int:
    import getpass

    from ebsd_core.access import hash_password

    if args.stdin:  # a script's: the first line, as `htpasswd -i` reads it
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
        if not password:
            raise EbsdError("no password on the first line of standard input")
    else:
        try:
            password = getpass.getpass("Lab password: ")
            again = getpass.getpass("Again: ")
        except EOFError:
            raise EbsdError(
                "no password was typed: run it in a terminal and type the password twice, or give it on standard "
                "input with --stdin"
            ) from None
        if again != password:
            raise EbsdError("the two passwords differ")
    print(f'[access]\npassword_hash = "{hash_password(password)}"')
    return 0


DEVICE_HELP = "auto (CUDA, MPS, CPU; default), cpu, cuda, cuda:1, ..."


def _device(name: str):
    from ebsd_core.backbones import select_device

    return select_device(name)


def _path_and_space_group(text: str, option: str) -> tuple[Path, int]:
    from ebsd_core.phases import space_group_of_label

    path, _, group = text.rpartition("=")
    if not path:
        raise EbsdError(f"{option} {text!r}: write it as PATH=SPACEGROUP, e.g. ni.h5=Fm-3m")
    return Path(path), space_group_of_label(group)


@command("fewshot-curve")
def _fewshot_curve(args: argparse.Namespace) -> int:
    from ebsd_core.fewshot_curve import run_curve
    from ebsd_core.io.readers import open_patterns

    pattern_shape = open_patterns(args.data).pattern_shape
    result = run_curve(
        data=args.data,
        shots=_csv_ints(args.shots, "--shots", low=1),
        seeds=_csv_ints(args.seeds, "--seeds"),
        modes=_csv(args.modes),
        config_for=lambda shots, pretrained, seed: _train_config(args, shots, pretrained, seed, pattern_shape),
        out_dir=args.out,
        real_data=[_path_and_space_group(text, "--real-data") for text in args.real_data or []],
        progress=print_progress,
        also_views=(1,),
        save_models=args.save_models,
        also_binning=_csv_ints(args.also_binning, "--also-binning", low=1) if args.also_binning else (),
        resume=args.resume,
        force=args.force,
        epoch_progress=print_run_epoch,
    )
    print(json.dumps(result["summary"]))
    return 0


@command("fewshot-merge")
def _fewshot_merge(args: argparse.Namespace) -> int:
    from ebsd_core.fewshot_curve import merge_curves, transfer_beats_scratch

    curves = [path / "curve.json" if path.is_dir() else path for path in args.curve]
    summary = merge_curves(curves, args.out)["summary"]
    print(json.dumps({"summary": summary, "transfer_beats_scratch": transfer_beats_scratch(summary)}))
    return 0


#: Defaults of the engine's training settings that the help states (the CLI starts without importing the
#: engine; a test keeps them equal to ebsd_core.augment.AugmentConfig's and ebsd_core.train.TrainConfig's).
TRAINING_DEFAULTS = {"crystal_rotation": 30.0, "noise_std": 0.3, "views_below": 0.8}
#: ebsd_core.prior.PriorSettings's, likewise.
PRIOR_DEFAULTS = {"per_class": 150, "pattern_size": 120, "input_size": 128, "epochs": 20}


def _add_training_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, required=True, help="labelled dataset (.h5 from 'simulate' or 'dataset')")
    p.add_argument(
        "--backbone",
        default="efficientnet_lite0",
        help="registry name (see 'backbones') or any timm model name (default efficientnet_lite0)",
    )
    p.add_argument(
        "--weights",
        help="start from a local weights file (safetensors or state dict) or a saved model, e.g. an EBSD prior "
        "made with 'prior' (models/NAME); not with --scratch (fewshot-curve: its transfer runs only)",
    )
    p.add_argument(
        "--channels",
        choices=["adapt", "replicate"],
        default="adapt",
        help="how a grey pattern meets a colour network: adapt (its first layer's RGB kernels summed into one grey "
        "channel; default) or replicate (the pattern copied to three channels)",
    )
    p.add_argument(
        "--input-size",
        type=INPUT_SIZE,
        help="network input in pixels (default: the smallest of 32, 48, 64, 96, 128, 160, 224 that keeps every "
        "pixel of the patterns: 60 px -> 64, 120 px -> 128)",
    )
    p.add_argument(
        "--epochs",
        type=whole_number_within("epochs", 1, 10_000),
        default=30,
        help="epochs at most (early stopping may end sooner; default 30)",
    )
    p.add_argument(
        "--batch-size",
        type=whole_number_within("batch size", 1, 4096),
        default=32,
        help="patterns per training step (default 32)",
    )
    p.add_argument(
        "--lr",
        type=number_within("learning rate", 1e-7, 1),
        default=None,
        help="AdamW learning rate (default: 3e-3 for efficientnet_lite0 from ImageNet and from scratch, 1e-3 for "
        "other backbones and from --weights)",
    )
    p.add_argument(
        "--frozen-epochs",
        type=whole_number_within("frozen epochs", 0, 10_000),
        default=0,
        help="epochs training only the head first, on the pretrained weights (not with --scratch; default 0: off)",
    )
    p.add_argument(
        "--rotation",
        type=number_within("rotation", 0, 180),
        default=0.0,
        metavar="DEG",
        help="augment with rotations of the pattern about its centre up to DEG degrees (default 0: off; "
        "--crystal-rotation makes true patterns of other orientations instead)",
    )
    p.add_argument(
        "--crystal-rotation",
        type=number_within("crystal rotation", 0, 180),
        metavar="DEG",
        help="augment with crystal rotations up to DEG degrees, re-projected through the projection centre "
        f"(0 turns it off; default {TRAINING_DEFAULTS['crystal_rotation']:g})",
    )
    p.add_argument(
        "--camera-binning",
        type=whole_number_within("camera binning", 1, 16),
        default=1,
        metavar="F",
        help="also train on the patterns as cameras binned up to F times record them (4: 240 px patterns "
        "seen as 60 px ones too), for scans with fewer pixels than the training data (default 1: off)",
    )
    p.add_argument(
        "--noise",
        type=number_within("noise", 0, 10),
        metavar="K",
        help="augment with white noise of up to K times each pattern's standard deviation, at the camera "
        f"binning's pixel scale (default {TRAINING_DEFAULTS['noise_std']:g}; bench/RESULTS.md measures K = 2)",
    )
    _add_views_option(p, "test-time views the saved model predicts with")
    _add_views_below_option(p, f"{TRAINING_DEFAULTS['views_below']:g}")
    p.add_argument(
        "--rehearse",
        type=whole_number_within("rehearsal patterns", 0, 100_000),
        default=0,
        metavar="N",
        help="with --weights PRIOR (an EBSD prior, or a model trained on simulated patterns alone): also train on "
        "N simulated patterns per space group of its materials, weighted like the shots (better on materials the "
        "model has not seen, and keeps a model of a scan's phases right when fine-tuned on labelled regions of "
        "the scan; default 0: off)",
    )
    p.add_argument(
        "--rehearse-from",
        choices=("prior", "catalogue"),  # ebsd_core.rehearsal.REHEARSAL_SOURCES, unimported: the CLI starts light
        default="prior",
        help="with --rehearse: the prior's own materials (default), or every catalogue material of the classes that "
        "the data does not name (adds superlattice phases the prior may not have seen, and phases it was "
        "told not to see)",
    )
    p.add_argument(
        "--patience",
        type=whole_number_within("patience", 1, 10_000),
        default=8,
        help="early-stopping patience: epochs without a lower validation loss (default 8)",
    )
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument(
        "--unknown-threshold",
        type=number_within("unknown threshold", 0, 1),
        default=0.5,
        help="predict 'unknown' below this top probability (stored in the model; default 0.5)",
    )


def number_within(name: str, low: float, high: float) -> Callable[[str], float]:
    """An argparse type: a number from ``low`` to ``high``, refused with a message naming ``name``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{name} must be a number from {low:g} to {high:g}, not {text!r}")
        return value

    return parse


def whole_number_within(name: str, low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` to ``high``, refused with a message naming ``name``."""

    def parse(text: str) -> int:
        if not is_whole_number(text) or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(f"{name} must be a whole number from {low} to {high}, not {text!r}")
        return int(text)

    return parse


SEED = whole_number_within("seed", 0, 2**32 - 1)


PER_CLASS = whole_number_within("patterns per class", 1, 100_000)
PATTERN_SIZE = whole_number_within("pattern size", 16, 1024)
INPUT_SIZE = whole_number_within("input size", 16, 1024)
INFERENCE_BATCH = whole_number_within("batch size", 1, 65_536)


def file_to_write(example: str) -> Callable[[str], Path]:
    """An argparse type: the file an ``--out`` writes, refused where it ends in a slash, which names a folder (found
    on review: ``--out results/`` wrote a file named ``results``, as a path loses its trailing slash), or is ``-``."""

    def parse(text: str) -> Path:
        if text == "-":  # standard output to many tools: here it would be a file named "-"
            raise argparse.ArgumentTypeError(
                f"'-' would be a file named '-' (standard output carries the command's summary): give the file to "
                f"write, such as '{example}'"
            )
        if text.endswith(("/", os.sep)):
            raise argparse.ArgumentTypeError(
                f"{text!r} names a folder (it ends in '/'): give the file to write, such as '{text}{example}'"
            )
        return Path(text)

    return parse


def pattern_position(text: str) -> int | tuple[int, int] | str:
    """An argparse type: a pattern's index (``17``), its row and column in a map (``3,4``) or its image's file name
    in a folder or zip (``p17.png``, ``Fm-3m/p17.png``)."""
    from ebsd_core.io.images import is_image_name

    parts = [part.strip() for part in text.split(",")]
    if len(parts) in (1, 2) and all(is_whole_number(part) for part in parts):
        return int(parts[0]) if len(parts) == 1 else (int(parts[0]), int(parts[1]))
    if is_image_name(text):
        return text
    raise argparse.ArgumentTypeError(
        f"give a pattern's index (17), its row and column in a map (3,4) or its image's name (p17.png), not {text!r}"
    )


def _views(text: str) -> int:
    from ebsd_core.store import MAX_VIEWS

    return whole_number_within("views", 1, MAX_VIEWS)(text)


def _load_for_inference(args: argparse.Namespace):
    """The model and card of ``--model`` on ``--device``, predicting with ``--views`` when given."""
    from ebsd_core.store import load_model

    model, card = load_model(args.model, device=_device(args.device))
    if args.views:
        card.views = args.views
    if args.views_below is not None:
        card.views_below = args.views_below
    if getattr(args, "unknown_threshold", None) is not None:  # predict and phasemap take one
        card.unknown_threshold = args.unknown_threshold
    return model, card


def _add_unknown_threshold_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--unknown-threshold",
        type=number_within("unknown threshold", 0, 1),
        help="'unknown' below this top probability (default: the model's own); higher marks the patterns the model "
        "is unsure of, such as those of a phase it does not know",
    )


def _add_views_option(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--views",
        type=_views,
        metavar="N",
        help=f"{what}: average each pattern's probabilities over N re-projected views of its crystal "
        "(N times the work, fewer orientation-specific errors; default: the model's own)",
    )


def _add_views_below_option(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument(
        "--views-below",
        type=number_within("views-below", 0.01, 1),
        metavar="P",
        help="only patterns whose first view's top probability is below P get the other views; the rest keep "
        f"their first view's probabilities (1: every pattern gets every view, as always on a GPU; default: {default})",
    )


def _add_inference_options(
    p: argparse.ArgumentParser, compile_option: bool = True, views_below_default: str = "the model's own"
) -> None:
    _add_views_option(p, "inference")
    _add_views_below_option(p, views_below_default)
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        default="auto",
        help="inference arithmetic; auto: bf16 where it is faster (CPUs with AVX512-BF16 or AMX; GPUs from 128 px "
        "inputs on) and the model passed its bf16 check when trained, else fp32 (default auto)",
    )
    if compile_option:
        p.add_argument(
            "--compile",
            choices=["auto", "always", "never"],
            default="auto",
            help="compile the model (CPU: about 20 s each run, then 1.35-1.6x faster; GPU: 1.8x faster); "
            "auto: when the scan is large enough (one view each: 49,000 patterns at a 64 px input, 12,000 at 128 px, "
            "4,000 at 224 px; default)",
        )


SIMULATED_SIZE = 120  # default pattern size of simulations: at 60 px austenite/ferrite stays near chance


def _add_simulated_size_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--size",
        type=PATTERN_SIZE,
        default=SIMULATED_SIZE,
        help=f"pattern size in pixels (square; default {SIMULATED_SIZE}); 60 trains and maps 4x faster, but FCC vs "
        "BCC needs the detail of 120",
    )


def _add_simulate_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="simulate a labelled dataset (HDF5)")
    p.add_argument(
        "--classes",
        help="'default' (the six of Kaufmann et al.; the default without --phases or --cif) or space groups, "
        "e.g. 225,229 or Fm-3m,Im-3m",
    )
    p.add_argument("--phases", help="materials instead of classes, e.g. ni,ni3al (see 'phases')")
    p.add_argument("--cif", action="append", help="add a phase from a CIF file (repeatable)")
    p.add_argument("--holdout-materials", help="materials simulated as a held-out test split, e.g. cu,w")
    p.add_argument("--per-class", type=PER_CLASS, required=True, help="patterns per class")
    _add_simulated_size_option(p)
    p.add_argument(
        "--seed", type=SEED, default=0, help="random seed: the same seed gives the same patterns (default 0)"
    )
    p.add_argument("--out", type=file_to_write("data.h5"), required=True, help="the dataset to write (.h5)")
    p.add_argument("--force", action="store_true", help="replace an existing file")


def _add_dataset_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dataset", help="a labelled dataset (HDF5) from real patterns: class folders, or single-phase scans"
    )
    p.add_argument("--labelled", type=Path, help="a zip or folder of class folders (Fm-3m/, 229/, ...)")
    p.add_argument(
        "--scan",
        action="append",
        help="a single-phase scan and its space group, PATH=SPACEGROUP (e.g. ni.up1=Fm-3m, or by a catalogue "
        "material: ni.up1=ni); repeat per scan",
    )
    p.add_argument(
        "--region",
        action="append",
        help="a region of a scan's map that holds one phase, PATH=SPACEGROUP@ROWS,COLUMNS with first and last row "
        "and column (e.g. scan.h5=Fm-3m@10-19,30-49: rows 10 to 19, columns 30 to 49; on a hexagonal grid, "
        "column c of a row is its point c, counted from 0, as the map's hover names it); repeat per region, two "
        "phases or more, one scan",
    )
    p.add_argument("--nav-shape", help="with --region: ROWSxCOLS when the file does not record the map shape")
    p.add_argument(
        "--per-scan",
        type=whole_number_within("patterns per scan", 0, 100_000_000),
        metavar="N",
        help="with --scan: at most N patterns of each scan, spread evenly over it (default 1000, "
        "ebsd_core.assemble.PER_SCAN: enough for 400 shots, validation and testing; 0: every pattern); with "
        "--region: of each region",
    )
    p.add_argument(
        "--out", type=file_to_write("data.h5"), required=True, help="the dataset file to write, for train --data"
    )
    p.add_argument("--force", action="store_true", help="replace an existing file")


def _add_listing_commands(sub: argparse._SubParsersAction) -> None:
    """phases, backbones: the catalogue and registry, without options."""
    sub.add_parser("phases", help="list the phase catalogue")
    sub.add_parser(
        "backbones", help="list the backbone registry, which ImageNet weights work offline, and what they run on here"
    )


def _add_masters_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("masters", help="build master patterns with de-ebsd")
    p.add_argument("action", choices=["build"], help="build: compute master patterns with de-ebsd")
    p.add_argument("--phase", help="catalogue phases to rebuild (default: all)")
    p.add_argument("--cif", action="append", help="build the master of a CIF phase into the user cache")
    p.add_argument("--missing-only", action="store_true", help="skip phases whose master exists")


def _add_train_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="fine-tune a backbone on a few patterns per class")
    _add_training_options(p)
    p.add_argument("--shots", type=int, default=20, help="training patterns per class (default 20)")
    p.add_argument("--scratch", action="store_true", help="random initialisation instead of ImageNet weights")
    p.add_argument(
        "--seed", type=SEED, default=0, help="random seed of the few-shot sample and the training (default 0)"
    )
    p.add_argument("--out", required=True, help="models/NAME (or NAME)")
    p.add_argument("--force", action="store_true", help="replace an existing model of that name")


def _add_prior_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prior",
        help="train an EBSD prior on simulated patterns of other materials (then: train --weights models/PRIOR)",
    )
    p.add_argument(
        "--exclude",
        required=True,
        help="comma-separated materials the prior must not see: the phases your few-shot model will tell apart",
    )
    given = PRIOR_DEFAULTS
    p.add_argument(
        "--per-class", type=PER_CLASS, help=f"simulated patterns per space group (default {given['per_class']})"
    )
    p.add_argument(
        "--size", type=PATTERN_SIZE, help=f"simulated pattern size in pixels (default {given['pattern_size']})"
    )
    p.add_argument("--input-size", type=INPUT_SIZE, help=f"network input in pixels (default {given['input_size']})")
    p.add_argument(
        "--epochs", type=whole_number_within("epochs", 1, 10_000), help=f"training epochs (default {given['epochs']})"
    )
    p.add_argument("--out", required=True, help="models/NAME (or NAME)")
    p.add_argument("--force", action="store_true", help="replace an existing model of that name")


def _add_evaluate_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="metrics of a saved model on labelled data (JSON)")
    p.add_argument("--model", required=True, help="models/NAME (or NAME)")
    p.add_argument(
        "--data",
        type=Path,
        required=True,
        help="a labelled dataset, folder or zip; or PATH=SPACEGROUP: a scan, image or folder of one known phase "
        "(a reference sample, e.g. ni.h5=Fm-3m)",
    )
    p.add_argument(
        "--split",
        default="all",
        choices=["all", "train", "holdout"],
        help="which patterns to score: all (default), those of the training materials (train) or of the "
        "held-out materials (holdout); of the model's own training file, never those it learned from",
    )
    p.add_argument(
        "--batch-size", type=INFERENCE_BATCH, help="patterns per batch (default: 256 on a CPU, 4096 on a GPU)"
    )
    _add_inference_options(p, compile_option=False)


def _add_predict_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="classify patterns of any supported file, image or folder of images, or of each scan and sample folder "
        "in a folder",
    )
    p.add_argument("--model", required=True, help="models/NAME (or NAME)")
    p.add_argument(
        "--input",
        type=Path,
        required=True,
        help="a scan file, an image, a folder or zip of images, or a folder of scan files or of sample folders (each "
        "scan, NORDIF acquisition and folder of images in it read by itself)",
    )
    p.add_argument("--out", type=file_to_write("preds.csv"), required=True, help="CSV file")
    p.add_argument(
        "--batch-size", type=INFERENCE_BATCH, help="patterns per batch (default: 256 on a CPU, 4096 on a GPU)"
    )
    _add_unknown_threshold_option(p)
    _add_inference_options(p)


def _add_fewshot_curve_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fewshot-curve", help="accuracy vs shots per class, transfer vs scratch")
    _add_training_options(p)
    p.add_argument("--shots", default="1,5,10,20", help="comma-separated shots per class (default 1,5,10,20)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    p.add_argument(
        "--modes",
        default="transfer,scratch",
        help="comma-separated: transfer (from --weights or ImageNet), scratch (default both)",
    )
    p.add_argument("--real-data", action="append", help="real patterns to score, as PATH=SPACEGROUP (repeatable)")
    p.add_argument("--out", type=Path, required=True, help="folder for curve.json and curve.png")
    p.add_argument("--save-models", action="store_true", help="also save every model to OUT/models/")
    again = p.add_mutually_exclusive_group()
    again.add_argument(
        "--resume", action="store_true", help="OUT holds a curve stopped before its end: train only the runs it lacks"
    )
    again.add_argument("--force", action="store_true", help="OUT holds a curve: start it again (runs replaced)")
    p.add_argument(
        "--also-binning",
        default="",
        help="comma-separated camera binnings to score the models with too, e.g. 2,4 (default: none)",
    )


def _add_fewshot_merge_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fewshot-merge", help="one curve from several fewshot-curve runs (a sweep split up)")
    p.add_argument(
        "--curve", type=Path, action="append", required=True, help="a fewshot-curve --out folder or its curve.json"
    )
    p.add_argument("--out", type=Path, required=True, help="folder for the merged curve.json and curve.png")


def _add_simulate_map_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate-map", help="simulate a multi-phase scan with known ground truth (HDF5)")
    p.add_argument("--phases", help="two or more catalogue phases, e.g. ni,ni3al or austenite,ferrite")
    p.add_argument("--shape", help="ROWSxCOLS of the Voronoi map (default 100x100)")
    p.add_argument("--layout", type=Path, help="take phases and orientations from a real map (.ang, .ctf, orix .h5)")
    p.add_argument(
        "--grain-size",
        type=number_within("grain size", 1, 1e6),
        help="mean grain diameter in points of the Voronoi map (default 8)",
    )
    p.add_argument(
        "--step", type=number_within("step", 1e-4, 1e4), help="scan step of the Voronoi map in micrometres (default 1)"
    )
    _add_simulated_size_option(p)
    p.add_argument("--seed", type=SEED, default=0, help="random seed: the same seed gives the same scan (default 0)")
    p.add_argument(
        "--out", type=file_to_write("scan.h5"), required=True, help="the scan to write (.h5, with its ground truth)"
    )
    p.add_argument("--force", action="store_true", help="replace an existing file")


def _add_phasemap_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("phasemap", help="classify every pattern of a scan and export the phase map")
    p.add_argument("--model", required=True, help="models/NAME")
    p.add_argument("--scan", type=Path, required=True, help="scan file (any supported format)")
    p.add_argument(
        "--out",
        type=file_to_write("map.ang"),
        action="append",
        required=True,
        help="map.ang, map.ctf, map.h5, map.csv or map.png (repeatable); of a scan on a hexagonal grid, map.png, "
        "map.csv and, with its own .ang given (--orientations), map.ang",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace an existing .ang, .ctf or .h5 (which may be the microscope's own indexing; a .csv or .png is "
        "replaced without it)",
    )
    p.add_argument("--nav-shape", help="ROWSxCOLS when neither the scan nor --orientations records the map shape")
    p.add_argument(
        "--orientations",
        type=Path,
        help="the scan's Hough indexing (.ang, .ctf, .h5oina, OIM or orix .h5; points in the scan's order) whose "
        "orientations the exports keep, and whose map shape lays out images numbered in scan order; by default the "
        "orientations the scan file holds, if any. An .ang (of a hexagonal grid too) or .ctf is what --out map.ang "
        "or map.ctf writes again, with the model's phases",
    )
    p.add_argument(
        "--scheduler",
        default="auto",
        help="'none' or 'auto' (this process, every core; default), 'local' (a dask LocalCluster of --workers "
        "processes), or a scheduler address (tcp://host:8786)",
    )
    p.add_argument(
        "--workers", type=whole_number_within("workers", 1, 256), help="workers of the local cluster (default 2)"
    )
    p.add_argument(
        "--batch-size",
        type=INFERENCE_BATCH,
        help="patterns per batch (default: 256 on a CPU, 4096 on a GPU; per task on a cluster: 512)",
    )
    p.add_argument(
        "--cleanup",
        choices=["grain", "none"],
        default="grain",
        help="grain (default): average each point with its same-grain neighbours (patterns that correlate), a "
        "second pass over the scan; none: every point on its own",
    )
    _add_unknown_threshold_option(p)
    _add_inference_options(p, views_below_default="1, every point gets every view: the grain clean-up needs them")


def _add_explain_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="filters, activation maps, Grad-CAM or SHAP of one pattern (PNG + JSON)")
    p.add_argument("--model", required=True, help="models/NAME")
    p.add_argument("--input", type=Path, help="pattern file, image, folder or zip")
    p.add_argument(
        "--index",
        type=pattern_position,
        help="which pattern of the input: its index, ROW,COL in a map, or its image's name in a folder or zip "
        "(p17.png, Fm-3m/p17.png) (default 0)",
    )
    p.add_argument(
        "--method",
        choices=["filters", "activations", "gradcam", "shap"],
        required=True,
        help="filters: the first layer's kernels, before and after fine-tuning; activations: a layer's feature "
        "maps; gradcam: where the evidence for a class lies; shap: each pixel's share of a class's logit",
    )
    p.add_argument(
        "--target",
        help="gradcam, shap: the class to explain, as a symbol, space group, catalogue material or the model's class "
        "index (Fm-3m, 225, ni or 2; default: the predicted class)",
    )
    p.add_argument(
        "--layer",
        help="layer for activations / Grad-CAM (default: the deepest spatial convolution whose maps are a quarter "
        "of the input's side / the last convolution)",
    )
    p.add_argument("--compare", help="filters: a second model to show beside (e.g. the scratch model)")
    p.add_argument(
        "--shap-method",
        choices=("deep", "gradient"),  # ebsd_core.explain.SHAP_METHODS, unimported: the CLI starts light
        help="shap: the explainer (default deep: DeepLIFT, whose values add up exactly; where it cannot follow "
        "the network, as for ResNet, ConvNeXt or MobileNetV3, it gives way to gradient: expected gradients, "
        "sampled, which add up only on average)",
    )
    p.add_argument("--out", type=Path, required=True, help="folder for the PNG files")


def _add_import_model_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import-model", help="add a model trained elsewhere (a Results page zip or a folder) to the store"
    )
    p.add_argument("source", type=Path, help="NAME.zip (weights.safetensors + model.json) or a model folder")
    p.add_argument("--name", help="its name in the store (default: the name it was saved under)")
    p.add_argument("--store", type=Path, help="the model store (default: $EBSD_MODEL_STORE or models/)")
    p.add_argument("--force", action="store_true", help="replace a model of that name")


def _add_models_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="the model store: list; show NAME (how it was trained); export NAME (a zip for import-model or the "
        "Results page elsewhere); delete NAME (moved to the store's .deleted/)",
    )
    p.add_argument(
        "action",
        nargs="?",
        default="list",
        choices=["list", "show", "export", "delete"],
        help="list (default): the store's models; show NAME: how it was trained (as the Results page says); "
        "export NAME: a zip for import-model or the Results page elsewhere; delete NAME: to the store's .deleted/",
    )
    p.add_argument(
        "name", nargs="?", help="show, export, delete: the model's name in the store (show, export: or its folder)"
    )
    p.add_argument("--out", type=file_to_write("NAME.zip"), help="export: the zip to write (default: NAME.zip here)")
    p.add_argument("--force", action="store_true", help="export: replace the zip when it exists")
    p.add_argument("--json", action="store_true", help="list, show: JSON instead of lines")
    p.add_argument("--store", type=Path, help="the model store (default: $EBSD_MODEL_STORE or models/)")


def _add_hash_password_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("hash-password", help="print a shared-password hash for .streamlit/secrets.toml")
    p.add_argument(
        "--stdin", action="store_true", help="read the password from standard input's first line (for scripts)"
    )


def _add_info_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info", help="describe a pattern file, image folder or zip, or each one in a folder of scans or sample folders"
    )
    p.add_argument(
        "path",
        type=Path,
        help="a scan file, an image, a folder or zip of images, a dataset .h5, or a folder of scans or sample folders",
    )


# in the order --help lists them
COMMAND_PARSERS = (
    _add_simulate_command,
    _add_dataset_command,
    _add_listing_commands,
    _add_masters_command,
    _add_train_command,
    _add_prior_command,
    _add_evaluate_command,
    _add_predict_command,
    _add_fewshot_curve_command,
    _add_fewshot_merge_command,
    _add_simulate_map_command,
    _add_phasemap_command,
    _add_explain_command,
    _add_import_model_command,
    _add_models_command,
    _add_hash_password_command,
    _add_info_command,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ebsd_core",
        description="Few-shot classification of EBSD patterns by space group: simulate, train, evaluate, predict, "
        "map and explain. 'python -m ebsd_core COMMAND --help' tells more of each.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")
    for add_command in COMMAND_PARSERS:
        add_command(sub)
    return parser


NETWORK_COMMANDS = ("train", "prior", "evaluate", "predict", "fewshot-curve", "phasemap", "explain")  # run PyTorch
MODEL_OUTPUTS = ("train", "prior")  # --out is a model folder of the store
FOLDER_OUTPUTS = ("fewshot-curve", "fewshot-merge", "explain")  # --out is a folder of files
DATA_OUTPUTS = ("simulate", "simulate-map", "dataset")  # --out is a dataset that may have taken an hour to make


def _check_outputs(args: argparse.Namespace) -> None:
    """Fail before the work, not after it, when an output cannot be written."""
    from ebsd_core.atomic import check_writable_file, check_writable_folder

    outputs = getattr(args, "out", None)
    if outputs is None:
        return
    for out in outputs if isinstance(outputs, list) else [outputs]:
        if args.command in MODEL_OUTPUTS:
            from ebsd_core.store import check_can_save

            target = check_can_save(out, force=True)  # a folder that can be written, where a file is not in the way
            if target.exists() and not args.force:
                raise EbsdError(f"{target} already exists; choose another --out or pass --force to replace it")
        elif args.command in FOLDER_OUTPUTS:
            check_writable_folder(out)
        else:
            check_writable_file(out)
            _refuse_writing_over_inputs(Path(out), args)
            if (why := _kept_unless_forced(args, Path(out))) is not None and Path(out).exists() and not args.force:
                raise EbsdError(f"{out} already exists{why}; choose another --out or pass --force to replace it")


def _kept_unless_forced(args: argparse.Namespace, out: Path) -> str | None:
    """Why ``out`` is replaced only with ``--force`` (words to follow "already exists", maybe none), or None where an
    export of that name is replaced as any is: a dataset (:data:`DATA_OUTPUTS`), and a ``phasemap`` .ang, .ctf or .h5
    (:data:`~ebsd_core.map_export.INDEXING_SUFFIXES`)."""
    if args.command in DATA_OUTPUTS:
        return ""
    if args.command == "phasemap":
        from ebsd_core.map_export import INDEXING_SUFFIXES  # here: it imports the network's modules

        if out.suffix.lower() in INDEXING_SUFFIXES:
            return ", and may be the microscope's own indexing of a scan"
    return None


def _input_paths(args: argparse.Namespace) -> Iterator[tuple[str, Path]]:
    """(option, path) of every option that may name a file or folder the command reads (a model folder and a
    ``--cif`` too); ``PATH=SPACEGROUP`` gives its path. Options that name nothing on disk are dropped later."""
    for name, value in vars(args).items():
        for item in value if isinstance(value, list) else [value]:
            if name not in ("out", "command", "action") and isinstance(item, Path | str) and str(item):
                for text in {str(item), str(item).rpartition("=")[0]} - {""}:  # a file name may hold "=" too
                    yield "--" + name.replace("_", "-"), Path(text)


def _refuse_pipes(args: argparse.Namespace) -> None:
    """A named pipe (or a device) given to read: its reading waits for a writer for good, as ``import-model`` and
    ``fewshot-merge`` did (found on review), and no reader here reads a stream."""
    for _, path in _input_paths(args):
        try:
            special = path.exists() and not (path.is_file() or path.is_dir())
        except (OSError, ValueError):  # a value that names nothing on disk (a class list), or an odd name
            continue
        if special:
            raise InputError(f"{NOT_A_FILE}: give a file or folder", path)


def _refuse_writing_over_inputs(out: Path, args: argparse.Namespace) -> None:
    """An output must not replace what the command reads: ``phasemap --orientations scan.ang --out scan.ang``
    replaced the microscope's own indexing, ``predict --input scan.h5 --out scan.h5`` a scan with a CSV. Nor may a
    new image go into a folder read for its images (the next reading takes it for a pattern); a CSV may."""
    from ebsd_core.io.images import is_image_name

    for option, path in _input_paths(args):
        if path.is_dir() and out.resolve().is_relative_to(path.resolve()) and out.suffix.lower() != ".csv":
            if out.is_file():
                problem = f"is in the {option} folder, which this command reads: writing there would replace it"
            elif is_image_name(out.name):
                problem = f"is in the {option} folder, whose images are read: it would be read as a pattern next time"
            else:
                continue
        elif out.is_file() and path.exists() and out.resolve() == path.resolve():
            problem = f"is the {option} file, which this command reads: writing there would replace it"
        else:
            continue
        raise EbsdError(f"{out}: {problem}; choose another --out")


def _configure_logging(verbose: bool) -> None:
    """Messages as ``warning: FILE: what`` beside the ``error: FILE: what`` of a failed command."""
    for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR):
        logging.addLevelName(level, logging.getLevelName(level).lower())
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s: %(message)s")


def _stdout_reader_gone() -> bool:
    """Whether standard output is a pipe whose reader has closed it (``... | head``): no error to report."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # not a file descriptor, or no poll() on this platform
        return False


class _Terminated(KeyboardInterrupt):
    """SIGTERM: a batch system's time limit or ``scancel``, a ``kill``. Ends a command as Ctrl-C does, through its
    clean-up (a dask cluster closed, a sweep's kept runs named), where the signal's default left only a warning of
    leaked semaphores."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise _Terminated


@contextlib.contextmanager
def _sigterm_ends_as_ctrl_c() -> Iterator[None]:
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # main() called from a thread other than the main one: leave signals as they are
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    keep_freed_memory()  # the network's large activations reuse pages instead of faulting on new ones
    if args.command in NETWORK_COMMANDS:
        from ebsd_core.threads import fit_torch_threads

        fit_torch_threads()  # in a container or job capped below its cores, no more threads than it may run
    _configure_logging(args.verbose)
    if args.command in NETWORK_COMMANDS and getattr(args, "device", "auto") == "auto":
        from ebsd_core.backbones import unused_gpu_reason

        if reason := unused_gpu_reason():
            logging.warning(f"{reason}; running on the CPU")
    with _sigterm_ends_as_ctrl_c():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    """The command, its errors each in one line and an exit status: 2 for errors, 130 for Ctrl-C, 143 for SIGTERM."""
    try:
        _refuse_pipes(args)
        _check_outputs(args)
        status = COMMANDS[args.command](args)
        sys.stdout.flush()  # here, where a reader that has gone is caught below, not at exit
        return status
    except EbsdError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # what the checks above cannot foresee (a path that vanishes, a permission taken away)
        if isinstance(exc, BrokenPipeError) and _stdout_reader_gone():  # `... | head` has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to write at exit
            return 128 + signal.SIGPIPE  # as a tool that SIGPIPE ended, for `set -o pipefail`
        print(f"error: {os_error_text(exc)}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as exc:
        if (text := out_of_memory_text(exc)) is None:
            raise
        print(f"error: {text}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, _Terminated)
        print(f"error: {'terminated (SIGTERM)' if terminated else 'interrupted'}", file=sys.stderr)
        if args.command == "fewshot-curve" and (args.out / "curve.json").exists():
            kept = args.out / "curve.json"
            print(f"the finished runs are kept in {kept}: add --resume to train the rest", file=sys.stderr)
        return 128 + (signal.SIGTERM if terminated else signal.SIGINT)
