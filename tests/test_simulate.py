import numpy as np

from ebsd_core.phases import get_material
from ebsd_core.preprocess import normalized_cross_correlation, preprocess
from ebsd_core.simulate import (
    DetectorModel,
    apply_detector_model,
    backscatter_background,
    blurred,
    kikuchi_signal,
    random_quaternions,
    simulate_material,
)


def test_random_quaternions_are_unit_and_uniform(rng):
    q = random_quaternions(20000, rng)
    assert np.allclose(np.linalg.norm(q, axis=1), 1)
    assert (q[:, 0] >= 0).all()
    # uniform on SO(3): |a| of a random rotation has mean 8/(3 pi) ~ 0.849... for the half-sphere
    assert abs(np.abs(q[:, 1:]).mean() - 0.5 * 8 / (3 * np.pi) * 1.0) < 0.05


def test_simulation_is_deterministic_for_a_seed():
    ni = get_material("ni")
    a = simulate_material(ni, 8, 32, seed=5)
    b = simulate_material(ni, 8, 32, seed=5)
    c = simulate_material(ni, 8, 32, seed=6)
    assert np.array_equal(a.patterns, b.patterns)
    assert not np.array_equal(a.patterns, c.patterns)
    assert a.patterns.dtype == np.uint8 and a.patterns.shape == (8, 32, 32)


def test_detector_model_bit_depth_and_mask():
    sim = simulate_material(get_material("w"), 4, 40, seed=1, detector=DetectorModel(bit_depth=16, circular_mask=True))
    assert sim.patterns.dtype == np.uint16
    assert sim.patterns.max() > 40000
    assert (sim.patterns[:, 0, 0] == 0).all()


def test_noise_free_and_noisy_patterns_correlate():
    ni = get_material("ni")
    clean = simulate_material(ni, 6, 60, seed=2, detector=DetectorModel(counts_per_pixel=(1e7, 1e7), read_noise=(0, 0)))
    noisy = simulate_material(ni, 6, 60, seed=2)
    scores = [
        normalized_cross_correlation(a, b) for a, b in zip(preprocess(clean.patterns), preprocess(noisy.patterns))
    ]
    assert 0.2 < np.mean(scores) < 0.999


def test_the_noise_free_screen_is_what_the_detector_model_records_without_noise(rng):
    # bench/separability.py renders its templates with these two pieces: with every range of the
    # detector model pinned and the noise turned off, they must give the model's own recording
    clean = rng.random((3, 40, 40)).astype(np.float32)
    pcs = np.tile([0.5, 0.25, 0.6], (3, 1))
    pinned = DetectorModel(
        band_contrast=(0.2, 0.2),
        counts_per_pixel=(1e9, 1e9),
        read_noise=(0.0, 0.0),
        psf_sigma_px=(0.8, 0.8),
        gamma=(1.0, 1.0),
        background_width=(0.7, 0.7),
        bit_depth=16,
    )
    recorded = apply_detector_model(clean, pcs, pinned, rng)
    screen = kikuchi_signal(clean, backscatter_background(pcs, 40, np.full(3, 0.7)), np.full(3, 0.2))
    expected = blurred(screen, np.full(3, 0.8))
    for a, b in zip(recorded.astype(np.float32), expected):
        assert normalized_cross_correlation(a, b) > 0.9999


def test_large_batches_with_a_pc_per_pattern_project():
    # kikuchipy splits a large batch (dask's chunk size, 128 MiB: e.g. 256 patterns of 480 px) into
    # several chunks and then fails ("Dimension 1 has 2 blocks") when every pattern has its own
    # projection centre; a 64 KiB chunk size makes 100 small patterns such a batch
    import dask

    from ebsd_core.masters import load_master
    from ebsd_core.simulate import project, projection_chunk

    rng = np.random.default_rng(3)
    n = 100
    pcs = np.column_stack([rng.uniform(0.4, 0.6, n), rng.uniform(0.2, 0.3, n), rng.uniform(0.5, 0.6, n)])
    with dask.config.set({"array.chunk-size": "64KiB"}):
        patterns = project(load_master(get_material("ferrite")), random_quaternions(n, rng), pcs, 40)
    assert patterns.shape == (n, 40, 40) and np.isfinite(patterns).all()
    assert projection_chunk(60, 1024) == 1024 and projection_chunk(480, 256) == 72


def test_a_rectangular_detector_projects_its_own_shape():
    from ebsd_core.masters import load_master
    from ebsd_core.simulate import project

    master = load_master(get_material("ferrite"))
    q = random_quaternions(2, np.random.default_rng(4))
    wide = project(master, q, (0.5, 0.45, 0.57), (30, 40))
    assert wide.shape == (2, 30, 40) and wide.min() == 0 and np.isclose(wide.max(), 1)
    # the square call is the rectangular one with equal sides
    assert np.allclose(project(master, q, (0.5, 0.45, 0.57), 30), project(master, q, (0.5, 0.45, 0.57), (30, 30)))
