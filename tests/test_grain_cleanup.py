"""Grain clean-up: neighbour similarities from patterns, and averaging that stops at boundaries."""

import dataclasses

import numpy as np
import pytest

from ebsd_core.grain_cleanup import OFFSETS, SAME_GRAIN_NCC, neighbour_similarity, smooth_probabilities
from ebsd_core.inference import predict_source
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
