"""One preprocessing pipeline, shared by simulation, training and prediction.

Real and simulated patterns go through exactly the same steps:

1. static background removal (when the file carries a static background),
2. dynamic background removal (subtract a Gaussian-blurred copy, sigma = 1/20 of
   the pattern width; kikuchipy's ``remove_dynamic_background`` uses 1/8, which leaves
   real patterns with several times the simulations' share of slow intensity variation;
   1/20 scored better on held-out materials and on phase maps, bench/RESULTS.md),
3. centre-crop to a square (rectangular cameras) and resize to the model's input size,
4. per-pattern standardisation (zero mean, unit variance),
5. an optional circular mask.

The steps are written in torch so that the same code runs on the CPU and, for
GPU inference, on the GPU next to the model (:func:`preprocess_tensor`);
:func:`preprocess` is the numpy front door.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ebsd_core.errors import InputError
from ebsd_core.wording import counted

GAUSSIAN_TRUNCATE = 4.0  # kernel radius in sigmas, as scipy.ndimage.gaussian_filter
#: Network input sizes offered by the dashboard and chosen from by :func:`input_size_for`.
INPUT_SIZES = (32, 48, 64, 96, 128, 160, 224)


@dataclass(frozen=True)
class PreprocessConfig:
    """Settings of the preprocessing pipeline (stored with every model)."""

    size: int = 60
    static_background: bool = True
    dynamic_background: bool = True
    dynamic_sigma_fraction: float = 0.05
    circular_mask: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> PreprocessConfig:
        if not isinstance(data, dict):
            raise TypeError(f"preprocessing settings must be a record, not {type(data).__name__}")
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


def checked_batch(patterns: np.ndarray, source: str = "patterns") -> np.ndarray:
    """(N, H, W) view of ``patterns`` (a copy if read-only, for torch); refuses other shapes and NaN/inf."""
    batch = np.asarray(patterns)
    if not batch.flags.writeable:
        batch = batch.copy()
    if batch.ndim == 2:
        batch = batch[None]
    if batch.ndim != 3:
        raise InputError(f"expected patterns of shape (N, rows, cols), got {batch.shape}", source)
    if batch.dtype.kind == "f" and not np.isfinite(batch).all():
        bad = int((~np.isfinite(batch)).any(axis=(1, 2)).sum())
        raise InputError(
            f"{counted(bad, 'pattern')} {'contains' if bad == 1 else 'contain'} NaN or infinite values", source
        )
    return batch


#: What makes a pattern blank (:func:`blank_patterns`), as every message about one says it.
BLANK_CAUSES = "dropped frames, a blanked beam or a saturated camera"


def blank_patterns(raw: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """Which raw patterns (N, H, W) hold one value everywhere: dropped frames (NORDIF writes zeros), a blanked
    beam, a saturated camera. Any model output for them would be its bias, not a reading."""
    flat = raw.reshape(len(raw), -1)
    # equality with the first pixel, not max == min: torch has no max of uint16 (EDAX .up2) on the CPU
    return (flat == flat[:, :1]).all(1)


@functools.lru_cache(maxsize=32)
def _blur_matrix(length: int, sigma: float) -> torch.Tensor:
    """(length, length) matrix of a 1-D Gaussian blur with edge-replicating borders.

    ``matrix @ x`` equals scipy's ``gaussian_filter1d(x, sigma, mode="nearest")``;
    as a matrix product the blur is fast on the CPU and the GPU alike (a 61-tap
    torch convolution ran 6x slower than scipy on the CPU).
    """
    radius = int(GAUSSIAN_TRUNCATE * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    matrix = np.zeros((length, length))
    rows = np.arange(length)
    for offset, weight in zip(offsets, kernel):
        np.add.at(matrix, (rows, np.clip(rows + offset, 0, length - 1)), weight)
    return torch.from_numpy(matrix.astype(np.float32))


def gaussian_blur(batch: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur each (H, W) image of an (N, H, W) float tensor with edge-replicating borders."""
    rows, cols = batch.shape[1:]
    along_rows = _blur_matrix(rows, sigma).to(batch.device)
    along_cols = _blur_matrix(cols, sigma).to(batch.device)
    return along_rows @ batch @ along_cols.T


def remove_static_background(batch: torch.Tensor, background: torch.Tensor | np.ndarray | None) -> torch.Tensor:
    if background is None:
        return batch
    bg = torch.as_tensor(background, dtype=torch.float32, device=batch.device)  # no copy when already there
    if tuple(bg.shape) != tuple(batch.shape[1:]):
        return batch  # a background of another size cannot apply; dynamic removal still runs
    return batch - bg[None]


def remove_dynamic_background(
    batch: torch.Tensor, sigma_fraction: float = PreprocessConfig.dynamic_sigma_fraction
) -> torch.Tensor:
    """Subtract a Gaussian-blurred copy (sigma = ``sigma_fraction`` of the width).

    The background is smooth, so it is blurred on a copy binned to about 32
    pixels across and interpolated back: the same result at large pattern sizes
    for a fraction of the cost (a 120x120 batch runs several times faster).
    """
    rows, cols = batch.shape[1:]
    factor = max(1, min(rows, cols) // 32)
    if factor == 1:
        return batch - gaussian_blur(batch, sigma_fraction * cols)
    small = F.avg_pool2d(batch[:, None], factor, ceil_mode=True)[:, 0]
    smooth = gaussian_blur(small, sigma_fraction * cols / factor)
    back = F.interpolate(smooth[:, None], size=(rows, cols), mode="bilinear", align_corners=False)
    return batch - back[:, 0]


def crop_to_square(batch: torch.Tensor) -> torch.Tensor:
    """Centre-crop rectangular patterns (e.g. 1600x1200 cameras) to a square, without distortion."""
    rows, cols = batch.shape[1:]
    side = min(rows, cols)
    top, left = (rows - side) // 2, (cols - side) // 2
    return batch[:, top : top + side, left : left + side]


def square_crop_pc(pc: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Bruker projection centres (N, 3) of ``rows x cols`` patterns after :func:`crop_to_square`."""
    pc = np.array(pc, dtype=np.float32, ndmin=2)
    side = min(rows, cols)
    top, left = (rows - side) // 2, (cols - side) // 2
    pc[:, 0] = (pc[:, 0] * cols - left) / side
    pc[:, 1] = (pc[:, 1] * rows - top) / side
    pc[:, 2] = pc[:, 2] * rows / side
    return pc


def input_size_for(pattern_shape: tuple[int, int]) -> int:
    """The default network input for patterns of this shape: the smallest of :data:`INPUT_SIZES` that keeps
    every pixel of the square crop (60 px -> 64, 120 px -> 128), at most 224.

    Downsampling costs accuracy (austenite/ferrite at 60 px stays near chance, at 120 px it does not:
    bench/RESULTS.md), so the default keeps the detail the camera recorded.
    """
    side = min(int(v) for v in pattern_shape)
    return next((size for size in INPUT_SIZES if size >= side), INPUT_SIZES[-1])


def resize_batch(batch: torch.Tensor, size: int) -> torch.Tensor:
    if tuple(batch.shape[1:]) == (size, size):
        return batch
    out = F.interpolate(batch[:, None], size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return out[:, 0]


def bin_patterns(patterns: np.ndarray, factor: int) -> np.ndarray:
    """Patterns (..., H, W) as a camera binned ``factor`` times records them: the mean of every
    ``factor`` x ``factor`` block, as float32 (rows and columns that fill no whole block are cropped)."""
    if factor <= 1:
        return patterns
    *lead, rows, cols = patterns.shape
    rows, cols = rows // factor, cols // factor
    blocks = np.asarray(patterns[..., : rows * factor, : cols * factor], dtype=np.float32)
    return blocks.reshape(*lead, rows, factor, cols, factor).mean(axis=(-3, -1))


def standardise(batch: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance per pattern (flattened: twice as fast on the CPU as ``torch.std_mean`` over 2 dims)."""
    flat = batch.reshape(len(batch), -1)
    centred = flat - flat.mean(dim=1, keepdim=True)
    std = centred.square().mean(dim=1, keepdim=True).sqrt()
    return (centred / std.clamp_min(1e-6)).view(batch.shape)


def circular_mask(size: int) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    centre = (size - 1) / 2
    return ((yy - centre) ** 2 + (xx - centre) ** 2) <= (size / 2) ** 2


def preprocess_tensor(
    patterns: torch.Tensor,
    config: PreprocessConfig = PreprocessConfig(),
    static_background: torch.Tensor | np.ndarray | None = None,
) -> torch.Tensor:
    """The pipeline on an (N, H, W) tensor of any numeric dtype, on its own device; float32 (N, size, size)."""
    batch = patterns.to(torch.float32)
    if config.static_background:
        batch = remove_static_background(batch, static_background)
    if config.dynamic_background:
        batch = remove_dynamic_background(batch, config.dynamic_sigma_fraction)
    batch = standardise(resize_batch(crop_to_square(batch), config.size))
    if config.circular_mask:
        batch = batch * torch.from_numpy(circular_mask(config.size)).to(batch.device)[None]
    return batch


def preprocess(
    patterns: np.ndarray,
    config: PreprocessConfig = PreprocessConfig(),
    static_background: np.ndarray | None = None,
    source: str = "patterns",
) -> np.ndarray:
    """Run the pipeline on a batch; returns float32 ``(N, size, size)``."""
    batch = torch.from_numpy(np.ascontiguousarray(checked_batch(patterns, source)))
    return preprocess_tensor(batch, config, static_background).numpy()


@functools.lru_cache(maxsize=8)
def _frequency_weights(rows: int, cols: int) -> tuple[torch.Tensor, float]:
    """kikuchipy's ``fft_frequency_vectors`` (squared spatial frequencies), without importing kikuchipy.

    Inference workers and GPU machines then need no kikuchipy; a test checks the
    values against kikuchipy's.
    """

    def line(n: int) -> np.ndarray:
        values = np.arange(n) + 1
        values[n // 2 :] -= n + 1
        return values

    weights = (line(rows)[:, None] ** 2 + line(cols)[None, :] ** 2 - 1).astype(np.float32)
    return torch.from_numpy(weights), float(weights.sum() / (rows * cols))


def image_quality_tensor(batch: torch.Tensor) -> torch.Tensor:
    """Krieger Lassen image quality of each pattern (as kikuchipy's ``get_image_quality``), on the batch's device.

    Sharp, high-contrast Kikuchi bands concentrate the power spectrum at low
    frequencies and give values near 1; noise spreads it and lowers the value.
    """
    batch = standardise(batch.to(torch.float32))
    weights, inertia_max = _frequency_weights(*batch.shape[1:])
    spectrum = torch.fft.fft2(batch).abs()  # single precision: 3x faster than numpy's on the CPU
    inertia = (spectrum * weights.to(batch.device)).sum(dim=(1, 2)) / spectrum.sum(dim=(1, 2)).clamp_min(1e-12)
    return 1 - inertia / inertia_max


def image_quality(batch: np.ndarray) -> np.ndarray:
    """:func:`image_quality_tensor` for a numpy batch."""
    return image_quality_tensor(torch.from_numpy(np.asarray(batch, dtype=np.float32))).numpy()


def normalized_cross_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Zero-normalised cross-correlation of two equally shaped images."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    a = a - a.mean()
    b = b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else 0.0
