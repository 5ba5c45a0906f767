"""Labelled datasets from real pattern files: one labelled source, or single-phase scans with a space group each.

The Data page and ``python -m ebsd_core dataset`` both build their datasets here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ebsd_core.errors import InputError
from ebsd_core.io.dataset import Dataset, check_two_classes
from ebsd_core.io.readers import PatternSource
from ebsd_core.preprocess import BLANK_CAUSES, blank_patterns

#: Shown wherever a dataset made of single-phase scans is created (measured in bench/RESULTS.md, bench/realshots.py).
SINGLE_PHASE_SCANS_CAUTION = (
    "Each class comes from its own scan, so a model can learn to tell the scans apart (camera, session, "
    "exposure) instead of the crystals. Check it on a scan that holds several phases. A model fine-tuned on "
    "real patterns of one phase from one camera read other crystals in that camera's patterns as that phase "
    "too (bench/RESULTS.md)."
)


def dataset_from_labelled(source: PatternSource) -> Dataset:
    """A dataset of every pattern of a labelled source (a zip or folder of class folders, a dataset file)."""
    if not source.labelled:
        raise InputError("has no labels: give each single-phase scan its space group instead", source.path)
    if source.material is not None:
        material = np.asarray(source.material, dtype=object)
    elif source.names is not None:
        material = np.array([name.split("/")[0] for name in source.names], dtype=object)
    else:
        material = np.full(len(source), Path(source.path).stem, dtype=object)
    dataset = Dataset(
        patterns=source.batch(0, len(source)),
        labels=source.labels,
        classes=list(source.classes),
        material=material,
        split=source.split,
        quaternions=source.quaternions,
        static_background=source.static_background,
        provenance={"generator": "labelled source", "files": [Path(source.path).name]},
    )
    blank = np.asarray(blank_patterns(dataset.patterns))
    if blank.any():
        dataset = dataset.subset(np.flatnonzero(~blank))
        names = [source.names[i] for i in np.flatnonzero(blank)] if source.names else []
        dataset.provenance["blank_left_out"] = [_blank_record(blank, source.path, Path(source.path).name, names)]
    return _checked(dataset)


def _blank_record(blank: np.ndarray, path: str, file: str, names: Sequence[str] = ()) -> dict:
    """What :func:`blank_notes` says of the blank patterns (``blank``, a mask) left out of the source at ``path``,
    named ``file`` in the dataset; ``names``: of the blank patterns, where they have names."""
    if blank.all():
        raise InputError(
            "every pattern taken of it holds one value everywhere (blank frames): there is nothing to learn from", path
        )
    return {"file": file, "count": int(blank.sum()), "names": list(names[:5])}


#: Patterns taken from each single-phase scan by default: enough for 400 shots, validation and a test split, while a
#: full scan (10^5-10^6 patterns) would take gigabytes of memory and disk for patterns no few-shot training uses.
PER_SCAN = 1000


def spread_over(count: int, most: int | None, nav_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Indices (increasing) of at most ``most`` of a scan's ``count`` patterns, spread evenly over it: on a grid of
    rows and columns over a map of ``nav_shape`` (evenly spaced flat indices would fall on a few columns of it),
    otherwise along the scan; all of them when ``most`` is None or 0 or not smaller than ``count``."""
    if not most or most >= count:
        return np.arange(count)

    def centres(length: int, taken: int) -> np.ndarray:  # the middle of each of ``taken`` equal parts
        return np.unique(((np.arange(taken) + 0.5) * length / taken).astype(np.int64))

    if nav_shape is not None and len(nav_shape) == 2 and nav_shape[0] * nav_shape[1] == count:
        rows, cols = nav_shape
        taken_rows = max(1, min(rows, most, round(np.sqrt(most * rows / cols))))
        taken_cols = max(1, min(cols, most // taken_rows))
        return (centres(rows, taken_rows)[:, None] * cols + centres(cols, taken_cols)[None, :]).ravel()
    return centres(count, most)


def scan_files(paths: Sequence[str | Path]) -> list[Path]:
    """How each scan is named in a dataset: its file name, with its folder where two share a name (every NORDIF
    scan is a ``Pattern.dat``; a material is the name without its suffix).

    Raises
    ------
    InputError
        When one scan is given twice.
    """
    paths = [Path(path) for path in paths]
    resolved = [path.resolve() for path in paths]
    if twice := next((path for path, real in zip(paths, resolved) if resolved.count(real) > 1), None):
        raise InputError("is given twice: give each scan once, with its space group", twice)
    names = [path.name for path in paths]
    return [Path(path.parent.name, path.name) if names.count(path.name) > 1 else Path(path.name) for path in paths]


def dataset_from_scans(scans: Sequence[tuple[PatternSource, int]], per_scan: int | None = PER_SCAN) -> Dataset:
    """One dataset of single-phase scans, each (source, space-group number); a scan's material is its name
    (:func:`scan_files`) without the suffix.

    ``per_scan``: at most this many patterns of each scan, spread evenly over it (None or 0: every pattern).
    A dataset holds one static background, and each scan brings its own: where a scan has one, its
    patterns are stored with it already subtracted (float32), as inference on that scan will see them.

    Raises
    ------
    InputError
        If a scan holds labelled patterns already, the scans' patterns differ in shape, or all scans
        are of one space group.
    """
    if not scans:
        raise InputError("no scans given")
    classes = sorted({int(space_group) for _, space_group in scans})
    shape = scans[0][0].pattern_shape
    backgrounds = [_own_background(source) for source, _ in scans]
    subtract = any(background is not None for background in backgrounds)
    if labelled := next((source for source, _ in scans if source.labelled), None):
        raise InputError("holds labelled patterns: use it as the labelled source, not as a scan", labelled.path)
    names = scan_files([source.path for source, _ in scans])
    patterns, labels, materials, taken, blanks = [], [], [], [], []
    for (source, space_group), background, name in zip(scans, backgrounds, names):
        if source.pattern_shape != shape:
            rows, cols = source.pattern_shape
            raise InputError(
                f"patterns are {cols}x{rows}, those of the first scan {shape[1]}x{shape[0]}: a dataset holds one "
                "pattern size, so use scans recorded with the same camera and binning",
                source.path,
            )
        chosen = spread_over(len(source), per_scan, source.nav_shape)
        block = source.batch(0, len(source)) if len(chosen) == len(source) else source.take(chosen)
        taken.append([len(chosen), len(source)])
        blank = np.asarray(blank_patterns(block))  # before the background: a blank frame minus it is not blank
        if blank.any():
            block = block[~blank]
            blanks.append(_blank_record(blank, source.path, name.as_posix()))
        if subtract:
            block = block.astype(np.float32) - (0.0 if background is None else background)
        patterns.append(block)
        labels.append(np.full(len(block), classes.index(int(space_group))))
        materials.append(np.full(len(block), name.with_suffix("").as_posix(), dtype=object))
    return _checked(
        Dataset(
            patterns=np.concatenate(patterns),
            labels=np.concatenate(labels),
            classes=classes,
            material=np.concatenate(materials),
            provenance={
                "generator": "single-phase scans",
                "files": [name.as_posix() for name in names],
                "space_groups": [int(space_group) for _, space_group in scans],
                "static_background_subtracted": [background is not None for background in backgrounds],
                "patterns_taken_of": taken,  # per scan: [taken, in the scan], spread evenly over it
                **({"blank_left_out": blanks} if blanks else {}),
            },
        )
    )


def sampling_notes(dataset: Dataset) -> list[str]:
    """``FILE: N of its M patterns ...`` for each scan of which only a part was taken (dataset_from_scans)."""
    files = dataset.provenance.get("files", [])
    taken = dataset.provenance.get("patterns_taken_of", [])
    return [
        f"{name}: {used:,} of its {total:,} patterns were taken, spread evenly over the scan"
        for name, (used, total) in zip(files, taken)
        if used < total
    ]


def blank_notes(dataset: Dataset) -> list[str]:
    """``FILE: N blank patterns ... were left out`` for each source that had some (see :func:`blank_patterns`)."""
    notes = []
    for record in dataset.provenance.get("blank_left_out", []):
        more = ", ..." if record["count"] > len(record["names"]) else ""
        names = f" ({', '.join(record['names'])}{more})" if record["names"] else ""
        notes.append(
            f"{record['file']}: {record['count']:,} blank pattern(s){names} were left "
            f"out: they hold one value everywhere ({BLANK_CAUSES})"
        )
    return notes


def _own_background(source: PatternSource) -> np.ndarray | None:
    """The scan's static background as float32, when it fits its patterns (preprocessing ignores others too)."""
    background = source.static_background
    if background is None or tuple(np.shape(background)) != source.pattern_shape:
        return None
    return np.asarray(background, dtype=np.float32)


def checked_dataset_file(source: PatternSource) -> Path:
    """The path of a dataset file that can be trained on as it is; refuses one of a single class."""
    check_two_classes(source.labels, source.classes, source.path)
    return Path(source.path)


def _checked(dataset: Dataset) -> Dataset:
    check_two_classes(dataset.labels, dataset.classes)
    return dataset
