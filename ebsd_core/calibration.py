"""Compare simulated patterns with real ones recorded at a known geometry.

For a kikuchipy h5ebsd scan that carries orientations (a crystal map) and
projection centres, simulate each pattern at its recorded orientation and
geometry, run both through the same background correction, and report the
normalised cross-correlation (NCC). This is how the master patterns and the
detector model are checked against the real Ni patterns in ``../shared/data``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ebsd_core.errors import InputError
from ebsd_core.io.hdf5 import H5PY_ERRORS, check_variable_length
from ebsd_core.masters import MasterPattern, load_master
from ebsd_core.phases import Material, get_material
from ebsd_core.preprocess import PreprocessConfig, normalized_cross_correlation, preprocess
from ebsd_core.simulate import project


@dataclass
class RealismResult:
    ncc: np.ndarray  # one value per real pattern
    real: np.ndarray  # background-corrected real patterns
    simulated: np.ndarray  # background-corrected simulations at the recorded geometry

    def summary(self) -> dict:
        return {
            "patterns": int(self.ncc.size),
            "ncc_mean": round(float(self.ncc.mean()), 4),
            "ncc_min": round(float(self.ncc.min()), 4),
            "ncc_max": round(float(self.ncc.max()), 4),
        }


@dataclass
class IndexedScan:
    """One scan of an h5ebsd file with the orientation and geometry of every pattern."""

    patterns: np.ndarray  # (N, size, size) as recorded
    static_background: np.ndarray
    quaternions: np.ndarray  # (N, 4)
    pcs: np.ndarray  # (N, 3) Bruker
    detector_tilt: float
    sample_tilt: float

    @property
    def size(self) -> int:
        return self.patterns.shape[-1]


def indexed_scans(path: str | Path) -> list[IndexedScan]:
    """The scans of a kikuchipy h5ebsd file that carry orientations, each distinct scan once.

    A scan group whose patterns repeat an earlier one's exactly is counted once (kikuchipy's small
    Ni file holds the same 9 patterns as "Scan 1" and "Scan 2").
    """
    import h5py
    import kikuchipy as kp

    path = Path(path)
    check_variable_length(path)
    try:
        with h5py.File(path, "r") as f:
            names = [k for k in f if k.lower().startswith("scan")]
    except H5PY_ERRORS as exc:
        raise InputError(f"cannot read ({exc})", path) from None
    scans, seen = [], set()
    for name in names:
        signal = kp.load(str(path), scan_group_names=name)
        digest = hashlib.sha256(np.ascontiguousarray(signal.data).tobytes()).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        if signal.xmap is None:
            raise InputError(f"{name} has no crystal map (orientations) to simulate from", path)
        size = signal.data.shape[-1]
        quats = signal.xmap.rotations.data.reshape(-1, 4)
        pcs = np.asarray(signal.detector.pc).reshape(-1, 3)
        if len(pcs) == 1:
            pcs = np.repeat(pcs, len(quats), axis=0)
        scans.append(
            IndexedScan(
                signal.data.reshape(-1, size, size),
                np.asarray(signal.static_background),
                quats,
                pcs,
                float(signal.detector.tilt),
                float(signal.detector.sample_tilt),
            )
        )
    return scans


def _corrected(scan: IndexedScan) -> np.ndarray:
    """The scan's patterns after background correction."""
    return preprocess(scan.patterns, PreprocessConfig(size=scan.size), scan.static_background)


def _simulated(scan: IndexedScan, master: MasterPattern) -> np.ndarray:
    """Simulations with ``master`` at the scan's recorded geometry, after the same correction."""
    clean = project(master, scan.quaternions, scan.pcs, scan.size, scan.detector_tilt, scan.sample_tilt)
    return preprocess(clean, PreprocessConfig(size=scan.size))


def _nccs(real: np.ndarray, sim: np.ndarray) -> list[float]:
    return [normalized_cross_correlation(r, s) for r, s in zip(real, sim)]


def realism_against_scan(path: str | Path, material: Material | str = "ni") -> RealismResult:
    """NCC between every pattern of a kikuchipy h5ebsd scan and its simulation (each distinct scan once)."""
    master = load_master(get_material(material) if isinstance(material, str) else material)
    reals, sims, scores = [], [], []
    for scan in indexed_scans(path):
        real, sim = _corrected(scan), _simulated(scan, master)
        reals.append(real)
        sims.append(sim)
        scores += _nccs(real, sim)
    return RealismResult(np.asarray(scores), np.concatenate(reals), np.concatenate(sims))


def master_fits(path: str | Path, materials: list[Material]) -> dict[str, np.ndarray]:
    """NCC of every pattern of an indexed scan with each material's simulation at the recorded geometry.

    All cubic phases share the zone-axis geometry, so at a pattern's recorded orientation and
    projection centre every cubic master can be compared on equal terms: which bands are present and
    how wide they are is all that differs. The best fit per space group is then the most a template
    matcher that knew the geometry could tell the classes apart by (a bound on what the file carries).
    """
    scans = [(scan, _corrected(scan)) for scan in indexed_scans(path)]
    return {
        material.key: np.concatenate([_nccs(real, _simulated(scan, load_master(material))) for scan, real in scans])
        for material in materials
    }
