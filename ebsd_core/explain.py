"""What the network looks at: filters, activation maps, Grad-CAM and Shapley values.

* :func:`first_layer_filters` and :func:`filter_changes` show the stem kernels of
  the ImageNet, fine-tuned and scratch networks and rank how much fine-tuning
  moved each one (Euclidean distance), as Kaufmann et al. (2021) did.
* :func:`activation_maps` returns a layer's feature maps for one pattern.
* :func:`grad_cam` computes Grad-CAM (Selvaraju et al. 2017) for any class.
* :func:`shap_values` computes Shapley-value attributions with ``shap``:
  ``DeepExplainer`` (DeepLIFT: its values add up exactly to the logit minus its
  mean over the background), which works on a copy of the model with in-place
  activations turned off and ReLU6 registered as a non-linearity (shap does not
  know it), or ``GradientExplainer`` (expected gradients: sampled, so they add
  up only on average) for networks DeepLIFT cannot follow.
* :mod:`ebsd_core.band_check` then asks whether the attributions sit on Kikuchi bands.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ebsd_core.errors import InputError
from ebsd_core.inference import model_device
from ebsd_core.shared_state import GLOBAL_RNG, caught_warnings

PATTERN_METHODS = ("activations", "gradcam", "shap")  # of one pattern; "filters" are the model's own
METHODS = ("filters", *PATTERN_METHODS)
SHAP_METHODS = ("deep", "gradient")  # the first is the default
GRADIENT_SAMPLES = 64


def conv_layers(model: nn.Module) -> list[str]:
    """Names of the convolution layers, input to output."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]


def get_layer(model: nn.Module, name: str) -> nn.Module:
    modules = dict(model.named_modules())
    if name not in modules:
        raise InputError(f"the model has no layer {name!r}; convolution layers: {', '.join(conv_layers(model)[:8])}...")
    return modules[name]


class ConvMaps(NamedTuple):
    """What a convolution layer gives for one input: its number of maps, their size, its kernel's size."""

    maps: int
    height: int
    width: int
    kernel: int


@torch.no_grad()
def conv_map_sizes(model: nn.Module, input_size: int) -> dict[str, ConvMaps]:
    """Each convolution layer's maps for an input of ``input_size`` px, input to output (one forward pass of a
    blank pattern)."""
    shapes: dict[str, tuple[int, ...]] = {}
    convs = [(name, module) for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]
    hooks = [
        module.register_forward_hook(lambda _m, _i, out, name=name: shapes.__setitem__(name, tuple(out.shape[1:])))
        for name, module in convs
    ]
    try:
        model(as_input(np.zeros((input_size, input_size), np.float32), model))
    finally:
        for hook in hooks:
            hook.remove()
    return {name: ConvMaps(*shapes[name], max(module.kernel_size)) for name, module in convs if name in shapes}


def default_activation_layer(sizes: dict[str, ConvMaps], input_size: int) -> str:
    """Of the convolutions' maps (:func:`conv_map_sizes`), the deepest spatial one (not 1 x 1, which mixes maps)
    whose maps are still a quarter of the input's side (32 x 32 px of a 128 px input): they show band segments,
    where a middle layer's 8 x 8 px maps of EfficientNet-Lite0 showed blocks of grey that no one could read."""
    wide = [name for name, c in sizes.items() if c.kernel > 1 and min(c.height, c.width) * 4 >= input_size]
    return wide[-1] if wide else next(iter(sizes))


def default_cam_layer(model: nn.Module) -> str:
    """The last convolution: the most semantic feature maps that still have a spatial layout."""
    return conv_layers(model)[-1]


def as_input(pattern: np.ndarray, model: nn.Module) -> torch.Tensor:
    """A preprocessed pattern (S, S) or batch (N, S, S) as the model's input tensor."""
    x = torch.as_tensor(np.asarray(pattern, dtype=np.float32))
    if x.ndim == 2:
        x = x[None]
    return x[:, None].to(model_device(model))


# --- filters ---------------------------------------------------------------------------------------


def first_layer_filters(model: nn.Module, layer: str | None = None) -> np.ndarray:
    """Kernels of a convolution layer as (out, in, k, k); the stem by default."""
    conv = get_layer(model, layer or conv_layers(model)[0])
    return conv.weight.detach().float().cpu().numpy()


def filter_grid(weights: np.ndarray, columns: int = 8) -> np.ndarray:
    """Kernels (out, in, k, k) tiled into one image with a one-pixel gap, each scaled to [0, 1].

    Each kernel is shown as it acts on a grey pattern: summed over its input channels, which a pattern replicated
    to RGB fills alike (the first channel alone, shown before, is a third of an RGB stem's kernel).
    """
    kernels = weights.sum(axis=1) if weights.ndim == 4 else weights
    n, k = kernels.shape[0], kernels.shape[-1]
    rows = int(np.ceil(n / columns))
    grid = np.full((rows * (k + 1) - 1, columns * (k + 1) - 1), np.nan, dtype=np.float32)
    for i, kernel in enumerate(kernels):
        lo, hi = kernel.min(), kernel.max()
        r, c = divmod(i, columns)
        grid[r * (k + 1) : r * (k + 1) + k, c * (k + 1) : c * (k + 1) + k] = (kernel - lo) / max(hi - lo, 1e-12)
    return grid


def filter_changes(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Euclidean distance between each kernel before and after fine-tuning, per output filter."""
    if before.shape != after.shape:
        raise InputError(f"filter shapes differ: {before.shape} vs {after.shape}")
    return np.sqrt(((after - before) ** 2).reshape(len(before), -1).sum(axis=1))


# --- activations and Grad-CAM ----------------------------------------------------------------------


@contextmanager
def _capture(layer: nn.Module) -> Iterator[dict]:
    store: dict = {}

    def hook(module, inputs, output):
        store["activation"] = output

    handle = layer.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


def _feature_maps(store: dict, model: nn.Module, layer: str) -> torch.Tensor:
    """The captured output of ``layer``, which must be feature maps (N, C, H, W)."""
    output = store.get("activation")
    if not isinstance(output, torch.Tensor) or output.ndim != 4:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise InputError(
            f"layer {layer!r} gives no feature maps (its output is {shape}): choose one with maps, such as a "
            f"convolution ({', '.join(conv_layers(model)[:3])}, ..., {default_cam_layer(model)})"
        )
    return output


@torch.no_grad()
def activation_maps(model: nn.Module, pattern: np.ndarray, layer: str, top: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """The ``top`` most active feature maps of ``layer`` for one pattern: (maps (top, h, w), channel ids)."""
    with _capture(get_layer(model, layer)) as store:
        model(as_input(pattern, model))
    maps = _feature_maps(store, model, layer)[0].float().cpu().numpy()
    order = np.argsort(maps.mean(axis=(1, 2)))[::-1][:top]
    return maps[order], order


def grad_cam(model: nn.Module, pattern: np.ndarray, target: int, layer: str | None = None) -> np.ndarray:
    """Grad-CAM heat map (S, S) in [0, 1] of class ``target`` for one preprocessed pattern."""
    x = as_input(pattern, model)
    layer = layer or default_cam_layer(model)
    with _capture(get_layer(model, layer)) as store, torch.enable_grad():
        logits = model(x)
        maps = _feature_maps(store, model, layer)
        # the gradient at the layer only: no weight gradients (which a shared, cached model would keep)
        (gradient,) = torch.autograd.grad(logits[0, target], maps)
    activation, gradient = maps[0].detach(), gradient[0]
    weights = gradient.mean(dim=(1, 2))
    cam = F.relu((weights[:, None, None] * activation).sum(0))[None, None]
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    cam = cam.cpu().numpy()
    return cam / cam.max() if cam.max() > 0 else cam


# --- SHAP --------------------------------------------------------------------------------------------


class DeepLiftUnsupported(InputError):
    """DeepExplainer cannot follow this network (``limit`` says why); expected gradients can."""

    def __init__(self, network: str, why: str) -> None:
        self.limit = f"DeepLIFT cannot follow this network, {network}: {why}"
        super().__init__(f"SHAP's {self.limit}; use the gradient explainer")


@dataclass
class ShapResult:
    values: np.ndarray  # (N, C, S, S): attribution of every pixel to every class output (logit)
    expected: np.ndarray  # (C,) mean logit over the background
    method: str


def _deep_ready(model: nn.Module) -> nn.Module:
    """A copy DeepExplainer can handle: no in-place activations, ReLU6 known as a non-linearity."""
    from shap.explainers._deep import deep_pytorch

    deep_pytorch.op_handler.setdefault("ReLU6", deep_pytorch.nonlinear_1d)
    clone = copy.deepcopy(model).float().eval()
    for module in clone.modules():
        if hasattr(module, "inplace"):
            module.inplace = False
    return clone


def _deep_values(model: nn.Module, x: torch.Tensor, background: torch.Tensor):
    import shap

    network = type(model.net if hasattr(model, "net") else model).__name__
    # shap warns "unrecognized nn.Module: X" for layers it passes through as if linear; its additivity check tells
    # whether that mattered, and the warnings then name the culprits
    with caught_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            return shap.DeepExplainer(_deep_ready(model), background).shap_values(x, check_additivity=True)
        except RuntimeError as exc:  # timm's ResNet blocks add their shortcut in place, which shap's hooks forbid
            if "inplace" not in str(exc):
                raise
            why = "it changes values in place"
        except AssertionError as exc:  # shap's additivity check
            if "do not sum up" not in str(exc):
                raise
            unknown = sorted({str(w.message).rpartition(": ")[2] for w in caught if "unrecognized" in str(w.message)})
            why = "its values would not add up, as DeepLIFT does not know its " + (", ".join(unknown) or "operations")
    raise DeepLiftUnsupported(network, why)


def _as_per_class(values, n: int) -> np.ndarray:
    """shap returns a list per class (old) or one array (..., C) (new); make it (N, C, S, S)."""
    if isinstance(values, list):
        return np.stack([np.asarray(v)[:, 0] for v in values], axis=1)
    array = np.asarray(values)
    return np.moveaxis(array[:, 0], -1, 1) if array.ndim == 5 else array[:, None, 0]


def shap_values(
    model: nn.Module,
    patterns: np.ndarray,
    background: np.ndarray,
    method: str = "deep",
    nsamples: int = GRADIENT_SAMPLES,
    seed: int = 0,
) -> ShapResult:
    """Shapley-value attributions of preprocessed patterns (N, S, S) against a background (B, S, S).

    Raises :class:`DeepLiftUnsupported` when ``method="deep"`` meets layers DeepLIFT cannot follow.
    """
    import shap

    if method not in SHAP_METHODS:
        raise InputError(f"unknown SHAP method {method!r}; use one of {', '.join(SHAP_METHODS)}")
    model = model.float().eval()
    x, bg = as_input(patterns, model), as_input(background, model)
    with GLOBAL_RNG:  # shap draws from the global generators: seeded, and not while a training job seeds them
        torch.manual_seed(seed)
        np.random.seed(seed)
        if method == "gradient":
            values = shap.GradientExplainer(model, bg).shap_values(x, nsamples=nsamples, rseed=seed)
        else:
            values = _deep_values(model, x, bg)
    with torch.no_grad():
        expected = model(bg).float().mean(0).cpu().numpy()
    return ShapResult(_as_per_class(values, len(patterns)), expected, method)


def mass_fraction(attribution: np.ndarray, region: np.ndarray) -> float:
    """Share of the absolute attribution that falls inside a boolean region."""
    weights = np.abs(attribution)
    total = weights.sum()
    return float(weights[region].sum() / total) if total > 0 else 0.0
