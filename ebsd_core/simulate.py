"""Simulate realistic EBSD patterns of a material for random orientations.

Pipeline: uniformly random orientations -> randomised but realistic detector
geometry -> kikuchipy projection of the master pattern (``EBSDDetector`` and
``EBSDMasterPattern.get_patterns``) -> a detector model (smooth backscatter
background, band contrast, point-spread blur, Poisson and read noise, gamma,
8/16-bit quantisation, optional circular mask). The result looks like what a
camera records; :mod:`ebsd_core.preprocess` then corrects it exactly as it
corrects real data.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from ebsd_core.masters import MasterPattern, load_master
from ebsd_core.phases import Material

log = logging.getLogger(__name__)


PROJECTION_CHUNK_BYTES = 400_000_000  # kikuchipy holds 3 float64 direction cosines per pixel


def projection_chunk(size: int, wanted: int) -> int:
    """Patterns per :func:`project` call: ``wanted``, fewer for large patterns (60-120 px keep 1024)."""
    return max(1, min(wanted, PROJECTION_CHUNK_BYTES // (size * size * 3 * 8)))


@dataclass(frozen=True)
class GeometryRanges:
    """Ranges of the randomised detector geometry (Bruker projection-centre convention)."""

    pcx: tuple[float, float] = (0.40, 0.60)
    pcy: tuple[float, float] = (0.15, 0.35)
    pcz: tuple[float, float] = (0.45, 0.70)
    detector_tilt: tuple[float, float] = (-2.0, 10.0)
    sample_tilt: tuple[float, float] = (68.0, 72.0)


@dataclass(frozen=True)
class DetectorModel:
    """Camera and signal model that turns a clean projection into a recorded pattern.

    The defaults are calibrated so that simulated patterns match the band
    contrast and noise of the real Ni patterns (see ``bench/realism.py``).
    """

    # Real Ni (kikuchipy, 60x60) has band/background 0.025 and high-frequency noise 0.018;
    # real Si (480x480 binned to 60) 0.19 and 0.03: the ranges span both.
    band_contrast: tuple[float, float] = (0.03, 0.40)
    counts_per_pixel: tuple[float, float] = (1000.0, 10000.0)
    read_noise: tuple[float, float] = (0.5, 3.0)
    psf_sigma_px: tuple[float, float] = (0.3, 1.2)
    gamma: tuple[float, float] = (0.85, 1.15)
    background_width: tuple[float, float] = (0.5, 1.0)
    bit_depth: int = 8
    circular_mask: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SimulatedPatterns:
    """Patterns as a camera would record them, with their ground truth."""

    patterns: np.ndarray  # (N, size, size) uint8 or uint16
    quaternions: np.ndarray  # (N, 4) crystal orientation (orix convention)
    pcs: np.ndarray  # (N, 3) Bruker projection centres
    detector_tilt: np.ndarray  # (N,)
    sample_tilt: np.ndarray  # (N,)
    master_kind: str


def random_quaternions(n: int, rng: np.random.Generator) -> np.ndarray:
    """Uniformly random unit quaternions (Shoemake's method), a >= 0."""
    u1, u2, u3 = rng.random((3, n))
    q = np.column_stack(
        [
            np.sqrt(1 - u1) * np.sin(2 * np.pi * u2),
            np.sqrt(1 - u1) * np.cos(2 * np.pi * u2),
            np.sqrt(u1) * np.sin(2 * np.pi * u3),
            np.sqrt(u1) * np.cos(2 * np.pi * u3),
        ]
    )
    q = q[:, [3, 0, 1, 2]]
    q[q[:, 0] < 0] *= -1
    return q


def project(
    master: MasterPattern,
    quaternions: np.ndarray,
    pcs: np.ndarray,
    size: int | tuple[int, int],
    detector_tilt: float = 0.0,
    sample_tilt: float = 70.0,
) -> np.ndarray:
    """Clean projections (N, size, size) in [0, 1] for one detector and sample tilt.

    ``size`` may also be a (rows, columns) detector shape, for rectangular cameras.
    """
    import kikuchipy as kp
    from orix.quaternion import Rotation

    shape = (size, size) if isinstance(size, int) else tuple(size)
    pcs = np.asarray(pcs, dtype=float).reshape(-1, 3)
    detector = kp.detectors.EBSDDetector(
        shape=shape, pc=pcs if len(pcs) > 1 else pcs[0], tilt=detector_tilt, sample_tilt=sample_tilt
    )
    signal = master.to_kikuchipy_cached()
    sim = signal.get_patterns(
        Rotation(quaternions),
        detector,
        energy=master.energy_kev,
        compute=True,
        dtype_out=np.float32,
        show_progressbar=False,
        # one chunk: with a projection centre per pattern, kikuchipy fails on several chunks
        # ("Dimension 1 has 2 blocks"; 256 patterns of 480x480 split automatically); callers
        # bound the memory by projecting in chunks of `projection_chunk` patterns
        chunk_shape=len(quaternions),
    )
    data = np.asarray(sim.data, dtype=np.float32).reshape(-1, *shape)
    lo = data.min(axis=(1, 2), keepdims=True)
    hi = data.max(axis=(1, 2), keepdims=True)
    return (data - lo) / np.maximum(hi - lo, 1e-12)


def _uniform(rng: np.random.Generator, bounds: tuple[float, float], n: int) -> np.ndarray:
    return rng.uniform(bounds[0], bounds[1], n)


def backscatter_background(pcs: np.ndarray, size: int, widths: np.ndarray) -> np.ndarray:
    """Smooth backscatter yield: a broad lobe below the projection centre, brightest near the sample."""
    coords = (np.arange(size) + 0.5) / size
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    cx = pcs[:, 0][:, None, None]
    cy = (pcs[:, 1] + 0.25)[:, None, None]  # the lobe sits lower than the PC on a tilted sample
    w = widths[:, None, None]
    return np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * w**2)).astype(np.float32)


def kikuchi_signal(clean: np.ndarray, background: np.ndarray, contrast: np.ndarray) -> np.ndarray:
    """Noise-free intensity on the screen: the backscatter lobe modulated by the standardised
    Kikuchi pattern, ``contrast`` (N,) times its standard deviation over 2."""
    kikuchi = clean - clean.mean(axis=(1, 2), keepdims=True)
    spread = np.maximum(kikuchi.std(axis=(1, 2), keepdims=True), 1e-6)
    return np.clip(background * (1.0 + contrast[:, None, None] * kikuchi / spread * 0.5), 0, None)


def blurred(images: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """Each image (in place) blurred by its point-spread sigma in pixels (none below 0.05)."""
    for i, sigma in enumerate(sigmas):
        if sigma > 0.05:
            images[i] = gaussian_filter(images[i], sigma)
    return images


def apply_detector_model(
    clean: np.ndarray, pcs: np.ndarray, model: DetectorModel, rng: np.random.Generator
) -> np.ndarray:
    """Turn clean projections (N, H, W) in [0, 1] into quantised camera images."""
    n, size = clean.shape[0], clean.shape[-1]
    contrast = _uniform(rng, model.band_contrast, n)
    background = backscatter_background(pcs, size, _uniform(rng, model.background_width, n))
    signal = blurred(kikuchi_signal(clean, background, contrast), _uniform(rng, model.psf_sigma_px, n))
    counts = _uniform(rng, model.counts_per_pixel, n)[:, None, None]
    recorded = rng.poisson(signal * counts).astype(np.float32)
    recorded += (
        rng.normal(0.0, 1.0, recorded.shape).astype(np.float32) * _uniform(rng, model.read_noise, n)[:, None, None]
    )
    recorded = np.clip(recorded, 0, None)
    peak = np.maximum(np.percentile(recorded.reshape(n, -1), 99.9, axis=1), 1e-6)[:, None, None]
    scaled = np.clip(recorded / peak, 0, 1) ** _uniform(rng, model.gamma, n)[:, None, None]
    top = 2**model.bit_depth - 1
    out = np.round(scaled * top).astype(np.uint8 if model.bit_depth <= 8 else np.uint16)
    if model.circular_mask:
        from ebsd_core.preprocess import circular_mask

        out *= circular_mask(size)[None].astype(out.dtype)
    return out


def simulate_material(
    material: Material,
    n: int,
    size: int = 60,
    seed: int | np.random.SeedSequence = 0,
    geometry: GeometryRanges = GeometryRanges(),
    detector: DetectorModel = DetectorModel(),
    chunk: int = 256,
) -> SimulatedPatterns:
    """Simulate ``n`` recorded patterns of ``material`` at random orientations.

    Deterministic for a given seed. Patterns are projected in chunks; each
    chunk shares one detector and sample tilt while every pattern gets its own
    projection centre.
    """
    rng = np.random.default_rng(seed)
    master = load_master(material)
    quats = random_quaternions(n, rng)
    pcs = np.column_stack([_uniform(rng, getattr(geometry, k), n) for k in ("pcx", "pcy", "pcz")])
    det_tilt = np.empty(n)
    samp_tilt = np.empty(n)
    images = np.empty((n, size, size), dtype=np.uint8 if detector.bit_depth <= 8 else np.uint16)
    chunk = projection_chunk(size, chunk)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        det_tilt[start:stop] = rng.uniform(*geometry.detector_tilt)
        samp_tilt[start:stop] = rng.uniform(*geometry.sample_tilt)
        clean = project(master, quats[start:stop], pcs[start:stop], size, det_tilt[start], samp_tilt[start])
        images[start:stop] = apply_detector_model(clean, pcs[start:stop], detector, rng)
    return SimulatedPatterns(images, quats.astype(np.float32), pcs.astype(np.float32), det_tilt, samp_tilt, master.kind)
