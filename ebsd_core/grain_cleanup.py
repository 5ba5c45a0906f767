"""Grain-aware clean-up of phase maps, from pattern similarity alone.

Neighbouring points of one grain record nearly the same pattern; across a grain or phase
boundary the pattern changes. The clean-up averages each point's class probabilities with
those of its eight neighbours whose preprocessed patterns correlate above ``SAME_GRAIN_NCC``
(kikuchipy's neighbour dot products, on a 64 px copy), and repeats that a few times. A
mistake that belongs to one point's orientation or noise then takes its grain's answer, while
boundaries stay where the patterns change. No orientations and no ground truth are needed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from ebsd_core.errors import CancelledError
from ebsd_core.io.readers import PatternSource
from ebsd_core.preprocess import PreprocessConfig, preprocess

#: Neighbour offsets (row, column) stored per point; with their mirror images they cover all eight.
OFFSETS = ((0, 1), (1, -1), (1, 0), (1, 1))
SIGNATURE_SIZE = 64  # pixels of the pattern copy that similarities are computed on
# Both chosen on development maps that the accuracy benchmark never maps (bench/phasemap.py cleanup):
SAME_GRAIN_NCC = 0.7  # neighbours whose patterns correlate above this count as the same grain
PASSES = 20  # averaging rounds: each one reaches one neighbour further into the grain
BLOCK_PATTERNS = 4096  # patterns read at a time (whole rows, plus the row below)

Progress = Callable[[float, str], None]


def _signatures(patterns: np.ndarray, config: PreprocessConfig, background, source: str) -> np.ndarray:
    """Unit vectors (N, D) of the preprocessed patterns: their dot products are NCCs."""
    x = preprocess(patterns, config, background, source).reshape(len(patterns), -1)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def neighbour_similarity(
    source: PatternSource,
    nav_shape: tuple[int, int],
    config: PreprocessConfig,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> np.ndarray:
    """NCC (rows, cols, 4) of each point's pattern with its neighbours at :data:`OFFSETS` (-1: none).

    Streams the scan in blocks of whole rows, so memory stays bounded whatever its size.
    """
    rows, cols = nav_shape
    config = dataclasses.replace(config, size=min(SIGNATURE_SIZE, config.size))
    similarity = np.full((rows, cols, len(OFFSETS)), -1.0, dtype=np.float32)
    block = max(1, BLOCK_PATTERNS // cols)
    for r0 in range(0, rows, block):
        if should_stop and should_stop():
            raise CancelledError("grain clean-up cancelled")
        r1 = min(rows, r0 + block)
        raw = source.run_batch(r0 * cols, min(rows, r1 + 1) * cols)
        sig = _signatures(raw, config, source.static_background, source.path)
        sig = sig.reshape(-1, cols, sig.shape[-1])
        for k, (dr, dc) in enumerate(OFFSETS):
            here = sig[: r1 - r0]
            there = sig[dr : dr + r1 - r0]
            n = len(there)  # the last block has no row below
            a = slice(max(0, -dc), cols - max(0, dc))
            b = slice(max(0, dc), cols - max(0, -dc))
            similarity[r0 : r0 + n, a, k] = np.einsum("rcd,rcd->rc", here[:n, a], there[:, b])
        if progress:
            progress(r1 / rows, f"grain clean-up: {r1 * cols:,}/{rows * cols:,} patterns compared")
    return similarity


def smooth_probabilities(
    probabilities: np.ndarray,
    similarity: np.ndarray,
    threshold: float = SAME_GRAIN_NCC,
    passes: int = PASSES,
) -> np.ndarray:
    """Average (N, C) probabilities over same-grain neighbours, ``passes`` times."""
    rows, cols = similarity.shape[:2]
    p = probabilities.reshape(rows, cols, -1).astype(np.float32)
    for _ in range(passes):
        total, weight = p.copy(), np.ones((rows, cols, 1), np.float32)
        for k, (dr, dc) in enumerate(OFFSETS):
            a = (slice(0, rows - dr), slice(max(0, -dc), cols - max(0, dc)))
            b = (slice(dr, rows), slice(max(0, dc), cols - max(0, -dc)))
            same = (similarity[(*a, k)] > threshold)[..., None].astype(np.float32)
            total[a] += same * p[b]
            weight[a] += same
            total[b] += same * p[a]
            weight[b] += same
        p = total / weight
    return p.reshape(probabilities.shape)
