"""Simulated multi-phase scans with known ground truth.

A scan is a 2D grid of patterns. Its layout (which phase and orientation sits
at every point) comes either from Voronoi grains with random orientations or
from a real crystal map (an EDAX ``.ang`` file read with orix). Every point is
then simulated like a single pattern (:mod:`ebsd_core.simulate`), with a
projection centre that drifts with the beam position as on a real microscope.
The result is a :class:`~ebsd_core.io.dataset.Dataset` with ``nav_shape``, so
every command reads it like a real scan and can score itself against the truth.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from ebsd_core import __version__
from ebsd_core.errors import InputError, PhaseError
from ebsd_core.io.dataset import Dataset
from ebsd_core.io.orientations import load_crystal_map
from ebsd_core.masters import load_master
from ebsd_core.phases import CATALOGUE, Material, get_material
from ebsd_core.simulate import (
    DetectorModel,
    GeometryRanges,
    apply_detector_model,
    project,
    projection_chunk,
    random_quaternions,
)

log = logging.getLogger(__name__)

#: The two demo pairs: the hard case (same lattice, superlattice bands only) and a dual-phase steel.
DEMO_PAIRS: dict[str, tuple[str, str]] = {
    "Ni + Ni3Al (gamma / gamma prime)": ("ni", "ni3al"),
    "Austenite + ferrite (duplex steel)": ("austenite", "ferrite"),
}
MAX_SCAN_POINTS = 4_000_000
PC_DRIFT_PER_POINT = 0.0005  # projection-centre shift per scan step, as a fraction of the detector width


@dataclass
class MapLayout:
    """Phase and orientation at every point of a scan grid."""

    phase: np.ndarray  # (rows, cols) index into ``materials``
    quaternions: np.ndarray  # (rows, cols, 4)
    materials: list[Material]
    step_um: float = 1.0
    origin: str = "voronoi"

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(int(v) for v in self.phase.shape)


def parse_shape(text: str) -> tuple[int, int]:
    """``"100x120"`` -> ``(100, 120)``."""
    try:
        rows, cols = (int(v) for v in text.lower().replace("*", "x").split("x"))
    except ValueError:
        raise InputError(f"map shape {text!r}: write it as ROWSxCOLS, e.g. 100x120") from None
    if rows < 1 or cols < 1 or rows * cols > MAX_SCAN_POINTS:
        raise InputError(f"map shape {text!r}: needs 1 to {MAX_SCAN_POINTS:,} points")
    return rows, cols


def _distinct_classes(materials: Sequence[Material]) -> None:
    groups = [m.space_group for m in materials]
    if len(set(groups)) != len(groups):
        raise PhaseError(
            "two phases of a map share a space group, so no classifier can tell them apart: "
            + ", ".join(f"{m.key} ({m.symbol})" for m in materials)
        )


def voronoi_layout(
    materials: Sequence[Material],
    shape: tuple[int, int],
    grain_size: float = 8.0,
    fractions: Sequence[float] | None = None,
    seed: int = 0,
    step_um: float = 1.0,
) -> MapLayout:
    """Voronoi grains of mean diameter ``grain_size`` points, each one phase and one orientation."""
    materials = list(materials)
    _distinct_classes(materials)
    rng = np.random.default_rng(seed)
    rows, cols = shape
    n_grains = max(len(materials), int(round(rows * cols / max(grain_size, 1.0) ** 2)))
    seeds = rng.uniform((0, 0), (rows, cols), size=(n_grains, 2))
    grid = np.stack(np.meshgrid(np.arange(rows) + 0.5, np.arange(cols) + 0.5, indexing="ij"), axis=-1)
    _, grain = cKDTree(seeds).query(grid.reshape(-1, 2))
    weights = np.full(len(materials), 1 / len(materials)) if fractions is None else np.asarray(fractions, float)
    grain_phase = rng.choice(len(materials), size=n_grains, p=weights / weights.sum())
    grain_phase[: len(materials)] = np.arange(len(materials))  # every phase appears at least once
    grain_quat = random_quaternions(n_grains, rng)
    quats = perturb(grain_quat[grain], rng, degrees=0.5)  # a little intragranular misorientation
    return MapLayout(
        phase=grain_phase[grain].reshape(shape),
        quaternions=quats.reshape(rows, cols, 4),
        materials=materials,
        step_um=step_um,
        origin=f"voronoi ({n_grains} grains)",
    )


def perturb(quaternions: np.ndarray, rng: np.random.Generator, degrees: float) -> np.ndarray:
    """Rotate each orientation by a small random rotation (Gaussian angle of ``degrees``)."""
    axis = rng.normal(size=(len(quaternions), 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    half = np.deg2rad(rng.normal(0, degrees, len(quaternions))) / 2
    d = np.column_stack([np.cos(half), axis * np.sin(half)[:, None]])
    a, b = quaternions, d
    out = np.column_stack(
        [
            a[:, 0] * b[:, 0] - (a[:, 1:] * b[:, 1:]).sum(1),
            a[:, :1] * b[:, 1:] + b[:, :1] * a[:, 1:] + np.cross(a[:, 1:], b[:, 1:]),
        ]
    )
    out[out[:, 0] < 0] *= -1
    return out


def _material_for_phase_name(name: str) -> Material:
    tokens = [t for t in name.lower().replace("/", " ").replace("-", " ").split() if t]
    for token in tokens:
        if token in CATALOGUE:
            return CATALOGUE[token]
    raise PhaseError(f"phase {name!r} is not in the catalogue; name the phases with --phases in file order")


def layout_from_ang(path: str | Path, phases: Sequence[str] | None = None) -> MapLayout:
    """The layout of a real crystal map (any file orix reads: .ang, .ctf, orix .h5).

    Phases are matched to catalogue materials by name, or given in file order
    with ``phases``. Points that were not indexed take the phase and
    orientation of their nearest indexed neighbour.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("no such layout file", path)
    xmap = load_crystal_map(path)
    if xmap.ndim != 2:
        raise InputError(f"the crystal map is {xmap.ndim}D; a 2D map is needed", path)
    ids = [int(i) for i in xmap.phases.ids if i >= 0]
    names = [xmap.phases[i].name for i in ids]
    if phases:
        if len(phases) != len(ids):
            raise PhaseError(f"{path}: the map has {len(ids)} phases ({', '.join(names)}); {len(phases)} given")
        materials = [get_material(p) for p in phases]
    else:
        try:
            materials = [_material_for_phase_name(n) for n in names]
        except PhaseError as exc:
            raise PhaseError(f"{path}: {exc}") from None
    _distinct_classes(materials)
    try:
        rows, cols = xmap.shape
        phase_id = np.asarray(xmap.phase_id, dtype=int).reshape(rows, cols)
        quats = np.asarray(xmap.rotations.data).reshape(rows * cols, -1, 4)[:, 0].reshape(rows, cols, 4)
    except ValueError as exc:  # a header that disagrees with the data rows
        raise InputError(f"the map's points do not fill its grid ({exc})", path) from None
    index = np.full(phase_id.shape, -1)
    for k, pid in enumerate(ids):
        index[phase_id == pid] = k
    if (index < 0).all():
        raise InputError("no indexed points in the crystal map", path)
    if (index < 0).any():
        good = np.argwhere(index >= 0)
        _, nearest = cKDTree(good).query(np.argwhere(index < 0))
        src = tuple(good[nearest].T)
        index[index < 0], quats[index < 0] = index[src], quats[src]
    return MapLayout(
        phase=index,
        quaternions=np.asarray(quats, dtype=np.float64),
        materials=materials,
        step_um=float(xmap.dx) or 1.0,
        origin=f"layout {path.name}",
    )


def simulate_scan(
    layout: MapLayout,
    size: int = 60,
    seed: int = 0,
    geometry: GeometryRanges = GeometryRanges(),
    detector: DetectorModel = DetectorModel(),
    chunk: int = 1024,
    progress: Callable[[float, str], None] | None = None,
) -> Dataset:
    """Simulate every point of a layout; returns a labelled dataset with ``nav_shape``."""
    rng = np.random.default_rng(seed)
    rows, cols = layout.shape
    n = rows * cols
    classes = sorted({m.space_group for m in layout.materials})
    phase = layout.phase.ravel()
    quats = layout.quaternions.reshape(n, 4)
    yy, xx = np.divmod(np.arange(n), cols)
    centre = np.array([np.mean(getattr(geometry, k)) for k in ("pcx", "pcy", "pcz")])
    # Moving the beam right moves the pattern centre left on the screen; down moves it up (Bruker PC).
    pcs = np.column_stack(
        [
            centre[0] - (xx - cols / 2) * PC_DRIFT_PER_POINT,
            centre[1] + (yy - rows / 2) * PC_DRIFT_PER_POINT * np.cos(np.deg2rad(20)),
            np.full(n, centre[2]),
        ]
    )
    det_tilt = float(np.mean(geometry.detector_tilt))
    sample_tilt = float(np.mean(geometry.sample_tilt))
    dtype = np.uint8 if detector.bit_depth <= 8 else np.uint16
    patterns = np.empty((n, size, size), dtype=dtype)
    chunk = projection_chunk(size, chunk)
    for k, material in enumerate(layout.materials):
        where = np.flatnonzero(phase == k)
        master = load_master(material)
        for start in range(0, len(where), chunk):
            idx = where[start : start + chunk]
            clean = project(master, quats[idx], pcs[idx], size, det_tilt, sample_tilt)
            patterns[idx] = apply_detector_model(clean, pcs[idx], detector, rng)
            if progress:
                done = int(sum((phase == j).sum() for j in range(k))) + start + len(idx)
                progress(done / n, f"simulated {done:,}/{n:,} points ({material.name})")
    return Dataset(
        patterns=patterns,
        labels=np.array([classes.index(m.space_group) for m in layout.materials])[phase],
        classes=classes,
        material=np.array([m.key for m in layout.materials], dtype=object)[phase],
        quaternions=quats.astype(np.float32),
        pc=pcs.astype(np.float32),
        detector_tilt=np.full(n, det_tilt, np.float32),
        sample_tilt=np.full(n, sample_tilt, np.float32),
        nav_shape=(rows, cols),
        provenance={
            "generator": f"ebsd_core {__version__} simulate-map",
            "kind": "scan",
            "layout": layout.origin,
            "step_um": layout.step_um,
            "seed": seed,
            "size": size,
            "phases": {m.key: m.describe() for m in layout.materials},
            "detector_model": detector.to_dict(),
        },
    )
