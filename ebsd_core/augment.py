"""Class-preserving augmentations for standardised EBSD patterns (batched, torch).

Each one changes how a pattern was recorded, never which crystal made it:
noise, blur, contrast and gamma, and a small shift/zoom that mimics a
projection-centre change. A horizontal mirror is a valid pattern of the same
(centrosymmetric, m-3m) crystal in another orientation with the mirrored
projection centre.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    noise_std: float = 0.3
    blur_probability: float = 0.3
    contrast: tuple[float, float] = (0.7, 1.3)
    gamma: tuple[float, float] = (0.8, 1.25)
    pc_shift: float = 0.03  # fraction of the pattern width
    pc_zoom: float = 0.05
    mirror: bool = True
    rotation: float = 0.0  # largest in-plane rotation in degrees (about the pattern centre)

    def to_dict(self) -> dict:
        return asdict(self)


def _uniform(n: int, low: float, high: float, generator, device) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=device) * (high - low) + low


def augment_batch(x: torch.Tensor, config: AugmentConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """Augment a batch (N, 1, H, W) of standardised patterns."""
    n, device = x.shape[0], x.device
    # gamma on a [0, 1] rescaled copy, then back to zero mean / unit variance
    lo = x.amin(dim=(2, 3), keepdim=True)
    hi = x.amax(dim=(2, 3), keepdim=True)
    unit = (x - lo) / (hi - lo).clamp_min(1e-6)
    unit = unit ** _uniform(n, *config.gamma, generator, device).view(n, 1, 1, 1)
    x = unit * _uniform(n, *config.contrast, generator, device).view(n, 1, 1, 1)
    # projection-centre jitter as a small affine shift and zoom
    zoom = 1 + _uniform(n, -config.pc_zoom, config.pc_zoom, generator, device)
    shift = _uniform(2 * n, -config.pc_shift, config.pc_shift, generator, device).view(n, 2) * 2
    angle = torch.deg2rad(_uniform(n, -config.rotation, config.rotation, generator, device))
    cos, sin = torch.cos(angle) * zoom, torch.sin(angle) * zoom
    theta = torch.zeros(n, 2, 3, device=device)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
    if config.mirror:
        flip = torch.rand(n, generator=generator, device=device) < 0.5
        theta[:, :, 0] = torch.where(flip[:, None], -theta[:, :, 0], theta[:, :, 0])
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # pixels moved in from outside get the mean level (reflection would invent mirrored bands)
    level = x.mean(dim=(2, 3), keepdim=True)
    x = F.grid_sample(x - level, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + level
    blur = torch.rand(n, generator=generator, device=device) < config.blur_probability
    if blur.any():
        kernel = torch.tensor([0.25, 0.5, 0.25], device=device)
        kernel = (kernel[:, None] * kernel[None, :]).view(1, 1, 3, 3)
        blurred = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), kernel)
        x = torch.where(blur.view(n, 1, 1, 1), blurred, x)
    x = x + torch.randn(x.shape, generator=generator, device=device) * (
        _uniform(n, 0, config.noise_std, generator, device).view(n, 1, 1, 1) * x.std(dim=(2, 3), keepdim=True)
    )
    mean = x.mean(dim=(2, 3), keepdim=True)
    std = x.std(dim=(2, 3), keepdim=True).clamp_min(1e-6)
    return (x - mean) / std
