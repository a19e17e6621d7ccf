"""Two-branch (bilateral) operators, used by the ``ddrnet`` peer (:mod:`rtseg.spaces.peers`).

Hong, Pan, Sun, Jia: "Deep Dual-resolution Networks for Real-time and Accurate Semantic Segmentation of
Road Scenes", 2021 (DDRNet): a high-resolution branch kept at 1/8 beside a low-resolution branch that
keeps halving, ResNet blocks in both, bilateral fusion between them and a Deep Aggregation
Pyramid Pooling Module on the lowest resolution (DAPPM), all in sec. 3 of the paper. The two-branch
layout with fusion in both directions is also the core of BiSeNet V2 (Yu, Gao, Wang, Yu, Shen, Sang:
"BiSeNet V2: Bilateral Network with Guided Aggregation for Real-time Semantic Segmentation", IJCV 2021:
detail branch, semantic branch, guided aggregation).

``res_basic`` and ``res_bottleneck`` are ResNet's blocks (He et al., CVPR 2016) as DDRNet uses them
(the bottleneck expands by 2); ``bilateral_fusion`` exchanges the two branches' information;
``dappm`` pools the low branch at several scales and adds it, upsampled, to the high branch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rtseg.ops.base import Op, OpSignature, OpSpec, register_op
from rtseg.ops.common import coarser


def _conv_bn(c_in: int, c_out: int, k: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False), nn.BatchNorm2d(c_out))


def _shortcut(c_in: int, c_out: int, stride: int) -> nn.Module:
    """ResNet's projection shortcut (1x1 conv, BN) when the shape changes, the identity otherwise."""
    return _conv_bn(c_in, c_out, 1, stride) if stride != 1 or c_in != c_out else nn.Identity()


@register_op("res_basic")
class ResBasic(Op):
    """ResNet basic block: 3x3 conv (``stride``), BN, ReLU, 3x3 conv, BN, plus the shortcut, ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise TypeError("res_basic needs stride 1 or 2")
        self.spec = OpSpec.make("res_basic", c_in, c_out, stride)
        self.body = nn.Sequential(_conv_bn(c_in, c_out, 3, stride), nn.ReLU(), _conv_bn(c_out, c_out, 3))
        self.shortcut = _shortcut(c_in, c_out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


@register_op("res_bottleneck")
class ResBottleneck(Op):
    """ResNet bottleneck: 1x1 conv to ``planes``, 3x3 conv (``stride``), 1x1 conv to C_out (DDRNet: 2 x
    planes), each with BN (ReLU after the first two), plus the shortcut, ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, planes: int = 64) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise TypeError("res_bottleneck needs stride 1 or 2")
        self.spec = OpSpec.make("res_bottleneck", c_in, c_out, stride, planes=int(planes))
        self.body = nn.Sequential(_conv_bn(c_in, planes, 1), nn.ReLU(), _conv_bn(planes, planes, 3, stride), nn.ReLU(),
                                  _conv_bn(planes, c_out, 1))
        self.shortcut = _shortcut(c_in, c_out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


@register_op("bilateral_fusion")
class BilateralFusion(Op):
    """DDRNet's bilateral fusion: inputs the high-resolution branch (``c_in`` channels) and the
    low-resolution one (``c_low`` channels, ``down`` times coarser: 2 or 4); returns both, each with the
    other added: high + upsample(BN(1x1 conv(low))) and low + (3x3 stride-2 conv, BN[, ReLU])^log2(down)(high),
    each followed by a ReLU. The signature's H x W is the high branch's."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, c_low: int = 128, down: int = 2) -> None:
        super().__init__()
        if c_in != c_out or down not in (2, 4):
            raise TypeError("bilateral_fusion keeps the high branch's channels and fuses a branch 2 or 4 times coarser")
        self.spec = OpSpec.make("bilateral_fusion", c_in, c_out, 1, c_low=int(c_low), down=int(down))
        self.steps = down.bit_length() - 1
        self.compress = _conv_bn(c_low, c_in, 1)
        layers: list[nn.Module] = []
        for i in range(self.steps):
            last = i == self.steps - 1
            layers += [_conv_bn(c_in if i == 0 else c_low // 2, c_low if last else c_low // 2, 3, 2)]
            if not last:
                layers.append(nn.ReLU())
        self.downsample = nn.Sequential(*layers)

    @classmethod
    def example_inputs(cls, sig: OpSignature, batch: int = 1, dtype: torch.dtype = torch.float32, device="cpu"):
        hp = sig.spec.hparams
        steps = int(hp["down"]).bit_length() - 1
        high = torch.randn(batch, sig.spec.c_in, sig.h, sig.w, dtype=dtype, device=device)
        return high, torch.randn(batch, hp["c_low"], *coarser(sig.h, sig.w, steps), dtype=dtype, device=device)

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        up = F.interpolate(self.compress(low), size=high.shape[-2:], mode="bilinear", align_corners=False)
        return F.relu(high + up), F.relu(low + self.downsample(high))


class _PreAct(nn.Sequential):
    """BN, ReLU, conv: DAPPM's pre-activation unit (optionally after an average pool)."""

    def __init__(self, c_in: int, c_out: int, k: int = 1, pool: nn.Module | None = None) -> None:
        super().__init__(*([pool] if pool is not None else []), nn.BatchNorm2d(c_in), nn.ReLU(),
                         nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False))


@register_op("dappm")
class DAPPM(Op):
    """DDRNet's Deep Aggregation Pyramid Pooling Module on the low branch, added to
    the high branch. Inputs: the high branch (``c_in`` channels) and the low branch (``c_low``, ``down``
    times coarser). The low branch is pooled by 5/9/17 average pools (strides 2/4/8) and a global
    mean, each branch 1x1-convolved to ``branch`` channels, upsampled and refined by a 3x3 conv after
    adding the previous scale (hierarchical residual fusion), concatenated, compressed to ``c_out``
    channels plus a 1x1 shortcut, upsampled to the high branch and added to it (``c_in == c_out``).
    The signature's H x W is the high branch's."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, c_low: int = 512, branch: int = 128, down: int = 8) -> None:
        super().__init__()
        if c_in != c_out or down < 1 or down & (down - 1):
            raise TypeError("dappm adds to the high branch (c_in == c_out) from a branch a power of two coarser")
        self.spec = OpSpec.make("dappm", c_in, c_out, 1, c_low=int(c_low), branch=int(branch), down=int(down))
        self.scale0 = _PreAct(c_low, branch)
        self.scales = nn.ModuleList(_PreAct(c_low, branch, pool=nn.AvgPool2d(k, s, k // 2)) for k, s in ((5, 2), (9, 4), (17, 8)))
        self.global_scale = _PreAct(c_low, branch)
        self.process = nn.ModuleList(_PreAct(branch, branch, 3) for _ in range(4))
        self.compression = _PreAct(5 * branch, c_out)
        self.shortcut = _PreAct(c_low, c_out)

    @classmethod
    def example_inputs(cls, sig: OpSignature, batch: int = 1, dtype: torch.dtype = torch.float32, device="cpu"):
        hp = sig.spec.hparams
        high = torch.randn(batch, sig.spec.c_in, sig.h, sig.w, dtype=dtype, device=device)
        low_hw = coarser(sig.h, sig.w, int(hp["down"]).bit_length() - 1)
        return high, torch.randn(batch, hp["c_low"], *low_hw, dtype=dtype, device=device)

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        size = low.shape[-2:]
        up = lambda t: F.interpolate(t, size=size, mode="bilinear", align_corners=False)  # noqa: E731
        feats = [self.scale0(low)]
        pooled = [up(s(low)) for s in self.scales] + [up(self.global_scale(low.mean((2, 3), keepdim=True)))]
        for p, proc in zip(pooled, self.process):
            feats.append(proc(p + feats[-1]))
        y = self.compression(torch.cat(feats, dim=1)) + self.shortcut(low)
        return high + F.interpolate(y, size=high.shape[-2:], mode="bilinear", align_corners=False)
