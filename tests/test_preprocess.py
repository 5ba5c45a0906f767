import numpy as np
import pytest

from ebsd_core.errors import InputError
from ebsd_core.preprocess import PreprocessConfig, circular_mask, normalized_cross_correlation, preprocess


def test_output_is_standardised_and_resized(rng):
    raw = rng.integers(0, 255, (3, 80, 80)).astype(np.uint8)
    out = preprocess(raw, PreprocessConfig(size=48))
    assert out.shape == (3, 48, 48) and out.dtype == np.float32
    assert np.allclose(out.mean(axis=(1, 2)), 0, atol=1e-4)
    assert np.allclose(out.std(axis=(1, 2)), 1, atol=1e-3)


def test_smooth_background_is_removed():
    yy, xx = np.mgrid[:60, :60]
    background = np.exp(-((xx - 30) ** 2 + (yy - 20) ** 2) / 5000.0) * 200
    band = 10.0 * (np.abs(xx - yy) < 2)
    raw = background + band
    out = preprocess(raw[None])
    assert normalized_cross_correlation(out[0], band) > 0.5
    assert normalized_cross_correlation(out[0], band) > normalized_cross_correlation(raw, band) + 0.3


def test_static_background_subtracted_when_sizes_match(rng):
    background = rng.random((30, 30)) * 100
    pattern = background + 5 * (np.arange(30)[None, :] % 6 < 2)
    with_bg = preprocess(pattern[None], PreprocessConfig(size=30), static_background=background)
    without = preprocess(
        pattern[None], PreprocessConfig(size=30, static_background=False), static_background=background
    )
    stripes = 5.0 * (np.arange(30)[None, :] % 6 < 2) * np.ones((30, 1))
    assert normalized_cross_correlation(with_bg[0], stripes) > normalized_cross_correlation(without[0], stripes)


def test_nan_is_refused_with_source_name():
    bad = np.ones((2, 10, 10))
    bad[1, 3, 3] = np.nan
    with pytest.raises(InputError, match="scan.h5: 1 pattern"):
        preprocess(bad, source="scan.h5")


def test_mask_and_config_roundtrip():
    config = PreprocessConfig(size=32, circular_mask=True)
    assert PreprocessConfig.from_dict(config.to_dict() | {"unknown": 1}) == config
    out = preprocess(np.random.default_rng(1).random((1, 32, 32)), config)
    assert out[0, 0, 0] == 0 and circular_mask(32)[16, 16]
