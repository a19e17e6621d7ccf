"""Operators shared by every space: classifier, resize, identity, pyramid pooling, aggregation head, and the
3x3 + 1x1 segmentation head of the BiSeNet-style peers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rtseg.ops.base import Op, OpSignature, OpSpec, register_op


def coarser(h: int, w: int, times: int) -> tuple[int, int]:
    """The size after ``times`` stride-2 layers that round up (a 3x3 conv with padding 1)."""
    for _ in range(times):
        h, w = (h + 1) // 2, (w + 1) // 2
    return h, w


def at_lower_resolution(x: torch.Tensor, spatial: int, fn) -> torch.Tensor:
    """``fn`` run on ``x`` average-pooled by ``spatial`` and bilinearly upsampled back to ``x``'s size
    (the SSR space's spatial factor, Ye et al., IJCV 2022, eq. 4: up(op(pool(x)))); ``fn(x)`` at 1."""
    if spatial == 1:
        return fn(x)
    y = fn(F.avg_pool2d(x, spatial, spatial))
    return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


class ConvBNReLU(nn.Sequential):
    """A plain building block (not an LUT operator on its own)."""

    def __init__(self, c_in: int, c_out: int, k: int = 3, stride: int = 1, dilation: int = 1, groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, k, stride, padding=dilation * (k // 2), dilation=dilation, groups=groups, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )


@register_op("identity")
class Identity(Op):
    """Identity; also the reference operator of CAS's network costing (c_o = c'_o - c'_id)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        if c_in != c_out or stride != 1:
            raise TypeError("identity needs c_in == c_out and stride 1")
        self.spec = OpSpec.make("identity", c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@register_op("classifier")
class Classifier(Op):
    """1x1 convolution to class logits (the search-time head of the SSR paper, at 1/8 resolution)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.spec = OpSpec.make("classifier", c_in, c_out, 1)
        self.conv = nn.Conv2d(c_in, c_out, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


@register_op("resize")
class Resize(Op):
    """Bilinear upsampling by an integer ``scale`` (align_corners=False, which exports cleanly).

    The network passes the exact output size so odd sizes round-trip; ``scale`` is the identity."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, scale: int = 2) -> None:
        super().__init__()
        if c_in != c_out:
            raise TypeError("resize keeps the channel count")
        self.spec = OpSpec.make("resize", c_in, c_out, 1, scale=int(scale))
        self.scale = int(scale)

    def output_hw(self, h: int, w: int) -> tuple[int, int]:
        return h * self.scale, w * self.scale

    def forward(self, x: torch.Tensor, size: tuple[int, int] | torch.Size | None = None) -> torch.Tensor:
        if size is None:
            size = (x.shape[-2] * self.scale, x.shape[-1] * self.scale)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class LightPPM(nn.Module):
    """Lightweight pyramid pooling (PSPNet-style, the SSR paper sec. 5.2) without adaptive pooling.

    Adaptive average pooling only exports to ONNX/TensorRT when the input divides the bins, so the
    pyramid uses a global mean plus fixed-factor average pools (x2, x4); every branch is a 1x1 conv
    to C/4, upsampled back and concatenated with the input, then fused by a 3x3 conv."""

    def __init__(self, c_in: int, c_out: int, factors: tuple[int, ...] = (4, 2)) -> None:
        super().__init__()
        c_branch = max(c_in // 4, 8)
        self.factors = factors
        self.global_branch = ConvBNReLU(c_in, c_branch, 1)
        self.branches = nn.ModuleList(ConvBNReLU(c_in, c_branch, 1) for _ in factors)
        self.fuse = ConvBNReLU(c_in + c_branch * (len(factors) + 1), c_out, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        feats = [x]
        g = self.global_branch(x.mean(dim=(2, 3), keepdim=True))
        feats.append(g.expand(-1, -1, x.shape[-2], x.shape[-1]))
        for f, branch in zip(self.factors, self.branches):
            y = branch(F.avg_pool2d(x, f, f, ceil_mode=True))
            feats.append(F.interpolate(y, size=size, mode="bilinear", align_corners=False))
        return self.fuse(torch.cat(feats, dim=1))


@register_op("aggregation")
class AggregationHead(Op):
    """The aggregation block of the SSR paper sec. 5.2 (used for retraining, not during search).

    Inputs: the 1/2 (``c_in`` channels), 1/4 (``c4``) and 1/8 (``c8``) features. The 1/2 feature is
    average-pooled to 1/4, concatenated with the 1/4 feature and fused by a 3x3 conv; the 1/8 feature
    goes through a light pyramid pooling module and is upsampled to 1/4; both are concatenated and
    classified at 1/4 (``c_out`` = classes). The signature's H x W is that of the 1/2 feature."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, c4: int = 64, c8: int = 128, mid: int = 64) -> None:
        super().__init__()
        self.spec = OpSpec.make("aggregation", c_in, c_out, 1, c4=int(c4), c8=int(c8), mid=int(mid))
        self.detail = ConvBNReLU(c_in + c4, mid, 3)
        self.context = LightPPM(c8, mid)
        self.classifier = nn.Conv2d(2 * mid, c_out, 1, bias=True)

    def output_hw(self, h: int, w: int) -> tuple[int, int]:
        return (h + 1) // 2, (w + 1) // 2

    @classmethod
    def example_inputs(cls, sig: OpSignature, batch: int = 1, dtype: torch.dtype = torch.float32, device="cpu"):
        hp = sig.spec.hparams
        h2, w2 = sig.h, sig.w
        h4, w4 = (h2 + 1) // 2, (w2 + 1) // 2
        h8, w8 = (h4 + 1) // 2, (w4 + 1) // 2
        mk = lambda c, h, w: torch.randn(batch, c, h, w, dtype=dtype, device=device)  # noqa: E731
        return mk(sig.spec.c_in, h2, w2), mk(hp["c4"], h4, w4), mk(hp["c8"], h8, w8)

    def forward(self, x2: torch.Tensor, x4: torch.Tensor, x8: torch.Tensor) -> torch.Tensor:
        d = self.detail(torch.cat([F.avg_pool2d(x2, 2, 2, ceil_mode=True), x4], dim=1))
        c = F.interpolate(self.context(x8), size=x4.shape[-2:], mode="bilinear", align_corners=False)
        return self.classifier(torch.cat([d, c], dim=1))


@register_op("seg_head")
class SegHead(Op):
    """A 3x3 conv-BN-ReLU to ``mid`` channels, then a 1x1 conv to class logits: the output head of
    BiSeNet-style nets (STDC's ``BiSeNetOutput``; DDRNet's ``segmenthead`` without its leading BN-ReLU)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, mid: int = 64) -> None:
        super().__init__()
        self.spec = OpSpec.make("seg_head", c_in, c_out, 1, mid=int(mid))
        self.conv = ConvBNReLU(c_in, mid, 3)
        self.classifier = nn.Conv2d(mid, c_out, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.conv(x))
