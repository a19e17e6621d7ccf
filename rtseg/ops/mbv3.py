"""MobileNetV3 inverted-residual blocks: the candidate operators of DCNAS mixture layers (DCNAS paper, sec. 3.1),
and, at the end of this module, the published MobileNetV3-Large blocks and LR-ASPP head of the peer space.

The operator space is kernel {3, 5, 7} x expansion {3, 6}. The block is 1x1 expand, BN, h-swish,
depthwise ``kernel`` conv, BN, h-swish, 1x1 project, BN, plus the identity shortcut when stride is 1 and
C_in == C_out. Squeeze-and-excitation is left out (the seed does not say whether the searched blocks
use it, and without it every operator is a plain conv chain that TensorRT fuses).

Partial-channel search (DCNAS paper, eq. 7) runs the block on the first ``width`` channels only. Rather
than a second, narrower set of weights, :meth:`MBConv.forward` slices the full-width weights (the first
``width * expansion`` hidden channels), so one supernet switches between ratio 1/4 and full width and
its weights map one to one onto the decoded network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rtseg.ops.base import Op, OpSignature, OpSpec, register_op


def _sliced_bn(bn: nn.BatchNorm2d, y: torch.Tensor, n: int) -> torch.Tensor:
    """BatchNorm over the first ``n`` channels of ``bn`` (running statistics are updated in place)."""
    use_batch = bn.training or bn.running_mean is None
    return F.batch_norm(
        y,
        bn.running_mean[:n] if bn.running_mean is not None else None,
        bn.running_var[:n] if bn.running_var is not None else None,
        bn.weight[:n],
        bn.bias[:n],
        use_batch,
        0.1 if bn.momentum is None else bn.momentum,
        bn.eps,
    )


@register_op("mbconv")
class MBConv(Op):
    """MobileNetV3 block ``mbconv(kernel, expansion)``; see the module docstring."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, kernel: int = 3, expansion: int = 6) -> None:
        super().__init__()
        if kernel % 2 != 1 or expansion < 1:
            raise TypeError("mbconv needs an odd kernel and expansion >= 1")
        self.spec = OpSpec.make("mbconv", c_in, c_out, stride, kernel=int(kernel), expansion=int(expansion))
        self.kernel, self.expansion, self.stride = int(kernel), int(expansion), int(stride)
        hidden = c_in * self.expansion
        self.expand = nn.Conv2d(c_in, hidden, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.dw = nn.Conv2d(hidden, hidden, kernel, stride, padding=kernel // 2, groups=hidden, bias=False)
        self.bn2 = nn.BatchNorm2d(hidden)
        self.project = nn.Conv2d(hidden, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.act = nn.Hardswish()
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor, width: int | None = None) -> torch.Tensor:
        if width is not None and width != self.spec.c_in:
            return self._forward_sliced(x, int(width))
        y = self.act(self.bn1(self.expand(x)))
        y = self.act(self.bn2(self.dw(y)))
        y = self.bn3(self.project(y))
        return x + y if self.residual else y

    def _forward_sliced(self, x: torch.Tensor, c: int) -> torch.Tensor:
        """The same block on the first ``c`` input/output channels (partial-channel search)."""
        if not self.residual:
            raise ValueError("partial-channel execution needs a residual (stride 1, C_in == C_out) block")
        h = c * self.expansion
        y = F.conv2d(x, self.expand.weight[:h, :c])
        y = self.act(_sliced_bn(self.bn1, y, h))
        y = F.conv2d(y, self.dw.weight[:h], None, self.stride, self.kernel // 2, 1, h)
        y = self.act(_sliced_bn(self.bn2, y, h))
        y = _sliced_bn(self.bn3, F.conv2d(y, self.project.weight[:c, :h]), c)
        return x + y


# -- MobileNetV3 as published, for the LR-ASPP peer --------------------------------------------------
#
# Howard et al., "Searching for MobileNetV3", ICCV 2019, Table 1 (MobileNetV3-Large) and sec. 6.1.2
# (LR-ASPP). The searched ``mbconv`` above is a DCNAS candidate (h-swish everywhere, integer expansion,
# no squeeze-and-excitation); the published blocks differ in all three, so they are their own operator.
# Layout and rounding follow torchvision's ``mobilenet_v3_large`` / ``lraspp_mobilenet_v3_large``
# (BN eps 1e-3; BN momentum is PyTorch's default 0.1 like every rtseg operator, not torchvision's 0.01,
# which suits ImageNet-length schedules rather than the short trainings rtseg compares nets with).


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a scaled channel count to a multiple of ``divisor`` without losing more than 10% (the rule
    of the MobileNet reference code, used by torchvision for every width multiplier)."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return int(new_v)


def _activation(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU()
    if name == "hswish":
        return nn.Hardswish()
    raise TypeError(f"activation must be 'relu' or 'hswish', got {name!r}")


@register_op("conv_bn_hswish")
class ConvBNHswish(Op):
    """``kernel x kernel`` conv (no bias), BN, h-swish: MobileNetV3's stem (3x3, stride 2) and its last
    1x1 conv (C -> 6C)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, kernel: int = 3) -> None:
        super().__init__()
        self.spec = OpSpec.make("conv_bn_hswish", c_in, c_out, stride, kernel=int(kernel))
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=1e-3)
        self.act = nn.Hardswish()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class SqueezeExcite(nn.Module):
    """MobileNetV3's squeeze-and-excitation: global mean, 1x1 conv to ``squeeze``, ReLU, 1x1 conv back,
    hard sigmoid, channel-wise scale (a building block, not an LUT operator on its own)."""

    def __init__(self, c: int, squeeze: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(c, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, c, 1)
        self.relu = nn.ReLU()
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.gate(self.fc2(self.relu(self.fc1(x.mean((2, 3), keepdim=True)))))
        return x * s


@register_op("mbv3_block")
class MBV3Block(Op):
    """The published MobileNetV3 bottleneck: [1x1 expand to ``hidden``, BN, act] (left out when
    ``hidden == c_in``), depthwise ``kernel`` conv (``stride``, ``dilation``), BN, act, [SE with a
    ``make_divisible(hidden / 4)`` squeeze], 1x1 project, BN, plus the identity when stride is 1 and
    C_in == C_out. ``act`` is ``relu`` or ``hswish``. A dilated block has stride 1 (torchvision's rule:
    dilation replaces the stride when the backbone keeps its output stride)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, kernel: int = 3, hidden: int | None = None,
                 se: bool = False, act: str = "hswish", dilation: int = 1) -> None:
        super().__init__()
        hidden = c_in if hidden is None else int(hidden)
        if kernel % 2 != 1 or hidden < 1 or dilation < 1 or stride not in (1, 2):
            raise TypeError("mbv3_block needs an odd kernel, hidden >= 1, dilation >= 1 and stride 1 or 2")
        self.spec = OpSpec.make("mbv3_block", c_in, c_out, stride, kernel=int(kernel), hidden=hidden, se=bool(se),
                                act=str(act), dilation=int(dilation))
        layers: list[nn.Module] = []
        if hidden != c_in:
            layers += [nn.Conv2d(c_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden, eps=1e-3), _activation(act)]
        pad = (kernel - 1) // 2 * dilation
        layers += [nn.Conv2d(hidden, hidden, kernel, stride, padding=pad, dilation=dilation, groups=hidden, bias=False),
                   nn.BatchNorm2d(hidden, eps=1e-3), _activation(act)]
        if se:
            layers.append(SqueezeExcite(hidden, make_divisible(hidden // 4, 8)))
        layers += [nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out, eps=1e-3)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


@register_op("lraspp")
class LRASPPHead(Op):
    """The Lite R-ASPP head (MobileNetV3 sec. 6.1.2, torchvision's ``LRASPPHead``): on the deep feature
    (``c_high`` channels, ``high_scale`` times coarser than the low one), a 1x1 conv-BN-ReLU to ``inter``
    channels times a sigmoid gate from a global-mean 1x1 conv, upsampled to the low feature and classified
    (1x1), plus a 1x1 classifier of the low-level feature (``c_in`` channels). Output: class logits at the
    low feature's resolution (1/8). The signature's H x W is the low feature's. The paper's gate pools
    49x49 windows with stride (16, 20); torchvision, and this operator, pool globally (exports as one
    ReduceMean at any input size)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, c_high: int = 960, inter: int = 128, high_scale: int = 2) -> None:
        super().__init__()
        if high_scale not in (1, 2):
            raise TypeError("lraspp's deep feature is as fine as the low one (high_scale 1) or half as fine (2)")
        self.spec = OpSpec.make("lraspp", c_in, c_out, 1, c_high=int(c_high), inter=int(inter), high_scale=int(high_scale))
        self.high_scale = int(high_scale)
        self.cbr = nn.Sequential(nn.Conv2d(c_high, inter, 1, bias=False), nn.BatchNorm2d(inter), nn.ReLU())
        self.scale = nn.Sequential(nn.Conv2d(c_high, inter, 1, bias=False), nn.Sigmoid())
        self.low_classifier = nn.Conv2d(c_in, c_out, 1)
        self.high_classifier = nn.Conv2d(inter, c_out, 1)

    @classmethod
    def example_inputs(cls, sig: OpSignature, batch: int = 1, dtype: torch.dtype = torch.float32, device="cpu"):
        hp = sig.spec.hparams
        s = int(hp["high_scale"])
        low = torch.randn(batch, sig.spec.c_in, sig.h, sig.w, dtype=dtype, device=device)
        high = torch.randn(batch, hp["c_high"], -(-sig.h // s), -(-sig.w // s), dtype=dtype, device=device)
        return low, high

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        x = self.cbr(high) * self.scale(high.mean((2, 3), keepdim=True))
        if self.high_scale != 1:
            x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.low_classifier(low) + self.high_classifier(x)
