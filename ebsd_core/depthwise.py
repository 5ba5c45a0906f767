"""Faster weight gradients of depthwise convolutions on x86 CPUs without AVX-512.

On such CPUs oneDNN computes the weight gradient of a channels_last depthwise convolution with its
generic im2col + GEMM kernel (``x64:gemm:jit`` in ``ONEDNN_VERBOSE``), one small GEMM per channel:
15-25 ms per layer on 2x2 and 4x4 maps on 2 cores (AMD EPYC Zen 3, AVX2), where the forward pass
takes 0.3 ms. EfficientNet-Lite0 has 16 depthwise layers, so at a 64 px input this
weight gradient took half of every training step. CPUs with AVX-512 have oneDNN's direct
depthwise kernel for it (a whole 64 px step took 78 ms on a Zen 4), so nothing changes there.

For output maps of at most :data:`SMALL_MAP` pixels, :func:`fast_depthwise_grads` sums the same
gradient tap by tap instead, 2-14x faster; larger maps keep oneDNN's. The forward pass and the input
gradient are oneDNN's as before, and the weight gradient agrees with it to float rounding
(bench/RESULTS.md, "Training on CPUs without AVX-512").
"""

from __future__ import annotations

import functools
import platform
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

#: Largest output map (pixels) whose weight gradient is summed tap by tap: at 2x2 and 4x4 that took
#: 2-11 ms against oneDNN's 15-25 ms on 2 AVX2 cores; from 6x6 on oneDNN is faster (14 ms against 29).
SMALL_MAP = 16

_onednn_backward = torch.ops.aten.convolution_backward
INPUT, WEIGHT = [True, False, False], [False, True, False]  # which gradients _onednn_backward returns


@functools.lru_cache(maxsize=1)
def slow_depthwise_weight_grad() -> bool:
    """True on x86 CPUs without AVX-512, where oneDNN's depthwise weight gradient takes its GEMM path."""
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    return x86 and torch.backends.cpu.get_cpu_capability() in ("DEFAULT", "AVX2")


def depthwise_weight_grad(
    x: torch.Tensor,
    grad: torch.Tensor,
    weight: torch.Tensor,
    stride: tuple[int, int],
    padding: tuple[int, int],
) -> torch.Tensor:
    """The gradient of a depthwise convolution's ``weight`` (C, 1, kh, kw), given its input ``x``
    (N, C, H, W) and the gradient ``grad`` (N, C, Ho, Wo) of its output.

    ``dL/dw[c, i, j] = sum over n, h, w of grad[n, c, h, w] * x_padded[n, c, h*sh + i, w*sw + j]``:
    for small output maps, one product and sum per kernel tap; for larger ones, oneDNN's.
    """
    kh, kw = weight.shape[-2:]
    ho, wo = grad.shape[-2:]
    if ho * wo > SMALL_MAP:
        return _onednn_backward(grad, x, weight, None, stride, padding, [1, 1], False, [0, 0], len(weight), WEIGHT)[1]
    padded = F.pad(x, (padding[1], padding[1], padding[0], padding[0]))
    last_row, last_column = stride[0] * (ho - 1) + 1, stride[1] * (wo - 1) + 1
    taps = [
        (padded[:, :, i : i + last_row : stride[0], j : j + last_column : stride[1]] * grad).sum((0, 2, 3))
        for i in range(kh)
        for j in range(kw)
    ]
    return torch.stack(taps, dim=1).reshape(weight.shape)


class _DepthwiseConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding):
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding, ctx.has_bias = stride, padding, bias is not None
        return F.conv2d(x, weight, bias, stride, padding, 1, weight.shape[0])

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = _onednn_backward(
                grad, x, weight, None, ctx.stride, ctx.padding, [1, 1], False, [0, 0], len(weight), INPUT
            )[0]
        if ctx.needs_input_grad[1]:
            grad_weight = depthwise_weight_grad(x, grad, weight, ctx.stride, ctx.padding)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad.sum((0, 2, 3))
        return grad_x, grad_weight, grad_bias, None, None


class FastGradDepthwiseConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` depthwise layer whose weight gradient uses :func:`depthwise_weight_grad`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cpu_float32 = x.device.type == "cpu" and not torch.is_autocast_enabled("cpu")
        if cpu_float32 and torch.is_grad_enabled() and self.weight.requires_grad:
            return _DepthwiseConv.apply(x, self.weight, self.bias, self.stride, self.padding)
        return super().forward(x)


def _is_plain_depthwise(module: nn.Module) -> bool:
    return (
        type(module) is nn.Conv2d
        and module.groups > 1
        and module.groups == module.in_channels == module.out_channels
        and module.dilation == (1, 1)
        and module.padding_mode == "zeros"
        and not isinstance(module.padding, str)
    )


@contextmanager
def fast_depthwise_grads(model: nn.Module, device: torch.device, enabled: bool | None = None) -> Iterator[nn.Module]:
    """Within the block, ``model``'s depthwise layers compute their weight gradients with
    :func:`depthwise_weight_grad` when training on a CPU that needs it (``enabled``: always / never
    instead, on a CPU); afterwards they are plain ``nn.Conv2d`` again. Parameters and state-dict keys
    are untouched."""
    layers = []
    if enabled is None:
        enabled = slow_depthwise_weight_grad()
    if device.type == "cpu" and enabled:
        layers = [m for m in model.modules() if _is_plain_depthwise(m)]
    for layer in layers:
        layer.__class__ = FastGradDepthwiseConv2d
    try:
        yield model
    finally:
        for layer in layers:
            layer.__class__ = nn.Conv2d
