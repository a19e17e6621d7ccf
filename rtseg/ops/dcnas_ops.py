"""Fixed operators of the DCNAS space (DCNAS supplement, sec. 1.1-1.2): the shape-alignment branch and the head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rtseg.ops import conv as _conv  # noqa: F401  (registers conv_bn_relu, the DCNAS stem operator)
from rtseg.ops import mbv3 as _mbv3  # noqa: F401  (registers mbconv, the mixture-layer operators)
from rtseg.ops.base import Op, OpSignature, OpSpec, register_op
from rtseg.ops.common import ConvBNReLU


@register_op("shape_align")
class ShapeAlign(Op):
    """One branch of a fusion module's shape-alignment layer: brings a feature map to the module's
    resolution and width. Finer input (``stride`` 2, 4, 8): one 3x3 conv with that stride, C_in -> C_out,
    and BN. Coarser input (``up`` 2, 4, 8): 1x1 conv C_in -> C_out and BN at the low resolution (cheaper
    than after upsampling), then bilinear upsampling by ``up``. Same resolution: 1x1 conv and BN.
    Linear (no ReLU): the aligned inputs are summed and the mixture layer's MobileNetV3 block follows."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, up: int = 1) -> None:
        super().__init__()
        if stride > 1 and up > 1:
            raise TypeError("shape_align either downsamples (stride) or upsamples (up), not both")
        self.spec = OpSpec.make("shape_align", c_in, c_out, stride, up=int(up))
        self.up = int(up)
        k = 3 if stride > 1 else 1
        self.conv = nn.Conv2d(c_in, c_out, k, stride, padding=k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def output_hw(self, h: int, w: int) -> tuple[int, int]:
        if self.up > 1:
            return h * self.up, w * self.up
        return super().output_hw(h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x))
        if self.up > 1:
            y = F.interpolate(y, size=(x.shape[-2] * self.up, x.shape[-1] * self.up), mode="bilinear", align_corners=False)
        return y


@register_op("dense_head")
class DenseHead(Op):
    """The DCNAS prediction head (DCNAS supplement, sec. 1.2): the last fusion modules' outputs at 1/4, 1/8,
    1/16, 1/32 (widths C_in, 2 C_in, 4 C_in, 8 C_in for ``levels`` 4) are upsampled to 1/4,
    concatenated, fused by a 3x3 conv (``mid`` channels, BN, ReLU) and classified by a 1x1 conv
    (C_out = classes). The signature's H x W is that of the 1/4 input."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, levels: int = 4, mid: int = 64) -> None:
        super().__init__()
        self.spec = OpSpec.make("dense_head", c_in, c_out, 1, levels=int(levels), mid=int(mid))
        self.fuse = ConvBNReLU(sum(c_in * 2**i for i in range(levels)), mid, 3)
        self.classifier = nn.Conv2d(mid, c_out, 1, bias=True)

    @classmethod
    def example_inputs(cls, sig: OpSignature, batch: int = 1, dtype: torch.dtype = torch.float32, device="cpu"):
        levels = sig.spec.hparams["levels"]
        out = []
        h, w = sig.h, sig.w
        for i in range(levels):
            out.append(torch.randn(batch, sig.spec.c_in * 2**i, h, w, dtype=dtype, device=device))
            h, w = (h + 1) // 2, (w + 1) // 2
        return tuple(out)

    def forward(self, *feats: torch.Tensor) -> torch.Tensor:
        size = feats[0].shape[-2:]
        ups = [feats[0]] + [F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in feats[1:]]
        return self.classifier(self.fuse(torch.cat(ups, dim=1)))
