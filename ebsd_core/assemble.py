"""Labelled datasets from real pattern files: one labelled source, or single-phase scans with a space group each.

The Data page and ``python -m ebsd_core dataset`` both build their datasets here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ebsd_core.errors import InputError
from ebsd_core.io.dataset import Dataset, check_two_classes
from ebsd_core.io.hex_grid import grid_columns, grid_size
from ebsd_core.io.readers import PatternSource
from ebsd_core.phases import space_group_symbol
from ebsd_core.preprocess import BLANK_CAUSES, blank_patterns
from ebsd_core.wording import counted

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
        patterns=source.run_batch(0, len(source)),  # an image that cannot be read: blank, left out below
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
        record = _blank_record(blank, source.path, Path(source.path).name, names)
        dataset.provenance["blank_left_out"] = [_with_causes(record, source, np.flatnonzero(blank))]
    return _checked(dataset)


def _blank_record(blank: np.ndarray, path: str, file: str, names: Sequence[str] = ()) -> dict:
    """What :func:`blank_notes` says of the blank patterns (``blank``, a mask) left out of the source at ``path``,
    named ``file`` in the dataset; ``names``: of the blank patterns, where they have names."""
    if blank.all():
        raise InputError(
            "every pattern taken of it holds one value everywhere (blank frames): there is nothing to learn from", path
        )
    return {"file": file, "count": int(blank.sum()), "names": list(names[:5])}


def _with_causes(record: dict, source: PatternSource, blank: np.ndarray) -> dict:
    """``record`` with how many of the blank patterns (``blank``: their indices in ``source``) are of points without
    an image, and of images that could not be read when taken, with the first one's reason."""
    if lost := int(np.count_nonzero(source.imageless[blank])):
        record["no_image"] = lost  # points of a scan exported as images that have none
    if unread := [int(index) for index in blank if int(index) in source.unread]:
        record["unread"] = len(unread)
        record["unread_first"] = source.unread[unread[0]]
    return record


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
    _refuse_labelled([source for source, _ in scans])
    names = scan_files([source.path for source, _ in scans])
    parts = [
        (source, space_group, spread_over(len(source), per_scan, source.nav_shape), len(source), name.as_posix())
        for (source, space_group), name in zip(scans, names)
    ]
    dataset = _dataset_of_parts(parts, material_of=lambda name: Path(name).with_suffix("").as_posix())
    dataset.provenance.update(
        generator="single-phase scans",
        files=[name.as_posix() for name in names],
        space_groups=[int(sg) for _, sg in scans],
    )
    return dataset


@dataclass(frozen=True)
class MapRegion:
    """A rectangle of a scan's map whose points are all of one phase: first and last row and column, inclusive."""

    space_group: int
    rows: tuple[int, int]
    cols: tuple[int, int]

    def __str__(self) -> str:
        return f"rows {self.rows[0]}-{self.rows[1]}, columns {self.cols[0]}-{self.cols[1]}"

    def summary(self, places: np.ndarray | None = None) -> dict:
        """The region as a table shows it; of a hexagonal grid whose points' ``places`` are given, its points there."""
        return {
            "space group": space_group_symbol(self.space_group),
            "rows": f"{self.rows[0]}-{self.rows[1]}",
            "columns": f"{self.cols[0]}-{self.cols[1]}",
            "points": self.size if places is None else int(self._inside(places).sum()),
        }

    @property
    def size(self) -> int:
        return (self.rows[1] - self.rows[0] + 1) * (self.cols[1] - self.cols[0] + 1)

    def to_dict(self) -> dict:
        """The region as JSON keeps it (a dataset's provenance, the dashboard's session)."""
        return {"space_group": self.space_group, "rows": list(self.rows), "cols": list(self.cols)}

    @classmethod
    def from_dict(cls, data: dict) -> MapRegion:
        rows, cols = (tuple(int(v) for v in data[key]) for key in ("rows", "cols"))
        return cls(int(data["space_group"]), rows, cols)

    def points(
        self, nav_shape: tuple[int, int] | None, path: str | Path | None = None, places: np.ndarray | None = None
    ) -> np.ndarray:
        """Flat indices of the region's points on a map of ``nav_shape``, row by row; or, on a hexagonal grid whose
        points' ``places`` are given (:mod:`ebsd_core.io.hex_grid`; ``nav_shape`` unused), of its points in its rows
        and columns (:func:`~ebsd_core.io.hex_grid.grid_columns`), in the scan's order.

        Raises
        ------
        InputError
            When the region is empty or reaches outside the map (of the scan at ``path``, named in the message).
        """
        (first_row, last_row), (first_col, last_col) = self.rows, self.cols
        if first_row > last_row or first_col > last_col:
            raise InputError(f"region {self}: a first row or column after the last", path)
        rows, cols = nav_shape if places is None else grid_size(places)
        if min(first_row, first_col) < 0 or last_row >= rows or last_col >= cols:
            grid = f"map of {rows} x {cols} points" if places is None else f"hexagonal grid of {rows} rows"
            raise InputError(
                f"region {self} reaches outside the {grid} (rows 0-{rows - 1}, columns 0-{cols - 1})", path
            )
        if places is not None:
            return np.flatnonzero(self._inside(places))
        return (np.arange(first_row, last_row + 1)[:, None] * cols + np.arange(first_col, last_col + 1)).ravel()

    def _inside(self, places: np.ndarray) -> np.ndarray:
        """Which points of a hexagonal grid's ``places`` lie in the region."""
        rows, cols = np.asarray(places)[:, 0], grid_columns(places)
        return (rows >= self.rows[0]) & (rows <= self.rows[1]) & (cols >= self.cols[0]) & (cols <= self.cols[1])


#: Shown wherever a dataset is made of labelled regions of a map.
MAP_REGIONS_CAUTION = (
    "The test patterns come from the same regions as the shots, mostly the same grains, so the test accuracy "
    "flatters the model: judge it by the phase map of the whole scan. Label 4 grains or more of each phase, spread "
    "over the scan, and start training from a model trained on simulated patterns of the phases, rehearsing them "
    "(Train: Transfer starts from, Rehearsal; train --weights models/MODEL --rehearse 80 on the command line). "
    "Simulated scans were then mapped 0.998-0.999 right: Ni/Ni3Al, where the model alone got 0.935, and a real "
    "duplex steel's map, where fine-tuning without rehearsal took the model's 0.985 down to 0.864 (bench/RESULTS.md)."
)


#: Grains to label of each phase at least: with 2, fine-tuning without rehearsal taught the grains' orientations and
#: the maps got worse (bench/map_regions.py: Ni/Ni3Al 0.568 and austenite/ferrite 0.787 from simulation-trained models
#: that alone mapped 0.935 and 0.980; with 4, 0.998 and 0.989; with rehearsal 2 gave 0.999 for Ni/Ni3Al)
FEWEST_REGIONS = 4


#: Shots per class to train on labelled regions: on a simulated 24 x 30 duplex scan labelled in 7 regions, 10, 20 and
#: 40 shots from a simulation-trained model mapped 0.892-1.000, 0.997-1.000 and 0.901-0.985 of it right (3 seeds;
#: bench/RESULTS.md); more shots of the same grains teach their orientations
REGION_SHOTS = 20


def region_shots(labels: np.ndarray, preferred: int = REGION_SHOTS) -> int:
    """``preferred`` shots per class, or half the smallest class's patterns (the rest validate and test)."""
    counts = np.bincount(np.asarray(labels)[np.asarray(labels) >= 0])
    smallest = int(counts[counts > 0].min()) if (counts > 0).any() else 2
    return max(1, min(preferred, smallest // 2))


def few_regions_notes(regions: Sequence[MapRegion]) -> list[str]:
    """A warning for each space group labelled in fewer than :data:`FEWEST_REGIONS` regions."""
    counts: dict[int, int] = {}
    for region in regions:
        counts[region.space_group] = counts.get(region.space_group, 0) + 1
    return [
        f"{space_group_symbol(group)}: {counted(n, 'region')}; label {FEWEST_REGIONS} grains or more of each phase: "
        "fewer teach the model their orientations rather than their crystal, unless it rehearses simulated patterns "
        "of the phases (on a simulated Ni/Ni3Al scan, 2 grains of each phase took a model's map from 0.935 to 0.568 "
        "right without rehearsal, to 0.999 with it: bench/RESULTS.md)"
        for group, n in sorted(counts.items())
        if n < FEWEST_REGIONS
    ]


def dataset_from_regions(
    source: PatternSource,
    regions: Sequence[MapRegion],
    per_region: int | None = PER_SCAN,
    nav_shape: tuple[int, int] | None = None,
) -> Dataset:
    """A dataset of regions of one scan's map, each labelled with the space group of its phase: the few shots
    a microscopist can give of a multi-phase scan (grains they know). A region's material is the scan's name and
    the region (``scan r10-19 c30-49``), so that the Results page scores each region.

    ``per_region``: at most this many patterns of each region, spread evenly over it (None or 0: every one).
    ``nav_shape``: the map's rows and columns, where the file does not record them (images). A scan on a hexagonal
    grid whose points' places it records is taken on that grid (:meth:`MapRegion.points`). The labels a simulated
    scan holds are not used: the regions' space groups are the labels.

    Raises
    ------
    InputError
        When the source records no map shape and none is given, a region reaches outside the map, a point lies in
        regions of two space groups, or the regions are all of one space group.
    """
    source, shape, places = _region_grid(source, nav_shape)
    if not regions:
        raise InputError("no regions given", source.path)
    if len(groups := {region.space_group for region in regions}) < 2:
        raise InputError(
            f"every region is {space_group_symbol(groups.pop())}: label regions of two phases or more", source.path
        )
    stem = Path(source.path).stem
    parts = []
    for region, points in zip(regions, region_points(regions, shape, source.path, places)):
        region_shape = (region.rows[1] - region.rows[0] + 1, region.cols[1] - region.cols[0] + 1)
        chosen = points[spread_over(len(points), per_region, region_shape)]
        name = f"{stem} r{region.rows[0]}-{region.rows[1]} c{region.cols[0]}-{region.cols[1]}"
        parts.append((source, region.space_group, chosen, len(points), name))
    dataset = _dataset_of_parts(parts)
    dataset.provenance.update(
        generator="map regions",
        files=[Path(source.path).name],
        regions=[region.to_dict() for region in regions],
        nav_shape=list(shape),
        **({"grid": "hexagonal"} if places is not None else {}),
    )
    return dataset


def _region_grid(
    source: PatternSource, nav_shape: tuple[int, int] | None
) -> tuple[PatternSource, tuple[int, ...], np.ndarray | None]:
    """The source laid out for regions, its map's rows and columns, and on a hexagonal grid its points' places."""
    if source.hexagonal_grid:  # rows and columns given would take its patterns from the wrong places
        if source.hexagonal_places is None:
            raise InputError(
                f"{source.hexagonal_note}. A region of it cannot be taken: if it holds one phase, label the scan "
                "whole (dataset --scan PATH=SPACEGROUP; on the Data page, a scan of one phase)",
                source.path,
            )
        if nav_shape:
            raise InputError(
                "was recorded on a hexagonal grid, and says where its points lie on it: its regions' rows and "
                "columns are that grid's, so give no map shape (--nav-shape)",
                source.path,
            )
        return source, grid_size(source.hexagonal_places), source.hexagonal_places
    shape = tuple(nav_shape or source.nav_shape or ())
    source = source.laid_on(shape)  # a map of more rows than its images give (an export cut short): blank there
    if len(shape) != 2 or shape[0] * shape[1] != len(source):
        raise InputError(
            "regions need the map's rows and columns, and the file records none for its "
            + counted(len(source), "pattern"),
            source.path,
        )
    return source, shape, None


def region_points(
    regions: Sequence[MapRegion],
    nav_shape: tuple[int, int] | None,
    path: str | Path | None = None,
    places: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Each region's points on a map of ``nav_shape``, or on a hexagonal grid whose points' ``places`` are given
    (:meth:`MapRegion.points`); a point of two regions of one space group is the first's.

    Raises
    ------
    InputError
        When a region reaches outside the map, overlaps a region of another space group, holds no point of a
        hexagonal grid, or lies inside regions given before it (``path``: the scan, named in the message).
    """
    owner = np.full(len(places) if places is not None else nav_shape[0] * nav_shape[1], -1)  # whose each point is
    taken = []
    for i, region in enumerate(regions):
        points = region.points(nav_shape, path, places)
        if not len(points):  # a hexagonal grid's places the scan lacks
            raise InputError(f"region {region} holds no point of the scan", path)
        others = [regions[j] for j in np.unique(owner[points]) if j >= 0]
        if clash := next((other for other in others if other.space_group != region.space_group), None):
            raise InputError(f"regions {clash} and {region} overlap but name different space groups", path)
        points = points[owner[points] < 0]
        if not len(points):
            raise InputError(f"region {region} lies inside regions given before it", path)
        owner[points] = i
        taken.append(points)
    return taken


def _refuse_labelled(sources: Sequence[PatternSource]) -> None:
    if labelled := next((source for source in sources if source.labelled), None):
        raise InputError("holds labelled patterns: use it as the labelled source, not as a scan", labelled.path)


def _dataset_of_parts(
    parts: list[tuple[PatternSource, int, np.ndarray, int, str]], material_of: Callable[[str], str] = str
) -> Dataset:
    """A dataset of ``parts``: (source, space group, indices of the patterns taken, of how many, name); a part's
    material is ``material_of(name)``. Each source's static background is subtracted from its patterns where it has
    one."""
    classes = sorted({int(part[1]) for part in parts})
    shape = parts[0][0].pattern_shape
    backgrounds = {id(source): _own_background(source) for source, *_ in parts}
    subtract = any(background is not None for background in backgrounds.values())
    patterns, labels, materials, blanks = [], [], [], []
    for source, space_group, chosen, _, name in parts:
        if source.pattern_shape != shape:
            rows, cols = source.pattern_shape
            raise InputError(
                f"patterns are {cols}x{rows}, those of the first scan {shape[1]}x{shape[0]}: a dataset holds one "
                "pattern size, so use scans recorded with the same camera and binning",
                source.path,
            )
        whole = len(chosen) == len(source)  # chosen indices are distinct
        # an image that cannot be read is blank, left out below
        block = source.run_batch(0, len(source)) if whole else source.take(chosen, lenient=True)
        blank = np.asarray(blank_patterns(block))  # before the background: a blank frame minus it is not blank
        if blank.any():
            block = block[~blank]
            taken = np.arange(len(source)) if whole else np.asarray(chosen)
            blanks.append(_with_causes(_blank_record(blank, source.path, name), source, taken[blank]))
        if subtract:
            background = backgrounds[id(source)]
            block = block.astype(np.float32) - (0.0 if background is None else background)
        patterns.append(block)
        labels.append(np.full(len(block), classes.index(int(space_group))))
        materials.append(np.full(len(block), material_of(name), dtype=object))
    return _checked(
        Dataset(
            patterns=np.concatenate(patterns),
            labels=np.concatenate(labels),
            classes=classes,
            material=np.concatenate(materials),
            provenance={
                "parts": [name for *_, name in parts],
                "static_background_subtracted": [backgrounds[id(source)] is not None for source, *_ in parts],
                "patterns_taken_of": [[len(chosen), of] for _, _, chosen, of, _ in parts],  # spread evenly over each
                **({"blank_left_out": blanks} if blanks else {}),
            },
        )
    )


def sampling_notes(dataset: Dataset) -> list[str]:
    """``FILE: N of its M patterns ...`` for each scan of which only a part was taken (dataset_from_scans)."""
    parts = dataset.provenance.get("parts") or dataset.provenance.get("files", [])  # files: datasets made before parts
    taken = dataset.provenance.get("patterns_taken_of", [])
    over = "its region" if dataset.provenance.get("generator") == "map regions" else "the scan"
    return [
        f"{name}: {used:,} of its {total:,} patterns were taken, spread evenly over {over}"
        for name, (used, total) in zip(parts, taken)
        if used < total
    ]


def blank_notes(dataset: Dataset) -> list[str]:
    """``FILE: N blank patterns ... were left out`` for each source that had some (see :func:`blank_patterns`)."""
    notes = []
    for record in dataset.provenance.get("blank_left_out", []):
        more = ", ..." if record["count"] > len(record["names"]) else ""
        names = f" ({', '.join(record['names'])}{more})" if record["names"] else ""
        note = (
            f"{record['file']}: {counted(record['count'], 'blank pattern')}{names} "
            f"{'was left out: it holds' if record['count'] == 1 else 'were left out: they hold'} one value "
            f"everywhere ({BLANK_CAUSES})"
        )
        note += _of_them(record["count"], record.get("no_image", 0), "a point", "points", "without an image")
        note += _of_them(record["count"], record.get("unread", 0), "an image", "images", "that could not be read")
        notes.append(note + (f" (the first, {record['unread_first']})" if record.get("unread") else ""))
    return notes


def _of_them(count: int, some: int, one: str, many: str, what: str) -> str:
    """What :func:`blank_notes` adds of ``some`` of ``count`` blank patterns that are ``one``/``many`` ``what``."""
    if not some:
        return ""
    if some == count:
        return f"; it is {one} {what}" if count == 1 else f"; they are {many} {what}"
    return f"; {some:,} of them {f'is {one}' if some == 1 else f'are {many}'} {what}"


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
