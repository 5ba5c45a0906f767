"""Class-preserving augmentations for standardised EBSD patterns (batched, torch).

Each one changes how a pattern was recorded, never which crystal made it:
noise, blur, contrast and gamma, and a small shift/zoom that mimics a
projection-centre change. A horizontal mirror is a valid pattern of the same
(centrosymmetric, m-3m) crystal in another orientation with the mirrored
projection centre.

``crystal_rotation`` makes patterns of new orientations. A pattern is the gnomonic
projection of the Kikuchi sphere through the projection centre (PC), so rotating
the crystal by R moves every detector point along its ray: the new pattern is the
old one re-sampled through the homography K R^T K^-1 (K: the PC and the detector
distance). That is exact but for the rim, where the rotated view needs
pixels the detector never saw; those get the mean level.
"""

from __future__ import annotations

import functools
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
    # largest crystal rotation in degrees (random axis), by re-projection; 20 shots, 120 px, 30 epochs,
    # 3 seeds: 30 degrees lifted unseen orientations 0.77 -> 0.84 and held-out materials 0.64 -> 0.71
    crystal_rotation: float = 30.0
    # largest camera binning to mimic: each pattern is averaged down by an integer factor drawn
    # uniformly from 1 to resolution, gets its noise at that scale, and is resized back; 1 turns it off
    resolution: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)


#: Bruker projection centre (x, y from the top-left, z = distance / height) used when
#: the patterns do not say theirs: the middle of the simulator's geometry ranges.
NOMINAL_PC = (0.5, 0.25, 0.575)


def _uniform(n: int, low: float, high: float, generator, device) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=device) * (high - low) + low


def random_rotations(n: int, max_degrees: float, generator, device) -> torch.Tensor:
    """``n`` rotation matrices about uniformly random axes, angles uniform in [0, max_degrees]."""
    axis = torch.randn(n, 3, generator=generator, device=device)
    axis = axis / axis.norm(dim=1, keepdim=True).clamp_min(1e-12)
    angle = torch.deg2rad(_uniform(n, 0.0, max_degrees, generator, device))
    cross = torch.zeros(n, 3, 3, device=device)
    cross[:, 0, 1], cross[:, 0, 2], cross[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    cross = cross - cross.transpose(1, 2)
    sin, cos = torch.sin(angle).view(n, 1, 1), torch.cos(angle).view(n, 1, 1)
    return torch.eye(3, device=device) + sin * cross + (1 - cos) * cross @ cross  # Rodrigues


def reproject(grid: torch.Tensor, rotations: torch.Tensor, pc: torch.Tensor) -> torch.Tensor:
    """Where, in the recorded pattern, each point of ``grid`` lies after rotating the crystal.

    ``grid`` (N, H, W, 2) holds normalised [-1, 1] coordinates (``grid_sample``'s), ``pc``
    (N, 3) Bruker projection centres of square patterns. Points whose ray leaves the
    detector's half-space are sent outside the image.
    """
    pc = pc.to(grid)[:, None, None, :]
    ray = torch.stack(
        ((grid[..., 0] + 1) / 2 - pc[..., 0], (grid[..., 1] + 1) / 2 - pc[..., 1], pc[..., 2].expand_as(grid[..., 0])),
        dim=-1,
    )
    source = torch.einsum("nhwi,nij->nhwj", ray, rotations)  # R^T applied to each ray
    depth = source[..., 2]
    ahead = depth > 1e-3
    scale = pc[..., 2] / depth.clamp_min(1e-3)
    u = pc[..., 0] + source[..., 0] * scale
    v = pc[..., 1] + source[..., 1] * scale
    out = torch.stack((2 * u - 1, 2 * v - 1), dim=-1)
    return torch.where(ahead[..., None], out, torch.full_like(out, 2.0))


VIEW_ROTATION = 15.0  # degrees: test-time views of crystals turned by up to this much (beyond, the rim grows)


def _view_grids(size: int, rotations: torch.Tensor, mirrored: torch.Tensor) -> torch.Tensor:
    """Sampling grids (N, S, S, 2), on the rotations' device, that turn the crystal by ``rotations``
    (N, 3, 3) about the nominal projection centre (a scan's own is rarely known), mirroring the
    patterns where ``mirrored``."""
    n, device = len(rotations), rotations.device
    theta = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], device=device).repeat(n, 1, 1)
    theta[mirrored, 0, 0] = -1.0
    grid = F.affine_grid(theta, [n, 1, size, size], align_corners=False)
    return reproject(grid, rotations, torch.tensor(NOMINAL_PC, device=device).expand(n, 3))


@functools.lru_cache(maxsize=8)
def view_grids(size: int, views: int, device: str = "cpu", max_degrees: float = VIEW_ROTATION) -> torch.Tensor:
    """Sampling grids (views - 1, S, S, 2) of fixed crystal rotations, every other one mirrored.

    The test-time views of :func:`ebsd_core.inference.model_probabilities`: the same rotations for
    every pattern and batch (seeded).
    """
    n = views - 1
    with torch.inference_mode(False):  # cached: usable later with autograd on as well
        generator = torch.Generator().manual_seed(20210415)
        mirrored = torch.arange(n) % 2 == 1
        return _view_grids(size, random_rotations(n, max_degrees, generator, "cpu"), mirrored).to(device)


SCATTERED_TABLE = 4093  # per-point views drawn from this many (a prime, so scan strides do not repeat them)


@functools.lru_cache(maxsize=1)
def _scattered_table() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(20210416)
    rotations = random_rotations(SCATTERED_TABLE, VIEW_ROTATION, generator, "cpu")
    return rotations, torch.rand(SCATTERED_TABLE, generator=generator) < 0.5


def scattered_view_grids(size: int, points: torch.Tensor, view: int, device: str = "cpu") -> torch.Tensor:
    """Sampling grids (N, S, S, 2): view number ``view`` of each scan point in ``points`` (N,), its own.

    Every point of a map gets different crystal rotations (a hash of its index and the view
    number picks them from a seeded table), so the same point always gets the same views whatever
    the batching. Averaging neighbours, as the grain clean-up does, then averages over as many
    different views as the grain has points, where fixed views would repeat the same mistakes
    over a whole grain.
    """
    rotations, mirrored = _scattered_table()
    pick = (points.cpu().long() * 2654435761 + view * 40503) % SCATTERED_TABLE
    return _view_grids(size, rotations[pick].to(device), mirrored[pick].to(device))


def _resample(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Re-sample patterns (N, 1, S, S) through ``grid`` (N or 1, S, S, 2). Pixels moved in from
    outside get the mean level (reflection would invent mirrored bands)."""
    level = x.mean(dim=(2, 3), keepdim=True)
    grid = grid.expand(len(x), *grid.shape[-3:]).to(x.dtype)
    return F.grid_sample(x - level, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + level


def _standardise(x: torch.Tensor) -> torch.Tensor:
    return (x - x.mean(dim=(2, 3), keepdim=True)) / x.std(dim=(2, 3), keepdim=True).clamp_min(1e-6)


def resample_standardised(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Re-sample standardised patterns (N, 1, S, S) through ``grid``; the rim gets the mean level."""
    return _standardise(_resample(x, grid))


def augment_batch(
    x: torch.Tensor,
    config: AugmentConfig,
    generator: torch.Generator | None = None,
    pc: torch.Tensor | None = None,
) -> torch.Tensor:
    """Augment a batch (N, 1, H, W) of standardised patterns.

    ``pc`` (N, 3): the patterns' Bruker projection centres, used by ``crystal_rotation``
    (default :data:`NOMINAL_PC`).
    """
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
    if config.crystal_rotation > 0:
        centres = torch.tensor(NOMINAL_PC, device=device).expand(n, 3) if pc is None else pc.to(device)
        grid = reproject(grid, random_rotations(n, config.crystal_rotation, generator, device), centres)
    x = _resample(x, grid)
    blur = torch.rand(n, generator=generator, device=device) < config.blur_probability
    if blur.any():
        kernel = torch.tensor([0.25, 0.5, 0.25], device=device)
        kernel = (kernel[:, None] * kernel[None, :]).view(1, 1, 3, 3)
        blurred = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), kernel)
        x = torch.where(blur.view(n, 1, 1, 1), blurred, x)
    factors = camera_binning(n, config.resolution, generator, device)
    return _standardise(rebinned(x, factors, config.noise_std, generator))


def camera_binning(n: int, max_factor: float, generator: torch.Generator | None, device) -> torch.Tensor:
    """Binning factor per pattern, uniform over the integers 1 to ``max_factor`` (all 1 below 2)."""
    top = max(1, int(max_factor))
    if top == 1:  # draws nothing, so that training without binning keeps its random sequence
        return torch.ones(n, dtype=torch.long, device=device)
    return torch.randint(1, top + 1, (n,), generator=generator, device=device)


def with_noise(x: torch.Tensor, noise_std: float, generator: torch.Generator | None) -> torch.Tensor:
    """White noise of up to ``noise_std`` times each pattern's standard deviation (drawn per pattern)."""
    n = x.shape[0]
    white = torch.randn(x.shape, generator=generator, device=x.device)  # drawn before the levels, as always
    return x + white * (
        _uniform(n, 0, noise_std, generator, x.device).view(n, 1, 1, 1) * x.std(dim=(2, 3), keepdim=True)
    )


def rebinned(
    x: torch.Tensor, factors: torch.Tensor, noise_std: float = 0.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Patterns (N, 1, S, S) as a camera binned ``factors`` (N,) times records them, resized back to S.

    Each pattern is averaged down to ``S / f`` pixels, gets its noise there (a binned camera's noise
    is as coarse as its pixels), and is resized back up: the model then sees what preprocessing makes
    of a small camera's patterns (a 60 px pattern resized to a 224 px input). Factor 1 only adds the noise.
    """
    size = x.shape[-1]
    out = torch.empty_like(x)
    for factor in torch.unique(factors).tolist():
        chosen = factors == factor
        small = max(8, round(size / factor))
        patterns = x[chosen]
        if small >= size:
            out[chosen] = with_noise(patterns, noise_std, generator)
            continue
        low = F.interpolate(patterns, size=(small, small), mode="bilinear", antialias=True, align_corners=False)
        low = with_noise(low, noise_std, generator)
        out[chosen] = F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    return out
