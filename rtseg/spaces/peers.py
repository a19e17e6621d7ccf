"""Hand-designed real-time peers, as a registered but non-searchable space (``"peer"``).

Why a space: a peer then travels through everything a searched net does (Arch JSON, ``build_model``,
FLOPs per operator signature, export, bench) with no special cases, so ``rtseg bench erfnet
baseline1`` compares like with like. Sampling and supernets are refused: there is nothing to search.

ERFNet (Romera, Alvarez, Bergasa, Arroyo, "ERFNet: Efficient Residual Factorized ConvNet for
Real-Time Semantic Segmentation", IEEE T-ITS 19(1), 2018), the full encoder-decoder as published
(Table 1 of the paper; same layout as the authors' PyTorch code)::

    encoder  DB 3->16, DB 16->64, 5 x NB1D(64, d=1), DB 64->128,
             2 x [NB1D(128, d=2), NB1D(128, d=4), NB1D(128, d=8), NB1D(128, d=16)]
    decoder  Up 128->64, 2 x NB1D(64), Up 64->16, 2 x NB1D(16), ConvTranspose 2x2 s2 16->classes

The published non-bottleneck-1D has four factorized convs (3x1, 1x3, dilated 3x1, dilated 1x3, all
with bias) and dropout (0.03 at 1/4, 0.3 at 1/8, none in the decoder); it is not the simplified
two-conv NB-1D of the SSR space, so it is its own operator here (``erfnet_nb1d``). The downsampler
is the shared ``db`` operator, which is ERFNet's.
"""

from __future__ import annotations

import random
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rtseg.arch import Arch
from rtseg.errors import RtsegError
from rtseg.ops import Op, OpSignature, OpSpec, build_op, register_op
from rtseg.spaces.base import Network, SearchSpace, register_space

ERFNET_SOURCE = (
    "ERFNet: Romera et al., 'ERFNet: Efficient Residual Factorized ConvNet for Real-Time Semantic "
    "Segmentation', IEEE T-ITS 2018 (full encoder-decoder as published)"
)


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


def erfnet_specs(num_classes: int) -> list[tuple[OpSpec, int]]:
    """The operators of ERFNet in execution order, each with the downsampling factor of its input."""
    nb = lambda c, d, p: OpSpec.make("erfnet_nb1d", c, c, 1, dilation=d, dropout=p)  # noqa: E731
    specs: list[tuple[OpSpec, int]] = [(OpSpec.make("db", 3, 16, 2), 1), (OpSpec.make("db", 16, 64, 2), 2)]
    specs += [(nb(64, 1, 0.03), 4) for _ in range(5)]
    specs.append((OpSpec.make("db", 64, 128, 2), 4))
    specs += [(nb(128, d, 0.3), 8) for _ in range(2) for d in (2, 4, 8, 16)]
    specs.append((OpSpec.make("erfnet_up", 128, 64, 1), 8))
    specs += [(nb(64, 1, 0.0), 4) for _ in range(2)]
    specs.append((OpSpec.make("erfnet_up", 64, 16, 1), 4))
    specs += [(nb(16, 1, 0.0), 2) for _ in range(2)]
    specs.append((OpSpec.make("erfnet_out", 16, num_classes, 1), 2))
    return specs


#: Peer name -> builder of its (spec, input downsampling factor) list.
PEERS: dict[str, Any] = {"erfnet": erfnet_specs}
PEER_SOURCES: dict[str, str] = {"erfnet": ERFNET_SOURCE}


class PeerNet(Network):
    """A hand-designed net, built only from registered operators run in sequence."""

    def __init__(self, arch: Arch) -> None:
        super().__init__()
        self.arch = arch
        self.layers = nn.Sequential(*(build_op(spec) for spec, _ in PEERS[arch.genotype["model"]](arch.num_classes)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def signatures(self, h: int, w: int) -> list[OpSignature]:
        return PeerSpace().signatures(self.arch, h, w)


class PeerSpace(SearchSpace):
    """Hand-designed peers (``{"model": "erfnet"}``): buildable and measurable, not searchable."""

    name = "peer"
    size_divisor = 8  # three stride-2 downsamplers mirrored by three 2x upsamplers
    heads = ("classifier",)

    def validate(self, arch: Arch, source: str = "arch") -> None:
        model = arch.genotype.get("model")
        if model not in PEERS:
            raise RtsegError(f"{source}: genotype.model = {model!r} is not a known peer; known: {', '.join(sorted(PEERS))}")
        extra = set(arch.genotype) - {"model"}
        if extra:
            raise RtsegError(f"{source}: the peer genotype has unknown fields: {', '.join(sorted(extra))}")
        if arch.head not in self.heads:
            raise RtsegError(f"{source}: head {arch.head!r} is not available for peers (use 'classifier')")

    def sample(self, rng: random.Random, num_classes: int = 19, head: str = "classifier") -> Arch:
        raise RtsegError("the peer space is not searchable: it holds fixed hand-designed nets; sample from a search space such as 'ssr'")

    def supernet(self, num_classes: int = 19) -> nn.Module:
        raise RtsegError("the peer space is not searchable: it has no supernet; search a space such as 'ssr'")

    def build(self, arch: Arch) -> PeerNet:
        self.validate(arch)
        return PeerNet(arch)

    def signatures(self, arch: Arch, h: int, w: int) -> list[OpSignature]:
        self.check_input(h, w)
        return [spec.at(h // f, w // f) for spec, f in PEERS[arch.genotype["model"]](arch.num_classes)]

    def candidate_signatures(self, h: int, w: int, num_classes: int = 19, heads: tuple[str, ...] | None = None) -> list[OpSignature]:
        """Every distinct signature of every peer at ``h x w`` (so ``profile-ops`` can cover them)."""
        seen: dict[str, OpSignature] = {}
        for model in sorted(PEERS):
            arch = Arch(self.name, num_classes, {"model": model})
            for s in self.signatures(arch, h, w):
                seen.setdefault(s.key, s)
        return list(seen.values())


@register_space("peer")
def _peer_space() -> PeerSpace:
    return PeerSpace()
