"""Candidate operators of the CAS space (CAS paper, sec. 3.3-3.4).

Backbone set O_b: identity, 3x3 max/avg pooling, 3x3 conv x2, 3x3 separable conv x2 and x4, 3x3
dilated conv x2, and the pooled convolutions (2x2 avg pool stride 2, 3x3 conv x1 or x2, bilinear
upsampling). Multi-scale set O_ms: 3x3 conv with dilation 1/2/4/8, the spatially decomposed 15x1-1x15
and 25x1-1x25 convs, residual spatial pyramid pooling with 8/16/24 windows, identity.

Convolutions follow the DARTS ReLU-Conv-BN (pre-activation) order, so no ReLU here is in-place: the
input of an edge is shared by every other edge leaving the same node. On a reduction edge (stride 2)
identity becomes :class:`FactorizedReduce` (as in DARTS) and the first layer of every other operator
takes the stride.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rtseg.ops.base import Op, OpSpec, register_op


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise TypeError(msg)


def _down_size(x: torch.Tensor, stride: int) -> tuple[int, int]:
    return (x.shape[-2] + stride - 1) // stride, (x.shape[-1] + stride - 1) // stride


@register_op("relu_conv_bn")
class ReLUConvBN(Op):
    """``repeat`` x (ReLU, ``kernel`` conv with ``dilation``, BN); the first conv maps C_in -> C_out and
    carries the stride. Covers the 1x1 cell preprocessing, "3x3 conv x2", "3x3 dilated conv x2"
    (dilation 2) and the multi-scale 3x3 convs with dilation 1, 2, 4, 8 (``repeat`` 1)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, kernel: int = 3, dilation: int = 1, repeat: int = 1) -> None:
        super().__init__()
        _check(repeat >= 1 and kernel >= 1 and dilation >= 1, "relu_conv_bn needs kernel, dilation, repeat >= 1")
        self.spec = OpSpec.make("relu_conv_bn", c_in, c_out, stride, kernel=int(kernel), dilation=int(dilation), repeat=int(repeat))
        layers: list[nn.Module] = []
        for r in range(repeat):
            layers += [
                nn.ReLU(),
                nn.Conv2d(c_in if r == 0 else c_out, c_out, kernel, stride if r == 0 else 1, padding=dilation * (kernel // 2), dilation=dilation, bias=False),
                nn.BatchNorm2d(c_out),
            ]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


@register_op("sep_conv")
class SepConv(Op):
    """``repeat`` x (ReLU, depthwise ``kernel`` conv, pointwise 1x1 conv, BN): "3x3 separable conv,
    repeat 2/4" of O_b. The first depthwise conv carries the stride."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, kernel: int = 3, repeat: int = 2) -> None:
        super().__init__()
        _check(repeat >= 1, "sep_conv needs repeat >= 1")
        self.spec = OpSpec.make("sep_conv", c_in, c_out, stride, kernel=int(kernel), repeat=int(repeat))
        layers: list[nn.Module] = []
        for r in range(repeat):
            c = c_in if r == 0 else c_out
            layers += [
                nn.ReLU(),
                nn.Conv2d(c, c, kernel, stride if r == 0 else 1, padding=kernel // 2, groups=c, bias=False),
                nn.Conv2d(c, c_out, 1, bias=False),
                nn.BatchNorm2d(c_out),
            ]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


@register_op("pool")
class Pool(Op):
    """3x3 max or average pooling (padding 1; average excludes the padding), stride 1 or 2."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, mode: str = "max", kernel: int = 3) -> None:
        super().__init__()
        _check(c_in == c_out, "pool keeps the channel count")
        _check(mode in ("max", "avg"), f"pool mode must be max or avg, got {mode!r}")
        self.spec = OpSpec.make("pool", c_in, c_out, stride, mode=mode, kernel=int(kernel))
        self.mode, self.kernel, self.stride = mode, int(kernel), int(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s, p = self.kernel, self.stride, self.kernel // 2
        if self.mode == "max":
            return F.max_pool2d(x, k, s, p)
        return F.avg_pool2d(x, k, s, p, count_include_pad=False)


@register_op("factorized_reduce")
class FactorizedReduce(Op):
    """The stride-2 "identity" of a reduction edge (DARTS): ReLU, two 1x1 stride-2 convs on the input
    and on the input shifted by one pixel, each to C_out/2, concatenated, BN. Needs even H and W; also
    the preprocessing of a cell input that comes from before a reduction."""

    def __init__(self, c_in: int, c_out: int, stride: int = 2) -> None:
        super().__init__()
        _check(stride == 2, "factorized_reduce always has stride 2")
        _check(c_out % 2 == 0, "factorized_reduce needs an even C_out")
        self.spec = OpSpec.make("factorized_reduce", c_in, c_out, 2)
        self.relu = nn.ReLU()
        self.conv1 = nn.Conv2d(c_in, c_out // 2, 1, 2, bias=False)
        self.conv2 = nn.Conv2d(c_in, c_out // 2, 1, 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        return self.bn(torch.cat([self.conv1(x), self.conv2(x[:, :, 1:, 1:])], dim=1))


@register_op("pooled_conv")
class PooledConv(Op):
    """The spatial-bottleneck operator of CAS: 2x2 average pool stride 2, ``repeat`` x ReLU-Conv3x3-BN
    (the first with the op's stride), bilinear upsampling back to the op's output size (input / stride).
    It widens the receptive field at a quarter of the conv cost (CAS paper, sec. 3.3)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, repeat: int = 1) -> None:
        super().__init__()
        self.spec = OpSpec.make("pooled_conv", c_in, c_out, stride, repeat=int(repeat))
        self.stride = int(stride)
        self.convs = ReLUConvBN(c_in, c_out, stride, kernel=3, repeat=repeat).layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.convs(F.avg_pool2d(x, 2, 2, ceil_mode=True))
        return F.interpolate(y, size=_down_size(x, self.stride), mode="bilinear", align_corners=False)


@register_op("decomposed_conv")
class DecomposedConv(Op):
    """Spatially decomposed large kernel (CAS paper, sec. 3.4): ReLU, ``kernel`` x 1 conv, 1 x ``kernel``
    conv, BN (the 15x1-1x15 and 25x1-1x25 operators of O_ms)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, kernel: int = 15) -> None:
        super().__init__()
        _check(stride == 1, "decomposed_conv has stride 1")
        self.spec = OpSpec.make("decomposed_conv", c_in, c_out, 1, kernel=int(kernel))
        k = int(kernel)
        self.layers = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(c_in, c_out, (k, 1), padding=(k // 2, 0), bias=False),
            nn.Conv2d(c_out, c_out, (1, k), padding=(0, k // 2), bias=False),
            nn.BatchNorm2d(c_out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


@register_op("rspp")
class ResidualSPP(Op):
    """Residual spatial pyramid pooling with ``window`` x ``window`` cells (CAS paper, sec. 3.4): average
    pool per window (stride = window, ceil mode so every pixel is covered), 1x1 conv (+bias) and ReLU to
    encode the context, bilinear upsampling back, added to the input. A fixed window instead of
    adaptive pooling keeps the graph exportable to ONNX/TensorRT; no BN, since a window can cover the
    whole map (one value per channel)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, window: int = 8) -> None:
        super().__init__()
        _check(c_in == c_out and stride == 1, "rspp keeps width and resolution")
        self.spec = OpSpec.make("rspp", c_in, c_out, 1, window=int(window))
        self.window = int(window)
        self.conv = nn.Conv2d(c_in, c_out, 1, bias=True)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.conv(F.avg_pool2d(x, self.window, self.window, ceil_mode=True)))
        return x + F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
