"""Physics check of explanations: do attributions sit on Kikuchi bands, and on superlattice bands?

For a pattern of known orientation and detector geometry, kikuchipy's geometrical
simulation gives every band's centre line on the detector; a band covers the
pixels within its Bragg angle of that line. Superlattice bands of an ordered
phase (L1_2 Ni3Al, B2 NiAl) are the reflections its disordered parent lattice
(F or I centred) would extinguish; they are the only difference between, e.g.,
Pm-3m Ni3Al and Fm-3m Ni.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ebsd_core.explain import mass_fraction
from ebsd_core.phases import Material
from ebsd_core.shared_state import caught_warnings, silenced_output

SUPERLATTICE_MIN_DSPACING_A = 1.5  # angstrom: {100}, {110}, {111}, {210} of L1_2; {100}, {111} of B2

CENTRING_TRANSLATIONS = {
    "F": np.array([[0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]),
    "I": np.array([[0.5, 0.5, 0.5]]),
}


@dataclass
class BandMasks:
    bands: np.ndarray  # (S, S) bool: pixels on any strong band
    superlattice: np.ndarray | None  # (S, S) bool: pixels on superlattice bands, when the phase has them
    lines: np.ndarray  # (n, 4) band centre lines x0, y0, x1, y1 in pixels
    superlattice_lines: np.ndarray  # (m, 4)


def parent_centring(material: Material) -> str | None:
    """'F' or 'I' when all atoms, ignoring the element, form that centred lattice (ordered superstructures)."""
    if not material.sites:
        return None
    structure = material.to_orix_phase().structure
    positions = np.mod(np.round(structure.xyz, 4), 1.0)
    keys = {tuple(np.round(p, 3)) for p in positions}
    for name, shifts in CENTRING_TRANSLATIONS.items():
        if all(tuple(np.round(np.mod(np.add(p, s), 1.0), 3)) in keys for p in positions for s in shifts):
            return name
    return None


def is_extinct_in(hkl: np.ndarray, centring: str) -> np.ndarray:
    h, k, l = np.round(hkl).astype(int).T  # noqa: E741 (Miller indices)
    if centring == "F":
        return ~(((h % 2) == (k % 2)) & ((k % 2) == (l % 2)))
    return (h + k + l) % 2 == 1


def band_masks(
    material: Material,
    quaternion: np.ndarray,
    pc: np.ndarray,
    size: int,
    detector_tilt: float = 0.0,
    sample_tilt: float = 70.0,
    energy_kev: float = 20.0,
    min_dspacing: float = 1.0,  # angstrom, like the lattice parameters
    relative_intensity: float = 0.25,
) -> BandMasks:
    """Band and superlattice-band pixel masks of one pattern on a ``size`` x ``size`` detector."""
    import kikuchipy as kp
    from diffsims.crystallography import ReciprocalLatticeVector
    from orix.quaternion import Rotation

    with caught_warnings(), silenced_output(stderr=True):
        warnings.simplefilter("ignore")
        reflectors = ReciprocalLatticeVector.from_min_dspacing(material.to_orix_phase(), min_dspacing)
        reflectors.sanitise_phase()
        reflectors.calculate_structure_factor()
        intensity = np.abs(reflectors.structure_factor) ** 2
        centring = parent_centring(material) if material.space_group == 221 else None
        strong = intensity >= relative_intensity * intensity.max()
        if centring:  # superlattice reflections are weak by nature: keep every one that is not extinct
            low_index = np.asarray(reflectors.dspacing).ravel() >= SUPERLATTICE_MIN_DSPACING_A
            strong |= is_extinct_in(np.asarray(reflectors.hkl), centring) & low_index & (intensity > 0)
        reflectors = reflectors[strong]
        reflectors.calculate_theta(energy_kev * 1e3)
        detector = kp.detectors.EBSDDetector(
            shape=(size, size), pc=np.asarray(pc, float), tilt=detector_tilt, sample_tilt=sample_tilt
        )
        simulation = kp.simulations.KikuchiPatternSimulator(reflectors).on_detector(
            detector, Rotation(np.asarray(quaternion, float))
        )
        lines = np.asarray(simulation.lines_coordinates(coordinates="pixel", exclude_nan=False)).reshape(-1, 4)
        reflectors = simulation.reflectors  # one per band (the simulator keeps one of +-hkl)
    theta = np.asarray(reflectors.theta).ravel()
    visible = np.isfinite(lines).all(axis=1)
    screen_distance = float(pc[2]) * size  # PC to screen, in pixels (Bruker convention, square detector)
    half_widths = np.tan(theta) * screen_distance
    bands = _rasterise(lines[visible], half_widths[visible], size)
    superlattice, super_lines = None, np.zeros((0, 4))
    if centring:
        extra = is_extinct_in(np.asarray(reflectors.hkl), centring) & visible
        super_lines = lines[extra]
        superlattice = _rasterise(super_lines, half_widths[extra], size)
    return BandMasks(bands, superlattice, lines[visible], super_lines)


def _rasterise(lines: np.ndarray, half_widths: np.ndarray, size: int) -> np.ndarray:
    """Pixels within ``half_width`` of any infinite line through (x0, y0)-(x1, y1)."""
    yy, xx = np.mgrid[:size, :size] + 0.5
    mask = np.zeros((size, size), dtype=bool)
    for (x0, y0, x1, y1), half in zip(lines, half_widths):
        dx, dy = x1 - x0, y1 - y0
        length = np.hypot(dx, dy)
        if length < 1e-9:
            continue
        distance = np.abs(dy * (xx - x0) - dx * (yy - y0)) / length
        mask |= distance <= max(half, 0.5)
    return mask


def band_report(attribution: np.ndarray, masks: BandMasks) -> dict:
    """Share of |attribution| on bands (and superlattice bands) vs the share of pixels they cover.

    An enrichment above 1 means the explanation concentrates on bands more than a
    uniform map would.
    """
    report = {
        "band_mass": round(mass_fraction(attribution, masks.bands), 4),
        "band_area": round(float(masks.bands.mean()), 4),
    }
    report["band_enrichment"] = round(report["band_mass"] / max(report["band_area"], 1e-9), 3)
    if masks.superlattice is not None and masks.superlattice.any():
        report["superlattice_mass"] = round(mass_fraction(attribution, masks.superlattice), 4)
        report["superlattice_area"] = round(float(masks.superlattice.mean()), 4)
        report["superlattice_enrichment"] = round(report["superlattice_mass"] / report["superlattice_area"], 3)
    return report
