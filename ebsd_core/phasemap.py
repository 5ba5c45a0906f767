"""Phase maps: classify every pattern of a scan, with bounded memory.

:func:`map_scan` streams a scan in batches through the model in this process;
:func:`map_scan_distributed` sends slices of the scan to the workers of a
dask.distributed cluster (a ``LocalCluster`` on this machine, or any scheduler
address), each of which opens the scan and the saved model itself. Both return a
:class:`PhaseMap`, which becomes an orix ``CrystalMap`` for the ecosystem's
tools and exports (:mod:`ebsd_core.map_export`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import os
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ebsd_core.caveats import blank_pattern_note, reading_notes
from ebsd_core.errors import CancelledError, InputError
from ebsd_core.inference import (
    UNKNOWN,
    Decisions,
    blank_points,
    classify_batch,
    compile_wanted,
    decide,
    predict_source,
    views_for_all,
)
from ebsd_core.io.orientations import known
from ebsd_core.io.readers import PatternSource, open_patterns
from ebsd_core.phases import get_material, materials_for, space_group_symbol
from ebsd_core.store import META, ModelCard
from ebsd_core.wording import counted

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
PHASE_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
UNKNOWN_COLOUR = "#000000"
# With the grain clean-up every point gets 2 test-time views of its own: on four development maps
# (bench/phasemap.py views) that beat the model's 4 shared views, 0.966 -> 0.978, at half the cost
# (4 views of its own: 0.980, twice the work). Every point gets them, whatever the model's views_below:
# giving them only to the points whose first view is below 0.8 was 1.6x faster on the same maps but cost
# 0.03 of map accuracy after the clean-up (0.907 -> 0.877; bench/phasemap.py views --views-below 0.8).
MAP_VIEWS = 2


@dataclass(frozen=True)
class MapPhase:
    """A phase of the map: one class of the model."""

    name: str
    space_group: int
    a: float  # lattice parameter (angstrom), for the export headers
    colour: str

    @property
    def symbol(self) -> str:
        return space_group_symbol(self.space_group)

    @property
    def label(self) -> str:
        return f"{self.name} ({self.symbol})" if self.name != self.symbol else self.symbol


def phases_for_model(card: ModelCard) -> list[MapPhase]:
    """Name the classes after the materials they were trained on when each class had just one.

    A model of one sample's phases (Ni and Ni3Al) then labels its map with them. A model trained on
    several materials for some class is a space-group classifier: all its classes are named by space
    group, so that a map of it does not claim a material it only learnt a class from.
    """
    trained = [str(m) for m in card.training.get("materials", [])]
    catalogued = []
    for key in trained:
        try:
            catalogued.append(get_material(key))
        except InputError:
            continue
    by_class = [[m for m in catalogued if m.space_group == sg] for sg in card.classes]
    one_each = all(len(mats) == 1 for mats in by_class)
    phases = []
    for i, (sg, mats) in enumerate(zip(card.classes, by_class)):
        name = mats[0].short_name if one_each else space_group_symbol(sg)
        a = mats[0].a if mats else (materials_for(sg)[0].a if materials_for(sg) else 4.0)
        phases.append(MapPhase(name, sg, float(a), PHASE_COLOURS[i % len(PHASE_COLOURS)]))
    return phases


@dataclass
class PhaseMap(Decisions):
    """Per-point classification of a 2D scan."""

    nav_shape: tuple[int, int]
    phases: list[MapPhase]
    probabilities: np.ndarray  # (N, C) float32
    quality: np.ndarray  # (N,) image quality
    threshold: float
    step_um: float = 1.0
    truth: np.ndarray | None = None  # (N,) index into phases, -1 = unknown or not a model class
    source: str = ""
    model: str = ""
    notes: list[str] = field(default_factory=list)  # warnings a user should see with the map
    raw_probabilities: np.ndarray | None = None  # (N, C) before the grain clean-up, when it ran
    rotations: np.ndarray | None = None  # (N, 4) the scan's own orientations (orix quaternions), NaN unknown
    orientations_from: str = ""  # where ``rotations`` came from; "" when the scan had none
    indexing: str = ""  # the separate indexing file of ``rotations`` (its path): an .ang of it, its .ang export keeps
    # the test-time views its points got: {"views": n, "views_below": x or None, "own": each point its own ones};
    # empty for maps saved before 2026-12-05
    views: dict = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(self.probabilities.shape[0])

    def grid(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values).reshape(self.nav_shape)

    def coordinates(self) -> tuple[np.ndarray, np.ndarray]:
        """x, y of every point in micrometres (row-major)."""
        rows, cols = self.nav_shape
        yy, xx = np.divmod(np.arange(rows * cols), cols)
        return xx * self.step_um, yy * self.step_um

    def shown_points(self, max_points: int) -> tuple[np.ndarray, np.ndarray, int]:
        """The rows and columns of the points to draw when a screen can show ``max_points``: every ``step``-th row
        and column, ``step`` as small as that allows (1: every point). Returns (rows, columns, step)."""
        rows, cols = self.nav_shape
        step = max(1, math.isqrt(rows * cols // max_points))
        while -(-rows // step) * -(-cols // step) > max_points:
            step += 1
        return np.arange(0, rows, step), np.arange(0, cols, step), step

    @property
    def blank(self) -> np.ndarray:
        """Which points' patterns are blank (a dropped frame, a point without an image): nothing to classify."""
        return blank_points(self.quality)

    @property
    def mean_confidence(self) -> float | None:
        """The mean top probability of the points with a pattern; a blank one holds nothing to be confident of (its
        probabilities tie), and counting it would read as doubt. None when every pattern is blank."""
        held = ~self.blank
        return float(self.confidence[held].mean()) if held.any() else None

    def fractions(self) -> dict[str, float]:
        index = self.index
        out = {p.label: float((index == i).mean()) for i, p in enumerate(self.phases)}
        out[UNKNOWN] = float((index < 0).mean())
        return out

    def space_groups(self) -> np.ndarray:
        """Each point's space group as the map decides it; 0 where it is unknown."""
        return np.array([p.space_group for p in self.phases] + [0])[self.index]

    def changed_since(self, earlier: PhaseMap) -> np.ndarray:
        """Where ``earlier``, a map of the same scan (another model's, say), gave a point another space group, or
        called unknown a point this map decides, or the reverse: a mask of this map's points."""
        if tuple(earlier.nav_shape) != tuple(self.nav_shape):
            raise InputError(
                f"the maps are of {earlier.nav_shape[0]} x {earlier.nav_shape[1]} and {self.nav_shape[0]} x "
                f"{self.nav_shape[1]} points: not of one scan"
            )
        return earlier.space_groups() != self.space_groups()

    def accuracy(self, probabilities: np.ndarray | None = None) -> float | None:
        """Fraction of points with a known true phase that got it (unknown counts as wrong)."""
        if self.truth is None or not (self.truth >= 0).any():
            return None
        index = self.index if probabilities is None else decide(probabilities, self.threshold)
        labelled = self.truth >= 0
        return float((index[labelled] == self.truth[labelled]).mean())

    def summary(self) -> dict:
        accuracy = self.accuracy()
        return {
            "source": self.source,
            "model": self.model,
            "nav_shape": list(self.nav_shape),
            "points": self.size,
            "step_um": self.step_um,
            "phases": [p.label for p in self.phases],
            "fractions": {k: round(v, 4) for k, v in self.fractions().items()},
            "unknown_threshold": self.threshold,
            "mean_confidence": None if (mean := self.mean_confidence) is None else round(mean, 4),
            "accuracy": None if accuracy is None else round(accuracy, 4),
            "grain_cleanup": self.raw_probabilities is not None,
            "orientations": self.orientations_note,
            **({"accuracy_before_cleanup": round(raw, 4)} if (raw := self._raw_accuracy()) is not None else {}),
            "notes": self.notes,
        }

    def _raw_accuracy(self) -> float | None:
        return None if self.raw_probabilities is None else self.accuracy(self.raw_probabilities)

    def own_indexing(self, suffix: str) -> Path | None:
        """The scan's own indexing file (:attr:`indexing`) where it is of the format of ``suffix`` (.ang, .ctf) and
        still there: the map's export in that format is that file with the model's phases
        (:func:`~ebsd_core.map_export.ang_with_phases`, :func:`~ebsd_core.map_export.ctf_with_phases`)."""
        path = Path(self.indexing) if self.indexing else None
        return path if path is not None and path.suffix.lower() == suffix.lower() and path.is_file() else None

    @property
    def orientations_note(self) -> str:
        """Where the exports' orientations come from."""
        return self.orientations_from or "none (the exports give every point the identity)"

    def quaternions(self, points: Sequence[int] | slice = slice(None)) -> np.ndarray:
        """(N, 4) the scan's orientations (of ``points``) as orix quaternions; the identity where unknown."""
        identity = np.array([1.0, 0.0, 0.0, 0.0])
        if self.rotations is None:
            return np.tile(identity, (len(np.arange(self.size)[points]), 1))
        q = np.asarray(self.rotations[points], dtype=np.float64).reshape(-1, 4)
        return np.where(np.isfinite(q).all(axis=1, keepdims=True), q, identity)

    def euler(self, points: Sequence[int] | slice = slice(None)) -> np.ndarray:
        """(N, 3) Bunge Euler angles in radians of :meth:`quaternions`."""
        from orix.quaternion import Rotation

        return Rotation(self.quaternions(points)).to_euler()

    def to_crystal_map(self):
        """An orix ``CrystalMap``: phase ids 0.. per class, -1 not indexed; the scan's orientations (else the
        identity) for every point."""
        from orix.crystal_map import CrystalMap, PhaseList
        from orix.quaternion import Rotation

        from ebsd_core.phases import Material

        x, y = self.coordinates()
        orix_phases = []
        for phase in self.phases:
            material = Material(phase.name, phase.label, phase.space_group, phase.a, sites=())
            orix_phase = material.to_orix_phase()
            orix_phase.color = phase.colour
            orix_phases.append(orix_phase)
        phase_list = PhaseList(orix_phases, ids=list(range(len(orix_phases))))
        props = {"confidence": self.confidence, "iq": self.quality}
        props.update({f"p_{p.symbol}": self.probabilities[:, i] for i, p in enumerate(self.phases)})
        return CrystalMap(
            rotations=Rotation(self.quaternions()),
            phase_id=self.index,
            x=x.astype(float),
            y=y.astype(float),
            phase_list=phase_list,
            prop=props,
            scan_unit="um",
        )


def save_phase_map(phase_map: PhaseMap, path: str | Path) -> Path:
    """Store a map for later viewing (numpy arrays + JSON, no pickles), atomically."""
    from ebsd_core.atomic import atomic_path

    meta = {
        "nav_shape": list(phase_map.nav_shape),
        "phases": [p.__dict__ for p in phase_map.phases],
        "threshold": phase_map.threshold,
        "step_um": phase_map.step_um,
        "source": phase_map.source,
        "model": phase_map.model,
        "notes": phase_map.notes,
        "orientations_from": phase_map.orientations_from,
        "indexing": phase_map.indexing,
        "views": phase_map.views,
    }
    arrays = {"probabilities": phase_map.probabilities, "quality": phase_map.quality}
    if phase_map.rotations is not None:
        arrays["rotations"] = np.asarray(phase_map.rotations, dtype=np.float32)
    if phase_map.raw_probabilities is not None:
        arrays["raw_probabilities"] = phase_map.raw_probabilities
    if phase_map.truth is not None:
        arrays["truth"] = np.asarray(phase_map.truth, dtype=np.int16)
    with atomic_path(path, keep_suffix=True) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
    return Path(path)


def saved_map_header(path: str | Path) -> dict | None:
    """What a saved phase map records of itself besides its arrays (its ``meta``); None when it cannot be read."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return dict(json.loads(bytes(data["meta"]).decode()))
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile):
        return None


def load_phase_map(path: str | Path) -> PhaseMap:
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            truth = data["truth"].astype(int) if "truth" in data else None
            return PhaseMap(
                nav_shape=tuple(meta["nav_shape"]),
                phases=[MapPhase(**p) for p in meta["phases"]],
                probabilities=data["probabilities"],
                quality=data["quality"],
                threshold=float(meta["threshold"]),
                step_um=float(meta["step_um"]),
                truth=truth,
                source=meta["source"],
                model=meta["model"],
                notes=list(meta.get("notes", [])),
                raw_probabilities=data.get("raw_probabilities"),
                rotations=data.get("rotations"),
                orientations_from=str(meta.get("orientations_from", "")),
                indexing=str(meta.get("indexing", "")),
                views=dict(meta.get("views") or {}),
            )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"not a saved phase map ({exc.__class__.__name__}: {exc})", path) from None


def attach_orientations(
    source: PatternSource, path: str | Path, nav_shape: Sequence[int] | None = None
) -> PatternSource:
    """``source`` with the orientations of a separate indexing file (the vendor's .ang, .ctf, .h5oina or OIM
    .h5 of the same scan, points in the same order), for the map's exports; they replace any the scan file holds.
    Where neither ``nav_shape`` nor the scan gives the map's rows and columns (images numbered in scan order), the
    indexing file's map gives them. Images named by their points that lack the map's last rows (an export cut
    short) are laid on the whole map (:meth:`~ebsd_core.io.readers.PatternSource.laid_on`): a new source, said in
    its warnings."""
    from ebsd_core.io.orientations import read_indexing

    more_rows = nav_shape is None and source.grid_starts_scan
    quaternions, map_shape = read_indexing(path, len(source), nav_shape or source.nav_shape, more_rows)
    if more_rows and source.rows_lacking(map_shape):
        note = rows_lacking_note(source.nav_shape[0], map_shape[0], Path(path).name)
        source = source.laid_on(map_shape)
        source.warnings.append(note)
        log.warning("%s: %s", source.path, note)
    source.quaternions, source.orientations_from, source.orientations_file = quaternions, Path(path).name, str(path)
    if nav_shape is None and len(source.nav_shape or ()) != 2 and len(map_shape) == 2:
        source.nav_shape = map_shape
    return source


def hexagonal_indexing_places(source: PatternSource, path: str | Path) -> np.ndarray:
    """The places of the points of ``source``, a scan on a hexagonal grid, as its own indexing ``path`` gives them
    (OIM's .ang of it, on that grid: :func:`~ebsd_core.io.orientations.hexagonal_ang_places`), checked against those
    the scan gives: they must be the same, in its order (a scan that does not say where its points lie takes them).

    Raises
    ------
    InputError
        Naming the .ang: not one of such a grid, of another count of points, or of points elsewhere.
    """
    from ebsd_core.io.orientations import hexagonal_ang_places

    places = hexagonal_ang_places(path, len(source))
    if source.hexagonal_places is None:
        return places
    ours, its = (p - p.min(axis=0) for p in (source.hexagonal_places, places))
    differ = np.flatnonzero((ours != its).any(axis=1))
    if len(differ):
        (row, column), (its_row, its_column) = ours[differ[0]] // (1, 2), its[differ[0]] // (1, 2)  # half steps
        raise InputError(
            f"its points do not lie where the scan's do, in its order: point {differ[0]:,} is at row {its_row}, "
            f"column {its_column} in it, at row {row}, column {column} in the scan (the indexing of another scan?)",
            path,
        )
    return places


def attach_hexagonal_indexing(source: PatternSource, path: str | Path) -> PatternSource:
    """``source``, a scan on a hexagonal grid, checked against its own indexing ``path``
    (:func:`hexagonal_indexing_places`), whose points its phase map's .ang keeps
    (:func:`~ebsd_core.map_export.write_hexagonal_ang`). Where the scan does not say where its points lie (a .up2 of
    a count its header's rows and columns do not give), the .ang's places lay it out, as said in its warnings."""
    from ebsd_core.io.readers import HEXAGONAL_GRID

    places = hexagonal_indexing_places(source, path)
    if source.hexagonal_places is None:
        note = f"its file does not say where its points lie on its hexagonal grid: {Path(path).name} lays them out"
        source.hexagonal_places = places
        source.warnings = [w for w in source.warnings if w != HEXAGONAL_GRID] + [note]
    return source


def rows_lacking_note(rows: int, map_rows: int, indexing: str) -> str:
    """What is said of a scan named by its points whose images give the first ``rows`` of the ``map_rows`` rows that
    its ``indexing`` file maps."""
    lacking = map_rows - rows
    last = "the last row" if lacking == 1 else f"the last {lacking:,} rows"
    return (
        f"its images' names give the first {rows:,} of the {map_rows:,} rows that {indexing} maps (an export cut "
        f"short?): {last} {'is' if lacking == 1 else 'are'} drawn blank, read as unknown"
    )


def _nav_shape(source: PatternSource, nav_shape: Sequence[int] | None) -> tuple[int, int]:
    if source.hexagonal_grid:
        raise InputError(source.hexagonal_note, source.path)
    recorded = tuple(int(v) for v in source.nav_shape or ())
    if nav_shape is not None and len(recorded) == 2 and tuple(int(v) for v in nav_shape) != recorded:
        records = "its images' names give" if source.kind in ("image-folder", "zip") else "the file records"
        raise InputError(
            f"{records} its map shape, {recorded[0]}x{recorded[1]}; the shape given, "
            f"{'x'.join(str(int(v)) for v in nav_shape)}, would scramble it: leave it out",
            source.path,
        )
    shape = tuple(int(v) for v in (nav_shape or source.nav_shape or ()))
    if len(shape) == 1 and nav_shape is None and source.nav_shape is not None and len(source) > 1:
        raise InputError(
            f"the {_holder(source)} holds "
            f"{counted(len(source), 'pattern')} without a 2D map shape; give one (ROWSxCOLS), or the scan's indexing "
            "file (.ang, .ctf, .h5oina), whose map gives it",
            source.path,
        )
    if len(shape) == 1:
        shape = (1, shape[0])
    if len(shape) != 2:
        raise InputError("the scan has no 2D navigation shape; give one (ROWSxCOLS)", source.path)
    if shape[0] * shape[1] != len(source):
        raise InputError(
            f"map shape {shape[0]}x{shape[1]} does not match its {counted(len(source), 'pattern')}", source.path
        )
    return shape


def _holder(source: PatternSource) -> str:
    """What holds the patterns of ``source``, in a word: folder (a zip's too), array or file."""
    return "folder" if source.kind in ("image-folder", "zip") else "array" if source.kind == "array" else "file"


def _truth(source: PatternSource, phases: list[MapPhase], notes: list[str]) -> np.ndarray | None:
    if not source.labelled:
        return None
    groups = [p.space_group for p in phases]
    foreign = [space_group_symbol(sg) for sg in source.classes if sg not in groups]
    if foreign:
        notes.append(
            f"the scan's ground truth holds {', '.join(foreign)}, which the model does not know; "
            "those points are left out of the map accuracy"
        )
    lookup = np.array([groups.index(sg) if sg in groups else -1 for sg in source.classes])
    return lookup[np.asarray(source.labels)]


def _assemble(
    source: PatternSource,
    card: ModelCard,
    shape: tuple[int, int],
    probabilities: np.ndarray,
    quality: np.ndarray,
    notes: list[str],
    own_views: bool,
) -> PhaseMap:
    """``card`` with the views the points got; ``own_views``: each point got views of its own."""
    phases = phases_for_model(card)
    truth = _truth(source, phases, notes)
    notes += blank_pattern_note(blank_points(quality), source.imageless, source.unread)
    rotations = source.quaternions if known(source.quaternions) else None
    for message in notes:
        log.warning("%s: %s", source.path, message)
    return PhaseMap(
        nav_shape=shape,
        phases=phases,
        probabilities=probabilities,
        quality=quality,
        threshold=card.unknown_threshold,
        step_um=source.step_um,
        truth=truth,
        source=source.path,
        model=card.name,
        notes=notes,
        rotations=None if rotations is None else np.asarray(rotations, dtype=np.float32).reshape(-1, 4),
        orientations_from=source.orientations_from if rotations is not None else "",
        indexing=source.orientations_file if rotations is not None else "",
        views={"views": card.views, "views_below": card.views_below, "own": own_views and card.views > 1},
    )


def map_views(card: ModelCard, cleanup: bool, views: int | None = None) -> int:
    """Test-time views per point: ``views`` when given; with the grain clean-up at most :data:`MAP_VIEWS`
    (each point's own, see :func:`ebsd_core.augment.scattered_view_grids`); else the model's own."""
    if views:
        return int(views)
    return min(card.views, MAP_VIEWS) if cleanup else card.views


def map_scan(
    model,
    card: ModelCard,
    source: PatternSource,
    nav_shape: Sequence[int] | None = None,
    batch_size: int | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    allow_resize: bool = True,
    precision: str = "auto",
    compile: str = "auto",
    cleanup: bool = True,
    views: int | None = None,
    views_below: float | None = None,
) -> PhaseMap:
    """Classify every pattern of ``source`` in this process; memory is bounded by ``batch_size``.

    ``batch_size``, ``precision`` and ``compile`` as in :func:`ebsd_core.inference.predict_source`;
    ``cleanup``: the grain clean-up of :mod:`ebsd_core.grain_cleanup` (a second pass over the scan),
    with views of each point's own; ``views`` overrides :func:`map_views`. Every point gets every view
    unless ``views_below`` (see :data:`MAP_VIEWS`).
    """
    shape = _nav_shape(source, nav_shape)
    notes = reading_notes(source, card, allow_resize)
    card = dataclasses.replace(card, views=map_views(card, cleanup, views), views_below=views_below)
    prediction = predict_source(
        model,
        card,
        source,
        batch_size,
        progress,
        should_stop,
        precision=precision,
        compile=compile,
        scatter_views=cleanup,
    )
    phase_map = _assemble(source, card, shape, prediction.probabilities, prediction.quality, notes, cleanup)
    return clean_up(phase_map, source, card, progress, should_stop) if cleanup else phase_map


def clean_up(
    phase_map: PhaseMap,
    source: PatternSource,
    card: ModelCard,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> PhaseMap:
    """The map after the grain clean-up; its ``raw_probabilities`` keep the answers from before."""
    from ebsd_core.grain_cleanup import neighbour_similarity, smooth_probabilities

    if phase_map.size < 2:
        return phase_map
    similarity = neighbour_similarity(source, phase_map.nav_shape, card.preprocess, progress, should_stop)
    return dataclasses.replace(
        phase_map,
        probabilities=smooth_probabilities(phase_map.probabilities, similarity),
        raw_probabilities=phase_map.probabilities,
    )


# --- distributed -------------------------------------------------------------------------------


def _version(path: str | Path) -> tuple[int, int]:
    """What changes when the file at ``path`` is written again (a scan exported anew, a model saved over with
    ``--force``): a worker's cached copy is then read again, not kept for the next run on the same path. (0, 0)
    where it cannot be looked at: opening it then says why, in the reader's words."""
    try:
        stat = Path(path).stat()
    except OSError:
        return 0, 0
    return stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=4)
def _worker_model(
    model_dir: str,
    device: str,
    compile: str,
    views: int | None,
    views_below: float | None = None,
    version: tuple[int, int] = (0, 0),
):
    import torch

    from ebsd_core.inference import prepare_for_inference
    from ebsd_core.store import load_model

    if device == "cpu":
        torch.set_num_threads(max(1, int(os.environ.get("EBSD_WORKER_THREADS", "1"))))
    model, card = load_model(model_dir, device=device)
    card.views, card.views_below = views or card.views, views_below
    return prepare_for_inference(model, compile, 0, card.input_size), card


@functools.lru_cache(maxsize=4)
def _worker_source(scan_path: str, version: tuple[int, int] = (0, 0)) -> PatternSource:
    return open_patterns(scan_path, lazy=True)


def classify_slice(
    model_dir: str,
    scan_path: str,
    start: int,
    stop: int,
    device: str = "auto",
    precision: str = "auto",
    compile: str = "never",
    views: int | None = None,
    scatter_views: bool = False,
    views_below: float | None = None,
) -> tuple[np.ndarray, dict[int, str]]:
    """Run on a dask worker: open scan and model (cached per worker) and classify ``start:stop``.

    ``compile="always"`` compiles the model once per worker; ``views`` overrides the model's own,
    ``views_below`` as in :func:`map_scan`; ``scatter_views`` gives every point views of its own.
    Returns (stop - start, C + 1): class probabilities, then image quality; and the images of the slice that
    could not be read (:attr:`~ebsd_core.io.readers.PatternSource.unread`).
    """
    from ebsd_core.backbones import select_device

    model_version = _version(Path(model_dir) / META)
    model, card = _worker_model(model_dir, str(select_device(device)), compile, views, views_below, model_version)
    source = _worker_source(scan_path, _version(scan_path))
    if stop <= len(source):
        raw = source.run_batch(start, stop)
    else:  # points past the scan's last image, of the map its indexing file gives (see laid_on): blank
        raw = np.zeros((stop - start, *source.pattern_shape), dtype=source.patterns.dtype)
        if start < len(source):
            raw[: len(source) - start] = source.run_batch(start, len(source))
    probs, quality = classify_batch(
        model,
        card,
        raw,
        source.static_background,
        scan_path,
        precision,
        start if scatter_views else None,
    )
    unread = {index: why for index, why in source.unread.items() if start <= index < stop}
    return np.concatenate([probs, quality[:, None]], axis=1), unread


@contextlib.contextmanager
def open_cluster(scheduler: str | None, workers: int = 2) -> Iterator:
    """A dask.distributed client for an existing scheduler's address, or on a new LocalCluster.

    Workers of a LocalCluster run one thread each, so ``workers`` processes share the CPU cores.
    """
    import dask
    from distributed import Client, LocalCluster

    from ebsd_core.memory import worker_environment

    if scheduler and scheduler != "local":
        try:
            client = Client(scheduler, timeout="20s")
        except OSError as exc:
            raise InputError(f"cannot reach the dask scheduler ({exc})", scheduler) from None
        with client:
            yield client
        return
    quiet = logging.getLogger("distributed")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    # set in this process before each worker starts, for glibc to read (replaces distributed's MALLOC_TRIM_THRESHOLD_)
    spawn_environ = dask.config.get("distributed.nanny.pre-spawn-environ", {}) | worker_environment()
    try:
        with (
            dask.config.set({"distributed.nanny.pre-spawn-environ": spawn_environ}),
            LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client
    finally:
        quiet.setLevel(level)


#: Patterns per task when a phase map runs on a dask cluster.
CLUSTER_TASK_PATTERNS = 512


def map_scan_distributed(
    model_dir: str | Path,
    scan_path: str | Path,
    client,
    nav_shape: Sequence[int] | None = None,
    chunk: int = 2048,
    device: str = "auto",
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    precision: str = "auto",
    compile: str = "auto",
    views: int | None = None,
    cleanup: bool = True,
    orientations: str | Path | None = None,
    views_below: float | None = None,
) -> PhaseMap:
    """Classify a scan on a dask.distributed cluster; every worker must see ``model_dir`` and ``scan_path``.

    The grain clean-up (``cleanup``) runs here, in the client, after the workers' answers are in.

    ``views`` overrides :func:`map_views`; with the clean-up every point gets views of its own, and
    every point gets every view unless ``views_below`` (see :data:`MAP_VIEWS`).
    ``orientations``: an indexing file of the scan for the exports (:func:`attach_orientations`).

    With ``compile="auto"`` every CPU worker compiles the model once when its share of the scan gives it
    enough to do (:func:`ebsd_core.inference.compile_wanted`).
    """
    from distributed import as_completed

    from ebsd_core.store import read_card, resolve_model_dir

    model_dir, scan_path = str(resolve_model_dir(model_dir).resolve()), str(Path(scan_path).resolve())
    card = read_card(model_dir)
    views = card.views = map_views(card, cleanup, views)
    card.views_below = views_below  # as the workers will (and map_scan does)
    source = open_patterns(scan_path, lazy=True)
    if source.hexagonal_grid and nav_shape is None:
        raise InputError(
            "the scan's grid is hexagonal: a cluster maps square grids, and its phases are drawn on its own grid, and "
            "written into its own .ang, without one (phasemap --out map.png, or --orientations SCAN.ang --out "
            "map.ang, with no --scheduler)",
            source.path,
        )
    if orientations is not None:  # before the shape, which it gives images numbered in scan order
        source = attach_orientations(source, orientations, nav_shape)
    shape = _nav_shape(source, nav_shape)
    notes = reading_notes(source, card)
    n, n_classes = len(source), len(card.classes)
    out = np.empty((n, n_classes + 1), dtype=np.float32)
    starts = list(range(0, n, chunk))
    # each worker compiles for itself (frozen graphs are not cached on disk) and classifies its share of the scan
    share = n // max(1, len(client.scheduler_info()["workers"]))
    on_workers = "always" if compile_wanted(compile, share, card.input_size, views_for_all(card)) else "never"
    futures = {
        client.submit(
            classify_slice,
            model_dir,
            scan_path,
            s,
            min(n, s + chunk),
            device,
            precision,
            on_workers,
            views,
            cleanup,
            views_below,
            pure=False,
        ): s
        for s in starts
    }
    done = 0
    try:
        for future in as_completed(futures):
            if should_stop and should_stop():
                raise CancelledError("phase map cancelled")
            start = futures[future]
            block, unread = future.result()
            out[start : start + len(block)] = block
            source.unread.update(unread)
            done += len(block)
            if progress:
                progress(done / n, f"{done:,}/{n:,} patterns on {len(client.scheduler_info()['workers'])} workers")
    finally:
        client.cancel(list(futures))
    phase_map = _assemble(source, card, shape, out[:, :n_classes], out[:, n_classes], notes, cleanup)
    return clean_up(phase_map, source, card, progress, should_stop) if cleanup else phase_map
