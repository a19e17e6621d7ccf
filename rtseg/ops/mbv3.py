"""MobileNetV3 inverted-residual block: the candidate operators of DCNAS mixture layers (seed 001 sec. 3.1).

The operator space is kernel {3, 5, 7} x expansion {3, 6}. The block is 1x1 expand, BN, h-swish,
depthwise ``kernel`` conv, BN, h-swish, 1x1 project, BN, plus the identity shortcut when stride is 1 and
C_in == C_out. Squeeze-and-excitation is left out (the seed does not say whether the searched blocks
use it, and without it every operator is a plain conv chain that TensorRT fuses).

Partial-channel search (seed 001 eq. 7) runs the block on the first ``width`` channels only. Rather
than a second, narrower set of weights, :meth:`MBConv.forward` slices the full-width weights (the first
``width * expansion`` hidden channels), so one supernet switches between ratio 1/4 and full width and
its weights map one to one onto the decoded network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rtseg.ops.base import Op, OpSpec, register_op


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
