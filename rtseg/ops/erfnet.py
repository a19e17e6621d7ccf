"""ERFNet-family operators (Romera, Alvarez, Bergasa, Arroyo, "ERFNet: Efficient Residual Factorized ConvNet
for Real-Time Semantic Segmentation", IEEE T-ITS 19(1), 2018).

``db`` (ERFNet's downsampler) and ``nb1d`` (the SSR paper's simplified two-conv non-bottleneck-1D, Tables 1-2)
build the SSR space; ``erfnet_nb1d``, ``erfnet_up`` and ``erfnet_out`` are the published ERFNet's own blocks
(four-conv non-bottleneck-1D with dropout, upsampler, output layer), which the ``erfnet`` peer uses
(:mod:`rtseg.spaces.peers`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rtseg.ops.base import Op, OpSpec, register_op
from rtseg.ops.common import at_lower_resolution


@register_op("db")
class DownsamplerBlock(Op):
    """ERFNet downsampler: a 3x3 stride-2 conv producing C_out - C_in channels, concatenated with a
    2x2 max-pool of the input, then BN and ReLU. When C_out <= C_in the pooling branch is dropped."""

    def __init__(self, c_in: int, c_out: int, stride: int = 2) -> None:
        super().__init__()
        if stride != 2:
            raise TypeError("the downsampler block always has stride 2")
        self.spec = OpSpec.make("db", c_in, c_out, stride)
        self.use_pool = c_out > c_in
        self.conv = nn.Conv2d(c_in, c_out - c_in if self.use_pool else c_out, 3, stride=2, padding=1, bias=True)
        self.bn = nn.BatchNorm2d(c_out, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if self.use_pool:
            y = torch.cat([y, F.max_pool2d(x, 2, 2, ceil_mode=True)], dim=1)
        return F.relu(self.bn(y))


@register_op("nb1d")
class NB1D(Op):
    """Simplified Non-Bottleneck-1D residual block of the SSR paper (Table 2).

    ``x -> [s x s avg-pool] -> conv3x1(dil r) -> BN -> ReLU -> conv1x3(dil r) -> BN -> (+x) -> ReLU
    -> [bilinear upsample back]`` (eq. 4: up(op(pool(x)))). The 3x1 and 1x3 convs have independently
    chosen output widths ``c3x1`` and ``c1x3`` <= C; the residual adds the 1x3 output onto the first
    ``c1x3`` channels of the input, which is exactly what a zero-one channel mask on a full-width block
    computes. That lets the supernet use full-width blocks with masks (``mask3x1``/``mask1x3``, its only
    extra inputs) while the decoded network uses narrow convs holding the same weights.
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        stride: int = 1,
        dilation: int = 1,
        spatial: int = 1,
        c3x1: int | None = None,
        c1x3: int | None = None,
    ) -> None:
        super().__init__()
        if c_in != c_out or stride != 1:
            raise TypeError("nb1d keeps its width and resolution (c_in == c_out, stride 1)")
        c3x1 = c_out if c3x1 is None else int(c3x1)
        c1x3 = c_out if c1x3 is None else int(c1x3)
        if not (0 < c3x1 <= c_out and 0 < c1x3 <= c_out):
            raise TypeError(f"nb1d inner widths must lie in 1..{c_out}, got c3x1={c3x1}, c1x3={c1x3}")
        self.spec = OpSpec.make("nb1d", c_in, c_out, 1, dilation=int(dilation), spatial=int(spatial), c3x1=c3x1, c1x3=c1x3)
        self.dilation, self.spatial, self.c3x1, self.c1x3 = int(dilation), int(spatial), c3x1, c1x3
        d = self.dilation
        self.conv3x1 = nn.Conv2d(c_in, c3x1, (3, 1), padding=(d, 0), dilation=(d, 1), bias=False)
        self.bn1 = nn.BatchNorm2d(c3x1, eps=1e-3)
        self.conv1x3 = nn.Conv2d(c3x1, c1x3, (1, 3), padding=(0, d), dilation=(1, d), bias=False)
        self.bn2 = nn.BatchNorm2d(c1x3, eps=1e-3)

    def _block(self, x: torch.Tensor, mask3x1: torch.Tensor | None, mask1x3: torch.Tensor | None) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv3x1(x)))
        if mask3x1 is not None:
            y = y * mask3x1.view(1, -1, 1, 1)
        y = self.bn2(self.conv1x3(y))
        if mask1x3 is not None:
            y = y * mask1x3.view(1, -1, 1, 1)
        if self.c1x3 == self.spec.c_in:
            return F.relu(x + y)
        return F.relu(torch.cat([x[:, : self.c1x3] + y, x[:, self.c1x3 :]], dim=1))

    def forward(
        self, x: torch.Tensor, mask3x1: torch.Tensor | None = None, mask1x3: torch.Tensor | None = None
    ) -> torch.Tensor:
        return at_lower_resolution(x, self.spatial, lambda t: self._block(t, mask3x1, mask1x3))


@register_op("erfnet_nb1d")
class ERFNetNonBottleneck1D(Op):
    """ERFNet's non-bottleneck-1D: ``relu(3x1) -> 1x3 -> BN -> relu -> dil 3x1 -> relu -> dil 1x3 -> BN
    -> dropout -> relu(+x)``."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, dilation: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        if c_in != c_out or stride != 1:
            raise TypeError("erfnet_nb1d keeps its width and resolution (c_in == c_out, stride 1)")
        d = int(dilation)
        self.spec = OpSpec.make("erfnet_nb1d", c_in, c_out, 1, dilation=d, dropout=float(dropout))
        c = c_in
        self.conv3x1_1 = nn.Conv2d(c, c, (3, 1), padding=(1, 0), bias=True)
        self.conv1x3_1 = nn.Conv2d(c, c, (1, 3), padding=(0, 1), bias=True)
        self.bn1 = nn.BatchNorm2d(c, eps=1e-3)
        self.conv3x1_2 = nn.Conv2d(c, c, (3, 1), padding=(d, 0), dilation=(d, 1), bias=True)
        self.conv1x3_2 = nn.Conv2d(c, c, (1, 3), padding=(0, d), dilation=(1, d), bias=True)
        self.bn2 = nn.BatchNorm2d(c, eps=1e-3)
        self.dropout = nn.Dropout2d(float(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.conv3x1_1(x))
        y = F.relu(self.bn1(self.conv1x3_1(y)))
        y = F.relu(self.conv3x1_2(y))
        y = self.bn2(self.conv1x3_2(y))
        if self.dropout.p > 0:
            y = self.dropout(y)
        return F.relu(y + x)


@register_op("erfnet_up")
class ERFNetUpsampler(Op):
    """ERFNet's upsampler block: 3x3 transposed conv, stride 2 (output 2H x 2W), BN, ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.spec = OpSpec.make("erfnet_up", c_in, c_out, 1)
        self.conv = nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1, bias=True)
        self.bn = nn.BatchNorm2d(c_out, eps=1e-3)

    def output_hw(self, h: int, w: int) -> tuple[int, int]:
        return 2 * h, 2 * w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


@register_op("erfnet_out")
class ERFNetOutput(Op):
    """ERFNet's output layer: a 2x2 stride-2 transposed conv straight to class logits."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.spec = OpSpec.make("erfnet_out", c_in, c_out, 1)
        self.conv = nn.ConvTranspose2d(c_in, c_out, 2, stride=2, padding=0, output_padding=0, bias=True)

    def output_hw(self, h: int, w: int) -> tuple[int, int]:
        return 2 * h, 2 * w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)
