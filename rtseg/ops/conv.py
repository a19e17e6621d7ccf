"""Plain convolution operators shared by the CAS and DCNAS spaces (stems and heads)."""

from __future__ import annotations

import torch
from torch import nn

from rtseg.ops.base import Op, OpSpec, register_op


@register_op("conv_bn_relu")
class ConvBNReLUOp(Op):
    """``kernel x kernel`` convolution (padding ``kernel // 2``), BN, ReLU: the stem convolutions of
    CAS (CAS paper, Fig. 3: three convs, the first and third with stride 2) and DCNAS (DCNAS supplement, sec. 1.2:
    a 7x7 conv then four stride-2 3x3 convs)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, kernel: int = 3) -> None:
        super().__init__()
        self.spec = OpSpec.make("conv_bn_relu", c_in, c_out, stride, kernel=int(kernel))
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))
