import numpy as np
import pytest
import torch

from ebsd_core.errors import InputError
from ebsd_core.preprocess import (
    PreprocessConfig,
    _frequency_weights,
    bin_patterns,
    circular_mask,
    gaussian_blur,
    image_quality,
    image_quality_tensor,
    input_size_for,
    normalized_cross_correlation,
    preprocess,
    preprocess_tensor,
)


@pytest.mark.parametrize(
    "shape, size", [((24, 24), 32), ((60, 60), 64), ((60, 80), 64), ((120, 120), 128), ((480, 640), 224)]
)
def test_default_input_keeps_every_pixel_of_the_square_crop(shape, size):
    assert input_size_for(shape) == size


def test_binning_averages_blocks_like_a_camera():
    patterns = np.arange(2 * 5 * 7, dtype=np.uint8).reshape(2, 5, 7)
    binned = bin_patterns(patterns, 2)
    assert binned.shape == (2, 2, 3) and binned.dtype == np.float32  # the odd row and column are cropped
    assert binned[0, 0, 0] == np.mean([0, 1, 7, 8])
    assert bin_patterns(patterns[0], 2).shape == (2, 3)  # a static background bins the same way
    assert bin_patterns(patterns, 1) is patterns


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
    with pytest.raises(InputError, match="scan.h5: 1 pattern contains NaN or infinite values"):
        preprocess(bad, source="scan.h5")


def test_mask_and_config_roundtrip():
    config = PreprocessConfig(size=32, circular_mask=True)
    assert PreprocessConfig.from_dict(config.to_dict() | {"unknown": 1}) == config
    out = preprocess(np.random.default_rng(1).random((1, 32, 32)), config)
    assert out[0, 0, 0] == 0 and circular_mask(32)[16, 16]


@pytest.mark.parametrize("size,sigma", [(60, 7.5), (17, 2.3), (40, 5.0)])
def test_gaussian_blur_matches_scipy_nearest_mode(rng, size, sigma):
    from scipy.ndimage import gaussian_filter

    images = rng.random((3, size, size + 5)).astype(np.float32)
    expected = gaussian_filter(images, sigma=(0, sigma, sigma), mode="nearest")
    assert np.allclose(gaussian_blur(torch.from_numpy(images), sigma).numpy(), expected, atol=1e-5)


def test_frequency_weights_match_kikuchipy():
    from kikuchipy.pattern import fft_frequency_vectors

    for shape in ((60, 60), (31, 48)):
        weights, _ = _frequency_weights(*shape)
        assert np.array_equal(weights.numpy(), fft_frequency_vectors(shape))


def test_image_quality_matches_kikuchipy(rng):
    from kikuchipy.pattern import get_image_quality

    yy, xx = np.mgrid[:48, :48]
    patterns = np.stack([np.cos(xx / 3.0) + 0.1 * rng.random((48, 48)), rng.random((48, 48))]).astype(np.float32)
    expected = [get_image_quality(p) for p in patterns]
    assert np.allclose(image_quality(patterns), expected, atol=1e-4)
    assert image_quality(patterns)[0] > image_quality(patterns)[1]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_pipeline_on_cuda_matches_cpu(rng):
    raw = rng.integers(0, 255, (16, 120, 100)).astype(np.uint8)
    background = rng.random((120, 100)).astype(np.float32) * 10
    config = PreprocessConfig(size=64, circular_mask=True)
    on_cpu = preprocess_tensor(torch.from_numpy(raw), config, background)
    on_gpu = preprocess_tensor(torch.from_numpy(raw).cuda(), config, background)
    assert on_gpu.device.type == "cuda"
    assert torch.allclose(on_gpu.cpu(), on_cpu, atol=1e-4)
    assert torch.allclose(image_quality_tensor(on_gpu).cpu(), image_quality_tensor(on_cpu), atol=1e-5)
