"""Augmentations keep a pattern's physics: standardised output, rotations about the centre only."""

import torch

from ebsd_core.augment import AugmentConfig, augment_batch

STILL = AugmentConfig(
    noise_std=0.0, blur_probability=0.0, contrast=(1, 1), gamma=(1, 1), pc_shift=0.0, pc_zoom=0.0, mirror=False
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
