"""Augmentations keep a pattern's physics: standardised output, rotations about the centre, re-projection."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from ebsd_core.augment import (
    AugmentConfig,
    augment_batch,
    camera_binning,
    random_rotations,
    rebinned,
    reproject,
)

STILL = AugmentConfig(
    noise_std=0.0,
    blur_probability=0.0,
    contrast=(1, 1),
    gamma=(1, 1),
    pc_shift=0.0,
    pc_zoom=0.0,
    mirror=False,
    crystal_rotation=0.0,
)


def _grid(size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    axis = torch.linspace(-1, 1, size)
    return torch.meshgrid(axis, axis, indexing="ij")


def _correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


def test_output_is_standardised():
    x = torch.rand(8, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    y = augment_batch(x, AugmentConfig(rotation=180), torch.Generator().manual_seed(1))
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert torch.allclose(y.mean(dim=(2, 3)), torch.zeros(8, 1), atol=1e-4)
    assert torch.allclose(y.std(dim=(2, 3)), torch.ones(8, 1), atol=1e-3)


def test_rotation_turns_about_the_centre_and_pads_with_the_mean():
    yy, xx = _grid()
    inside = (yy**2 + xx**2) < 0.8
    rings = torch.cos(8 * torch.sqrt(yy**2 + xx**2))[None, None].repeat(6, 1, 1, 1)
    turned = augment_batch(rings, AugmentConfig(**{**STILL.to_dict(), "rotation": 180}), torch.Generator())
    for k in range(6):  # rings are rotation invariant: unchanged inside the inscribed circle
        assert _correlation(turned[k, 0][inside], rings[k, 0][inside]) > 0.99
    stripes = torch.cos(10 * xx)[None, None].repeat(6, 1, 1, 1)
    turned = augment_batch(stripes, AugmentConfig(**{**STILL.to_dict(), "rotation": 180}), torch.Generator())
    assert min(abs(_correlation(turned[k, 0], stripes[k, 0])) for k in range(6)) < 0.9  # stripes do turn
    corners = turned[:, 0, :4, :4]
    assert corners.abs().mean() < turned[:, 0].abs().mean()  # mean-level fill, not mirrored stripes


def test_no_rotation_by_default():
    yy, xx = _grid()
    stripes = torch.cos(10 * xx)[None, None].repeat(4, 1, 1, 1)
    out = augment_batch(stripes, STILL, torch.Generator())
    assert min(_correlation(out[k, 0], stripes[k, 0]) for k in range(4)) > 0.999


def test_crystal_rotation_is_identity_at_zero_degrees():
    x = torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    still = STILL.to_dict() | {"crystal_rotation": 1e-6}
    y = augment_batch(
        x, AugmentConfig(**still), torch.Generator().manual_seed(1), pc=torch.tensor([[0.5, 0.3, 0.6]] * 4)
    )
    z = augment_batch(x, STILL, torch.Generator().manual_seed(1))
    assert torch.allclose(y, z, atol=1e-3)


def test_random_rotations_are_rotations_within_the_limit():
    rotations = random_rotations(256, 20.0, torch.Generator().manual_seed(0), "cpu")
    eye = torch.eye(3).expand(256, 3, 3)
    assert torch.allclose(rotations @ rotations.transpose(1, 2), eye, atol=1e-5)
    assert torch.allclose(torch.linalg.det(rotations), torch.ones(256), atol=1e-5)
    angles = torch.rad2deg(torch.arccos(((rotations.diagonal(dim1=1, dim2=2).sum(1) - 1) / 2).clamp(-1, 1)))
    assert angles.max() <= 20.01 and angles.min() >= 0


def test_reprojection_is_the_pattern_of_the_rotated_crystal():
    """Warping a simulated pattern by the homography equals simulating the rotated crystal.

    A rotation R of the ray frame (x right, y down, z towards the sample) is S = O F R^T F O^T
    in kikuchipy's sample frame (F flips y, O is the detector-to-sample matrix), so the new
    orientation is g S.
    """
    kikuchipy = pytest.importorskip("kikuchipy")
    import torch.nn.functional as F
    from orix.quaternion import Rotation

    from ebsd_core.masters import load_master
    from ebsd_core.phases import get_material
    from ebsd_core.simulate import project

    size, pc, tilt, sample_tilt = 90, np.array([0.47, 0.28, 0.6]), 5.0, 70.0
    master = load_master(get_material("ni"))
    detector = kikuchipy.detectors.EBSDDetector(shape=(size, size), pc=pc, tilt=tilt, sample_tilt=sample_tilt)
    to_sample = (~detector.sample_to_detector).to_matrix().squeeze()
    flip = np.diag([1.0, -1.0, 1.0])
    g1 = Rotation.from_axes_angles([1, 2, 3], 0.7)
    recorded = torch.from_numpy(project(master, g1.data, pc[None], size, tilt, sample_tilt))[:, None]
    from scipy.spatial.transform import Rotation as Turn

    axes = np.array([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, -2, 0.5]])
    for r in Turn.from_rotvec(np.radians(12) * axes / np.linalg.norm(axes, axis=1, keepdims=True)).as_matrix():
        s_transposed = to_sample @ flip @ r.T @ flip @ to_sample.T
        rotated = project(master, (g1 * Rotation.from_matrix(s_transposed)).data, pc[None], size, tilt, sample_tilt)[0]
        grid = F.affine_grid(torch.tensor([[[1.0, 0, 0], [0, 1, 0]]]), [1, 1, size, size], align_corners=False)
        grid = reproject(grid, torch.from_numpy(r).float()[None], torch.from_numpy(pc).float()[None])
        warped = F.grid_sample(recorded, grid, align_corners=False)[0, 0]
        seen = (grid.abs() <= 1).all(-1)[0]
        assert seen.float().mean() > 0.6
        assert _correlation(warped[seen], torch.from_numpy(rotated)[seen]) > 0.9  # 0.95-0.97: bilinear re-sampling
        assert abs(_correlation(recorded[0, 0][seen], torch.from_numpy(rotated)[seen])) < 0.3


def test_rebinning_looks_like_a_smaller_camera():
    """A pattern binned by 4 keeps its coarse bands, loses what a camera of a quarter the pixels misses,
    and gets its noise at that camera's pixel scale."""
    yy, xx = _grid(96)
    coarse = torch.cos(6 * xx) + torch.cos(5 * yy)
    fine = torch.cos(60 * xx)
    x = (coarse + fine)[None, None].repeat(4, 1, 1, 1)
    generator = torch.Generator().manual_seed(0)
    assert torch.equal(rebinned(x, torch.ones(4, dtype=torch.long)), x)
    out = rebinned(x, torch.tensor([1, 2, 4, 4]), 0.0, generator)
    assert out.shape == x.shape and torch.equal(out[0], x[0])
    for pattern in out[1:]:
        assert _correlation(pattern[0], coarse) > 0.9
    assert max(_correlation(p[0], fine) for p in out[2:]) < 0.5  # binned 4x: the fine stripes are gone
    noise = rebinned(torch.zeros(2, 1, 96, 96) + coarse, torch.tensor([1, 4]), 0.5, generator) - coarse
    # neighbouring pixels share a binned camera's noise, not an unbinned one's
    lag = [_correlation(n[0, :, 1:], n[0, :, :-1]) for n in noise]
    assert abs(lag[0]) < 0.1 and lag[1] > 0.5
    binned = augment_batch(x, replace(STILL, resolution=4.0), torch.Generator().manual_seed(1))
    assert torch.allclose(binned.mean(dim=(2, 3)), torch.zeros(4, 1), atol=1e-5)


def test_binning_factors_are_whole_and_off_without_drawing():
    generator = torch.Generator().manual_seed(0)
    factors = camera_binning(400, 4.0, generator, "cpu")
    assert set(factors.tolist()) == {1, 2, 3, 4}
    state = generator.get_state()
    assert torch.equal(camera_binning(3, 1.0, generator, "cpu"), torch.ones(3, dtype=torch.long))
    assert torch.equal(generator.get_state(), state)
