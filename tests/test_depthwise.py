"""Depthwise weight gradients summed tap by tap equal oneDNN's, and the swap leaves models as they were."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ebsd_core import depthwise
from ebsd_core.backbones import create_model
from ebsd_core.depthwise import SMALL_MAP, FastGradDepthwiseConv2d, _DepthwiseConv, fast_depthwise_grads


def _grads(conv, x, weight, bias, grad_out):
    x, weight = x.clone().requires_grad_(), weight.clone().requires_grad_()
    bias = None if bias is None else bias.clone().requires_grad_()
    conv(x, weight, bias).backward(grad_out)
    return [t.grad for t in (x, weight, bias) if t is not None]


@pytest.mark.parametrize(
    "channels, height, width, kernel, stride, bias, channels_last",
    [
        (24, 2, 2, 5, 1, False, True),  # smaller than the kernel, as in EfficientNet's last stage at 64 px
        (16, 4, 4, 3, 1, True, False),
        (12, 7, 5, 5, 2, False, True),  # stride 2, odd and unequal sides
        (8, 9, 9, 3, 2, True, True),  # output 5x5: larger than SMALL_MAP, oneDNN's gradient
        (6, 1, 1, 3, 1, False, False),
    ],
)
def test_weight_gradient_equals_autograd(channels, height, width, kernel, stride, bias, channels_last):
    generator = torch.Generator().manual_seed(channels)
    x = torch.randn(3, channels, height, width, generator=generator)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(channels, 1, kernel, kernel, generator=generator)
    b = torch.randn(channels, generator=generator) if bias else None
    padding = (kernel // 2, kernel // 2)
    out = F.conv2d(x, weight, b, stride, padding, 1, channels)
    grad_out = torch.randn(out.shape, generator=generator)

    expected = _grads(lambda x, w, b: F.conv2d(x, w, b, stride, padding, 1, channels), x, weight, b, grad_out)
    got = _grads(lambda x, w, b: _DepthwiseConv.apply(x, w, b, (stride, stride), padding), x, weight, b, grad_out)
    for e, g in zip(expected, got, strict=True):
        assert g.shape == e.shape
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)


def test_onednn_computes_the_weight_gradient_of_larger_maps_only(monkeypatch):
    calls = []
    onednn = depthwise._onednn_backward
    monkeypatch.setattr(depthwise, "_onednn_backward", lambda *a: calls.append(a[0].shape[-2:]) or onednn(*a))
    weight = torch.zeros(4, 1, 3, 3)
    for size in (4, 5):  # 16 and 25 output pixels
        x, grad = torch.randn(2, 4, size, size), torch.randn(2, 4, size, size)
        depthwise.depthwise_weight_grad(x, grad, weight, (1, 1), (1, 1))
    assert SMALL_MAP == 16 and calls == [(5, 5)]


def test_model_gradients_unchanged_and_layers_restored(monkeypatch):
    monkeypatch.setattr(depthwise, "slow_depthwise_weight_grad", lambda: True)
    torch.manual_seed(0)
    model = create_model("efficientnet_lite0", 3, pretrained=False).to(memory_format=torch.channels_last)
    keys = list(model.state_dict())
    x = torch.randn(4, 1, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.tensor([0, 1, 2, 0])

    F.cross_entropy(model(x), y).backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    with fast_depthwise_grads(model, torch.device("cpu")):
        swapped = [m for m in model.modules() if isinstance(m, FastGradDepthwiseConv2d)]
        F.cross_entropy(model(x), y).backward()
    assert len(swapped) == 16  # every depthwise layer of EfficientNet-Lite0
    for name, p in model.named_parameters():
        assert (p.grad - plain[name]).abs().max() <= 1e-5 * plain[name].abs().max(), name  # float rounding
    assert not any(isinstance(m, FastGradDepthwiseConv2d) for m in model.modules())
    assert list(model.state_dict()) == keys


def test_left_alone_where_onednn_is_fast(monkeypatch):
    monkeypatch.setattr(depthwise, "slow_depthwise_weight_grad", lambda: False)
    model = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, groups=4))
    with fast_depthwise_grads(model, torch.device("cpu")):
        assert type(model[0]) is nn.Conv2d
