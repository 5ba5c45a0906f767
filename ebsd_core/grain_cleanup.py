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
from ebsd_core.io.hex_grid import NEIGHBOURS, place_cells
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
    cells: np.ndarray | None = None,
    offsets: tuple[tuple[int, int], ...] = OFFSETS,
) -> np.ndarray:
    """NCC (rows, cols, K) of each point's pattern with its neighbours at ``offsets`` (-1: none).

    The points lie on a map of ``nav_shape``, row by row; or, where ``cells`` (rows, cols) give the point at each
    place (-1 where none is: a hexagonal grid's half steps, :func:`~ebsd_core.io.hex_grid.place_cells`), there.
    Streams the scan in blocks of whole rows, so memory stays bounded whatever its size.
    """
    if cells is None:
        cells = np.arange(nav_shape[0] * nav_shape[1]).reshape(nav_shape)
    rows, cols = cells.shape
    config = dataclasses.replace(config, size=min(SIGNATURE_SIZE, config.size))
    similarity = np.full((rows, cols, len(offsets)), -1.0, dtype=np.float32)
    block = max(1, BLOCK_PATTERNS // cols)
    done, total = 0, int((cells >= 0).sum())
    for r0 in range(0, rows, block):
        if should_stop and should_stop():
            raise CancelledError("grain clean-up cancelled")
        r1 = min(rows, r0 + block)
        sig = _place_signatures(source, cells[r0 : min(rows, r1 + 1)], config)
        held = cells[r0 : min(rows, r1 + 1)] >= 0
        for k, (dr, dc) in enumerate(offsets):
            n = min(r1 - r0, len(sig) - dr)  # the last block has no row below
            a = slice(max(0, -dc), cols - max(0, dc))
            b = slice(max(0, dc), cols - max(0, -dc))
            ncc = np.einsum("rcd,rcd->rc", sig[:n, a], sig[dr : dr + n, b])
            similarity[r0 : r0 + n, a, k] = np.where(held[:n, a] & held[dr : dr + n, b], ncc, -1.0)
        done += int(held[: r1 - r0].sum())
        if progress:
            progress(r1 / rows, f"grain clean-up: {done:,}/{total:,} patterns compared")
    return similarity


def _place_signatures(source: PatternSource, cells: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """Signatures (rows, cols, D) of the patterns at ``cells``; zeros where no point is."""
    index = cells[cells >= 0]
    first = int(index.min())
    if np.array_equal(index, np.arange(first, first + len(index))):  # row by row, as scans are: one read
        raw = source.run_batch(first, first + len(index))
    else:
        order = np.argsort(index)
        raw = np.empty((len(index), *source.pattern_shape), dtype=source.patterns.dtype)
        raw[order] = source.take(index[order], lenient=True)
    sig = _signatures(raw, config, source.static_background, source.path)
    if len(index) == cells.size:  # a square grid's: no place empty
        return sig.reshape(*cells.shape, sig.shape[-1])
    out = np.zeros((*cells.shape, sig.shape[-1]), dtype=np.float32)
    out[cells >= 0] = sig
    return out


def smooth_probabilities(
    probabilities: np.ndarray,
    similarity: np.ndarray,
    threshold: float = SAME_GRAIN_NCC,
    passes: int = PASSES,
    cells: np.ndarray | None = None,
    offsets: tuple[tuple[int, int], ...] = OFFSETS,
) -> np.ndarray:
    """Average (N, C) probabilities over same-grain neighbours, ``passes`` times: the points lie row by row on a map
    of ``similarity``'s rows and columns, or at ``cells``, with their neighbours at ``offsets``
    (:func:`neighbour_similarity`)."""
    rows, cols = similarity.shape[:2]
    if cells is None:
        p = probabilities.reshape(rows, cols, -1).astype(np.float32)
    else:
        held = cells >= 0
        p = np.zeros((rows, cols, probabilities.shape[1]), np.float32)
        p[held] = probabilities[cells[held]]
    for _ in range(passes):
        total, weight = p.copy(), np.ones((rows, cols, 1), np.float32)
        for k, (dr, dc) in enumerate(offsets):
            a = (slice(0, rows - dr), slice(max(0, -dc), cols - max(0, dc)))
            b = (slice(dr, rows), slice(max(0, dc), cols - max(0, -dc)))
            same = (similarity[(*a, k)] > threshold)[..., None].astype(np.float32)
            total[a] += same * p[b]
            weight[a] += same
            total[b] += same * p[a]
            weight[b] += same
        p = total / weight
    if cells is None:
        return p.reshape(probabilities.shape)
    smoothed = np.empty_like(probabilities, dtype=np.float32)
    smoothed[cells[held]] = p[held]
    return smoothed


def clean_up_hexagonal(
    probabilities: np.ndarray,
    source: PatternSource,
    config: PreprocessConfig,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> np.ndarray:
    """The probabilities of a scan on a hexagonal grid whose points' places it records, after the clean-up: each
    averaged with those of its six neighbours (:data:`~ebsd_core.io.hex_grid.NEIGHBOURS`) whose patterns correlate."""
    cells = place_cells(source.hexagonal_places)
    similarity = neighbour_similarity(source, cells.shape, config, progress, should_stop, cells, NEIGHBOURS)
    return smooth_probabilities(probabilities, similarity, cells=cells, offsets=NEIGHBOURS)
