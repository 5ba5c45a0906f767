"""Grain clean-up: neighbour similarities from patterns, and averaging that stops at boundaries."""

import dataclasses

import numpy as np
import pytest

from ebsd_core.grain_cleanup import (
    OFFSETS,
    SAME_GRAIN_NCC,
    clean_up_hexagonal,
    neighbour_similarity,
    smooth_probabilities,
)
from ebsd_core.inference import predict_source
from ebsd_core.io.hex_grid import NEIGHBOURS, place_cells, up2_places
from ebsd_core.io.readers import PatternSource, open_patterns
from ebsd_core.phasemap import load_phase_map, map_scan, map_views, save_phase_map
from ebsd_core.preprocess import PreprocessConfig, preprocess
from ebsd_core.store import load_model


def _two_grain_scan(rows: int = 6, cols: int = 9) -> tuple[PatternSource, np.ndarray]:
    """Left grain (columns < 4) and right grain, each one noisy pattern repeated."""
    rng = np.random.default_rng(0)
    grains = rng.integers(0, 255, (2, 24, 24)).astype(np.float32)
    grain = (np.arange(cols)[None, :] >= 4).astype(int).repeat(rows, axis=0)
    patterns = grains[grain.ravel()] + rng.normal(0, 20, (rows * cols, 24, 24))
    patterns = np.clip(patterns, 0, 255).astype(np.uint8)
    return PatternSource("two_grains.h5", "test", patterns, nav_shape=(rows, cols)), grain


def test_similarity_is_high_inside_grains_and_low_across(monkeypatch):
    monkeypatch.setattr("ebsd_core.grain_cleanup.BLOCK_PATTERNS", 20)  # blocks of two rows: seams are covered
    source, grain = _two_grain_scan()
    config = PreprocessConfig(size=24)
    similarity = neighbour_similarity(source, (6, 9), config)
    signature = preprocess(source.patterns, config).reshape(54, -1)
    signature /= np.linalg.norm(signature, axis=1, keepdims=True)
    for r in range(6):
        for c in range(9):
            for k, (dr, dc) in enumerate(OFFSETS):
                rr, cc = r + dr, c + dc
                if not (0 <= rr < 6 and 0 <= cc < 9):
                    assert similarity[r, c, k] == -1
                    continue
                expected = signature[r * 9 + c] @ signature[rr * 9 + cc]
                assert similarity[r, c, k] == pytest.approx(expected, abs=1e-4)
                assert (similarity[r, c, k] > SAME_GRAIN_NCC) == (grain[r, c] == grain[rr, cc])


def test_smoothing_fixes_isolated_points_and_keeps_the_boundary():
    source, grain = _two_grain_scan()
    similarity = neighbour_similarity(source, (6, 9), PreprocessConfig(size=24))
    probabilities = np.eye(2, dtype=np.float32)[grain.ravel()] * 0.8 + 0.1
    wrong = [2 * 9 + 1, 4 * 9 + 6]  # one point inside each grain says the other phase
    probabilities[wrong] = probabilities[wrong][:, ::-1]
    smoothed = smooth_probabilities(probabilities, similarity)
    assert np.array_equal(smoothed.argmax(1), grain.ravel())
    assert np.allclose(smoothed.sum(1), 1, atol=1e-5)
    across = smooth_probabilities(np.eye(2, dtype=np.float32)[grain.ravel()], similarity)
    assert np.allclose(across, np.eye(2)[grain.ravel()])  # nothing leaks over the boundary


def test_map_scan_cleans_up_and_keeps_the_raw_answers(map_model, map_scan_file, tmp_path):
    model, card = load_model(map_model)
    source = open_patterns(map_scan_file)
    assert map_scan(model, card, source, cleanup=False).raw_probabilities is None
    cleaned = map_scan(model, card, source)
    own_views = dataclasses.replace(card, views=map_views(card, cleanup=True), views_below=None)  # every point's
    raw = predict_source(model, own_views, source, scatter_views=True).probabilities  # before the clean-up
    np.testing.assert_allclose(cleaned.raw_probabilities, raw, atol=1e-6)
    assert not np.allclose(cleaned.probabilities, raw)
    summary = cleaned.summary()
    assert summary["grain_cleanup"] and summary["accuracy_before_cleanup"] == round(cleaned.accuracy(raw), 4)
    again = load_phase_map(save_phase_map(cleaned, tmp_path / "map.npz"))
    assert np.array_equal(again.raw_probabilities, cleaned.raw_probabilities)
    assert again.summary() == summary


def _two_grain_hexagonal_scan(order: np.ndarray | None = None) -> tuple[PatternSource, np.ndarray]:
    """6 rows of 9 and 8 points, the shorter half a step in; the left grain (half-step columns < 8) and the right
    one, each one noisy pattern repeated; in the file in ``order`` (row by row if None)."""
    rng = np.random.default_rng(0)
    places = up2_places(9, 6, 51)
    grains = rng.integers(0, 255, (2, 24, 24)).astype(np.float32)
    grain = (places[:, 1] >= 8).astype(int)
    patterns = np.clip(grains[grain] + rng.normal(0, 20, (len(places), 24, 24)), 0, 255).astype(np.uint8)
    if order is not None:
        places, grain, patterns = places[order], grain[order], patterns[order]
    source = PatternSource(
        "hexagonal.h5", "test", patterns, nav_shape=(len(places),), hexagonal_grid=True, hexagonal_places=places
    )
    return source, grain


def test_similarity_on_a_hexagonal_grid_is_of_each_points_six_neighbours(monkeypatch):
    monkeypatch.setattr("ebsd_core.grain_cleanup.BLOCK_PATTERNS", 36)  # blocks of two rows: seams are covered
    source, grain = _two_grain_hexagonal_scan()
    config = PreprocessConfig(size=24)
    cells = place_cells(source.hexagonal_places)
    similarity = neighbour_similarity(source, cells.shape, config, cells=cells, offsets=NEIGHBOURS)
    signature = preprocess(source.patterns, config).reshape(len(source), -1)
    signature /= np.linalg.norm(signature, axis=1, keepdims=True)
    where = {(int(r), int(h)): i for i, (r, h) in enumerate(source.hexagonal_places)}
    compared = 0
    for r in range(cells.shape[0]):
        for h in range(cells.shape[1]):
            for k, (dr, dh) in enumerate(NEIGHBOURS):
                i, j = where.get((r, h)), where.get((r + dr, h + dh))
                if i is None or j is None:  # a half step no point is at, or off the grid
                    assert similarity[r, h, k] == -1
                    continue
                compared += 1
                assert similarity[r, h, k] == pytest.approx(signature[i] @ signature[j], abs=1e-4)
                assert (similarity[r, h, k] > SAME_GRAIN_NCC) == (grain[i] == grain[j])
    assert compared == 3 * 8 + 3 * 7 + 5 * 16  # along rows of 9 and 8 points, then each shorter one's two diagonals


@pytest.mark.parametrize("shuffled", [False, True])
def test_the_cleanup_on_a_hexagonal_grid_fixes_isolated_points_and_keeps_the_boundary(shuffled):
    """Also of a file whose points are not row by row: each pattern is read where it is."""
    order = np.random.default_rng(1).permutation(51) if shuffled else None
    source, grain = _two_grain_hexagonal_scan(order)
    probabilities = np.eye(2, dtype=np.float32)[grain] * 0.8 + 0.1
    wrong = [int(np.flatnonzero(grain == 0)[10]), int(np.flatnonzero(grain == 1)[12])]  # inside each grain
    probabilities[wrong] = probabilities[wrong][:, ::-1]
    smoothed = clean_up_hexagonal(probabilities, source, PreprocessConfig(size=24))
    assert np.array_equal(smoothed.argmax(1), grain) and np.allclose(smoothed.sum(1), 1, atol=1e-5)
    across = clean_up_hexagonal(np.eye(2, dtype=np.float32)[grain], source, PreprocessConfig(size=24))
    np.testing.assert_allclose(across, np.eye(2)[grain])  # nothing leaks over the boundary
