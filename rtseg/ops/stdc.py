"""STDC operators (Fan, Lai, Huang, Wei, Chai, Luo, Wei: "Rethinking BiSeNet for Real-time Semantic
Segmentation", CVPR 2021), used by the ``stdc`` peer (:mod:`rtseg.spaces.peers`) and, as
``stdc_block``, by the ``ssr`` space's STDC layers (:mod:`rtseg.spaces.ssr`).

``stdc_module`` is the Short-Term Dense Concatenate module of sec. 3.1: block 1 a 1x1
conv to C_out/2, then 3x3 convs whose widths halve (C_out/4, C_out/8, ..., the last as wide as the
one before), every block's output concatenated, so the module's receptive field grows while its
cost stays low. The stride-2 variant strides a 3x3 depthwise conv after block 1 and
average-pools block 1's own output (3x3, stride 2) before the concatenation.

``stdc_head`` is the segmentation head of sec. 3.2: the context path (an Attention
Refinement Module, ARM, on the 1/32 and 1/16 stage outputs plus a global-average context, each
level upsampled by nearest neighbour and smoothed by a 3x3 conv, as in BiSeNet) fused with the
1/8 stage output (the spatial/detail path) by a Feature Fusion Module (FFM). The Detail
Aggregation module of sec. 3.2 is a training-time loss on the 1/8 feature only (the detail head
is discarded at inference, sec. 3.2), so it is not part of the network here; rtseg trains every
net with the same plain cross-entropy recipe.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rtseg.ops.base import Op, OpSignature, OpSpec, register_op
from rtseg.ops.common import ConvBNReLU, at_lower_resolution, coarser


def stdc_branch_widths(c_out: int, steps: int) -> list[int]:
    """Output widths of an STDC module's blocks: C/2, C/4, ..., the last as wide as the one before
    (C/2 + C/4 + C/8 + C/8 = C for four blocks); rounding is taken up by the last block."""
    widths = [max(1, c_out // 2 ** (i + 1)) for i in range(steps - 1)]
    widths.append(c_out - sum(widths))
    if widths[-1] < 1:
        raise TypeError(f"stdc_module: {c_out} channels do not split into {steps} blocks")
    return widths


@register_op("stdc_module")
class STDCModule(Op):
    """Short-Term Dense Concatenate module (sec. 3.1) with ``steps`` blocks, stride 1 or 2."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, steps: int = 4) -> None:
        super().__init__()
        if stride not in (1, 2) or steps < 2:
            raise TypeError("stdc_module needs stride 1 or 2 and at least 2 blocks")
        self.spec = OpSpec.make("stdc_module", c_in, c_out, stride, steps=int(steps))
        widths = stdc_branch_widths(c_out, int(steps))
        self.first = ConvBNReLU(c_in, widths[0], 1)
        self.blocks = nn.ModuleList(ConvBNReLU(a, b, 3) for a, b in zip(widths, widths[1:]))
        self.stride = int(stride)
        if stride == 2:
            self.down = nn.Sequential(nn.Conv2d(widths[0], widths[0], 3, 2, 1, groups=widths[0], bias=False), nn.BatchNorm2d(widths[0]))
            self.skip = nn.AvgPool2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = self.first(x)
        y = self.down(first) if self.stride == 2 else first
        outs = [self.skip(first) if self.stride == 2 else first]
        for block in self.blocks:
            y = block(y)
            outs.append(y)
        return torch.cat(outs, dim=1)


class AttentionRefinement(nn.Module):
    """ARM (BiSeNet, used by STDC's context path): a 3x3 conv-BN-ReLU, then a channel attention from a
    global average, a 1x1 conv, BN and a sigmoid (a building block, not an LUT operator on its own)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(c_in, c_out, 3)
        self.atten = nn.Sequential(nn.Conv2d(c_out, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y * self.atten(y.mean((2, 3), keepdim=True))


class FeatureFusion(nn.Module):
    """FFM (BiSeNet, used by STDC): the concatenated spatial and context features through a 1x1
    conv-BN-ReLU, re-weighted by a squeeze-excitation style attention (global average, 1x1 to C/4,
    ReLU, 1x1 back, sigmoid) and added back: ``y + y * a``."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(c_in, c_out, 1)
        mid = max(1, c_out // 4)
        self.atten = nn.Sequential(nn.Conv2d(c_out, mid, 1), nn.ReLU(), nn.Conv2d(mid, c_out, 1), nn.Sigmoid())

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        y = self.conv(torch.cat([spatial, context], dim=1))
        return y + y * self.atten(y.mean((2, 3), keepdim=True))


def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="nearest")


@register_op("stdc_head")
class STDCHead(Op):
    """STDC's context path and FFM (sec. 3.2): inputs the 1/8 (``c_in`` channels), 1/16 (``c16``)
    and 1/32 (``c32``) stage outputs; output the fused feature (``c_out`` channels) at 1/8. The context
    path has ``inter`` channels (128 in the paper). The signature's H x W is the 1/8 feature's."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, c16: int = 512, c32: int = 1024, inter: int = 128) -> None:
        super().__init__()
        self.spec = OpSpec.make("stdc_head", c_in, c_out, 1, c16=int(c16), c32=int(c32), inter=int(inter))
        self.global_context = ConvBNReLU(c32, inter, 1)
        self.arm32, self.arm16 = AttentionRefinement(c32, inter), AttentionRefinement(c16, inter)
        self.smooth32, self.smooth16 = ConvBNReLU(inter, inter, 3), ConvBNReLU(inter, inter, 3)
        self.ffm = FeatureFusion(c_in + inter, c_out)

    @classmethod
    def example_inputs(cls, sig: OpSignature, batch: int = 1, dtype: torch.dtype = torch.float32, device="cpu"):
        hp = sig.spec.hparams
        mk = lambda c, hw: torch.randn(batch, c, *hw, dtype=dtype, device=device)  # noqa: E731
        return mk(sig.spec.c_in, (sig.h, sig.w)), mk(hp["c16"], coarser(sig.h, sig.w, 1)), mk(hp["c32"], coarser(sig.h, sig.w, 2))

    def forward(self, f8: torch.Tensor, f16: torch.Tensor, f32: torch.Tensor) -> torch.Tensor:
        ctx32 = self.arm32(f32) + self.global_context(f32.mean((2, 3), keepdim=True))
        up32 = self.smooth32(_up(ctx32, f16))
        up16 = self.smooth16(_up(self.arm16(f16) + up32, f8))
        return self.ffm(f8, up16)


@register_op("stdc_block")
class STDCBlock(STDCModule):
    """An STDC module (sec. 3.1, stride 1) as a residual layer of the SSR space: ``x + stdc(x)``,
    optionally run at ``1/spatial`` resolution (average-pooled in, bilinearly upsampled out, as the SSR
    space's NB-1D layers do, SSR paper eq. 4). The residual keeps a deep stack of them trainable with
    the same recipe as the NB-1D layers it stands beside; the module's concatenation of three 3x3 blocks
    of halving width gives a layer a wide receptive field at about a third of an NB-1D layer's
    multiply-adds at the same width."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, spatial: int = 1, steps: int = 4) -> None:
        if c_in != c_out or stride != 1:
            raise TypeError("stdc_block keeps its width and resolution (c_in == c_out, stride 1)")
        super().__init__(c_in, c_out, 1, steps)  # the module's layers are this operator's own (one LUT entry)
        self.spec = OpSpec.make("stdc_block", c_in, c_out, 1, spatial=int(spatial), steps=int(steps))
        self.spatial = int(spatial)

    def forward(self, x: torch.Tensor, *_masks: torch.Tensor | None) -> torch.Tensor:
        """``x`` plus the module's output; any channel masks a supernet passes are ignored (the layer
        always runs at its stage's full width)."""
        return at_lower_resolution(x, self.spatial, lambda t: t + super(STDCBlock, self).forward(t))
