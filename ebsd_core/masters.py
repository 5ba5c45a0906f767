"""Master patterns: dynamical (de-ebsd) when available, kinematical (kikuchipy) otherwise.

A master pattern is the backscattered intensity over all crystal directions,
stored on kikuchipy's square Lambert grid, shape ``(2, n, n)`` (north, south).
The catalogue's dynamical masters are computed once with de-ebsd (Bloch waves
with a Monte Carlo depth/energy weighting) and shipped compressed in
``ebsd_core/data/masters``; ``python -m ebsd_core masters build`` rebuilds them.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from ebsd_core.atomic import atomic_path
from ebsd_core.errors import InputError
from ebsd_core.paths import fewshot_home
from ebsd_core.phases import CATALOGUE, Material, get_material

PACKAGE_MASTER_DIR = Path(__file__).parent / "data" / "masters"
DEFAULT_ENERGY_KEV = 20.0
DEFAULT_NPX = 200
DEFAULT_DMIN_NM = 0.05  # 0.1 nm gave NCC 0.42 on the real Ni patterns, 0.05 nm 0.47
_DMIN_REFERENCE_A = 4.0  # cells larger than this get a proportionally larger dmin
_QUANT = 65535


@dataclass
class MasterPattern:
    """A master pattern in square Lambert projection, ready for projection."""

    lambert: np.ndarray  # (2, n, n) float32 in [0, 1]
    material: Material
    kind: str  # "dynamical" or "kinematical"
    energy_kev: float = DEFAULT_ENERGY_KEV
    metadata: dict = field(default_factory=dict)
    _signal: object = field(default=None, repr=False, compare=False)

    @property
    def npx(self) -> int:
        return (self.lambert.shape[-1] - 1) // 2

    def to_kikuchipy(self):
        """A kikuchipy ``EBSDMasterPattern`` (Lambert, both hemispheres)."""
        import kikuchipy as kp

        signal = kp.signals.EBSDMasterPattern(
            self.lambert,
            projection="lambert",
            hemisphere="both",
            phase=self.material.to_orix_phase(),
        )
        return signal

    def to_kikuchipy_cached(self):
        """Like :meth:`to_kikuchipy`, built once per master pattern."""
        if self._signal is None:
            self._signal = self.to_kikuchipy()
        return self._signal


def user_master_dir() -> Path:
    """Where masters of user-added phases are cached (``$EBSD_FEWSHOT_HOME/masters``)."""
    return fewshot_home() / "masters"


def dynamical_available() -> bool:
    """Whether de-ebsd (the dynamical simulator) is installed."""
    return importlib.util.find_spec("de_ebsd") is not None


def structure_digest(material: Material) -> str:
    """A short hash of what a master pattern is computed from: space group, cell, sites and Debye-Waller factor."""
    described = repr((material.space_group, material.a, material.sites, material.debye_waller))
    return hashlib.sha256(described.encode()).hexdigest()[:12]


def master_path(material: Material) -> Path:
    """The shipped master of a catalogue material; for a user's phase (a CIF), its cache, named by its structure: a
    CIF named like a catalogue material (``cu.cif``), or one edited since, gets a master of its own."""
    if material.source == "catalogue":
        return PACKAGE_MASTER_DIR / f"{material.key}.h5"
    return user_master_dir() / f"{material.key}-{structure_digest(material)}.h5"


def save_master(master: MasterPattern, path: str | Path) -> Path:
    """Write a master pattern compressed (16-bit, gzip) and atomically."""
    lam = np.asarray(master.lambert, dtype=np.float64)
    lo, hi = float(lam.min()), float(lam.max())
    quantised = np.round((lam - lo) / max(hi - lo, 1e-12) * _QUANT).astype(np.uint16)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("lambert", data=quantised, compression="gzip", compression_opts=9, shuffle=True)
        f.attrs.update({k: str(v) for k, v in master.metadata.items()})
        f.attrs.update(
            kind=master.kind,
            energy_kev=master.energy_kev,
            material=master.material.key,
            space_group=master.material.space_group,
            a_angstrom=master.material.a,
            intensity_min=lo,
            intensity_max=hi,
        )
    return Path(path)


def read_master(path: str | Path, material: Material) -> MasterPattern:
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            raw = np.asarray(f["lambert"], dtype=np.float32)
            attrs = dict(f.attrs)
    except (OSError, KeyError) as exc:
        raise InputError(f"not a readable master-pattern file ({exc})", path) from None
    if raw.ndim != 3 or raw.shape[0] != 2 or raw.shape[1] != raw.shape[2]:
        raise InputError(f"master pattern has shape {raw.shape}, expected (2, n, n)", path)
    kind = str(attrs.pop("kind", "dynamical"))
    energy = float(attrs.pop("energy_kev", DEFAULT_ENERGY_KEV))
    meta = {k: (v.item() if hasattr(v, "item") else v) for k, v in attrs.items()}
    return MasterPattern(raw / _QUANT, material, kind, energy, meta)


@functools.lru_cache(maxsize=64)
def load_master(material: Material) -> MasterPattern:
    """The master pattern of a material: shipped, cached, or computed now.

    Catalogue materials use the shipped dynamical masters. A user-added phase is
    computed on first use (dynamical with de-ebsd when installed, kinematical
    with kikuchipy otherwise) and cached in :func:`user_master_dir`; the
    returned object's ``kind`` says which was used.
    """
    path = master_path(material)
    if path.exists():
        return read_master(path, material)
    if material.source == "catalogue":
        raise InputError(
            f"the shipped master pattern of {material.key!r} is missing; rebuild it with "
            f"'python -m ebsd_core masters build --phase {material.key}' (needs de-ebsd)",
            path,
        )
    master = build_master(material)
    save_master(master, path)
    return master


def default_dmin(material: Material) -> float:
    """Smallest d-spacing (nm) for a dynamical master of this material.

    The number of reflections grows as (a / dmin)^3, so a garnet (a = 12 A) at
    the Ni setting would take hours on a CPU; scaling dmin with the cell keeps
    the reflection count, and the cost, close to that of a small cell.
    """
    return DEFAULT_DMIN_NM * max(1.0, material.a / _DMIN_REFERENCE_A)


def build_master(
    material: Material,
    npx: int = DEFAULT_NPX,
    dmin_nm: float | None = None,
    energy_kev: float = DEFAULT_ENERGY_KEV,
    kind: str = "auto",
    progress: Callable[[str], None] | None = None,
) -> MasterPattern:
    """Compute a master pattern (``kind`` = ``"dynamical"``, ``"kinematical"`` or ``"auto"``)."""
    if kind == "auto":
        kind = "dynamical" if dynamical_available() else "kinematical"
    start = time.perf_counter()
    dmin_nm = dmin_nm or default_dmin(material)
    if kind == "dynamical":
        lambert, meta = _dynamical_lambert(material, npx, dmin_nm, energy_kev)
    elif kind == "kinematical":
        lambert, meta = _kinematical_lambert(material, npx, energy_kev)
    else:
        raise ValueError(f"unknown master-pattern kind {kind!r}")
    meta["seconds"] = round(time.perf_counter() - start, 1)
    if progress:
        progress(f"{material.key}: {kind} master pattern in {meta['seconds']} s")
    lo, hi = float(lambert.min()), float(lambert.max())
    lambert = ((lambert - lo) / max(hi - lo, 1e-12)).astype(np.float32)
    return MasterPattern(lambert, material, kind, energy_kev, meta)


def _dynamical_lambert(material: Material, npx: int, dmin_nm: float, energy_kev: float):
    import de_ebsd as de
    import torch

    crystal = de.Crystal.from_parameters(
        a=material.a / 10.0,
        space_group=material.space_group,
        atoms=[de.AtomSite(el, xyz, occ, material.debye_waller) for el, xyz, occ in material.sites],
    )
    simulator = de.MasterPatternSimulator(
        crystal, de.Microscope(energy=energy_kev * 1e3, sample_tilt=70.0), npx=npx, dmin=dmin_nm
    )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    master = simulator.compute(device=device, mc_electrons=100_000)
    data = master.data[-1].detach().cpu().numpy().astype(np.float64)
    meta = {"generator": f"de-ebsd {de.__version__}", "npx": npx, "dmin_nm": dmin_nm, "device": device}
    return data, meta


def _kinematical_lambert(material: Material, npx: int, energy_kev: float):
    import kikuchipy as kp
    from diffsims.crystallography import ReciprocalLatticeVector

    phase = material.to_orix_phase()
    ref = ReciprocalLatticeVector.from_min_dspacing(phase, min_dspacing=0.7)
    ref.sanitise_phase()
    ref = ref.unique(use_symmetry=True)
    ref.calculate_structure_factor()
    strength = np.abs(ref.structure_factor)
    ref = ref[strength > 0.05 * strength.max()]
    ref.calculate_theta(energy_kev * 1e3)
    simulator = kp.simulations.KikuchiPatternSimulator(ref.symmetrise())
    master = simulator.calculate_master_pattern(half_size=npx, hemisphere="both", scaling="linear")
    lambert = master.as_lambert(show_progressbar=False).data.astype(np.float64)
    meta = {"generator": f"kikuchipy {kp.__version__} kinematical", "npx": npx}
    return lambert, meta


def build_catalogue(keys: list[str] | None = None, skip_existing: bool = False, **kwargs) -> list[Path]:
    """Rebuild and store the shipped masters (all catalogue phases by default)."""
    written = []
    materials = [get_material(key) for key in keys] if keys else list(CATALOGUE.values())  # unknown names first
    for material in materials:
        if skip_existing and (PACKAGE_MASTER_DIR / f"{material.key}.h5").exists():
            continue
        master = build_master(material, kind="dynamical", progress=print, **kwargs)
        written.append(save_master(master, PACKAGE_MASTER_DIR / f"{material.key}.h5"))
    return written
