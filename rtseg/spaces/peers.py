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
two-conv NB-1D of the SSR space, so it is its own operator (``erfnet_nb1d``). The downsampler
is the shared ``db`` operator, which is ERFNet's; all of them live in :mod:`rtseg.ops.erfnet`.

LR-ASPP on MobileNetV3-Large (Howard et al., "Searching for MobileNetV3", ICCV 2019, Table 1 and
sec. 6.1.2), laid out as torchvision's ``lraspp_mobilenet_v3_large``: the backbone's last stage dilated
(output stride 16; 8 dilates the 1/16 stage too), the low-level feature taken after the first block at
1/8 (torchvision's C2 tap), the deep one after the final 1x1 conv (6 x the last block's width), an
LR-ASPP head with 128 channels and a bilinear resize to the input. With 21 classes it has torchvision's
3,221,538 parameters.

STDC1-Seg (Fan et al., "Rethinking BiSeNet for Real-time Semantic Segmentation", CVPR 2021, sec. 3 and
Table 1): a 32- and a 64-channel stride-2 3x3 conv, three stages of two STDC modules (256, 512, 1024
channels at 1/8, 1/16, 1/32; :mod:`rtseg.ops.stdc`), the context path (ARM on the 1/32 and 1/16
outputs plus a global-average context) fused by the FFM with the 1/8 output (the detail path), a
3x3 + 1x1 output head at 1/8 (256 channels) and a resize. The detail guidance of sec. 3.2 is a
training-time loss on the 1/8 feature (its head is dropped at inference); rtseg trains every net
with one recipe, so it is left out.

DDRNet-23-slim (Hong et al., "Deep Dual-resolution Networks for Real-time and Accurate Semantic
Segmentation of Road Scenes", 2021, sec. 3; :mod:`rtseg.ops.bilateral`): a stride-4 stem
and ResNet basic blocks to 1/8 (32, 64 channels), then two branches, a high-resolution one kept at
1/8 (64 channels) and a low-resolution one halving to 1/16, 1/32 (128, 256), with bilateral fusion
after each of those stages, a bottleneck ending each branch (the low one at 1/64), DAPPM on the low
branch added to the high one, a 3x3 + 1x1 head at 1/8 and a resize; 5.7 M parameters at 19 classes
as published. The same detail / context two-branch design with fusion is BiSeNet V2's (Yu et al.,
"BiSeNet V2: Bilateral Network with Guided Aggregation for Real-time Semantic Segmentation", IJCV
2021). The training-time auxiliary head is left out, as STDC's detail loss.

Every peer scales like EfficientNet (Tan & Le, "EfficientNet: Rethinking Model Scaling for CNNs", ICML
2019, sec. 3.3): optional genotype fields ``width`` (every channel count times it, rounded by
:func:`rtseg.ops.mbv3.make_divisible` to a multiple of 8, of 4 for DDRNet) and ``depth`` (each run of repeated blocks
``ceil(depth x n)`` long, at least one). Without them an arch is the published net.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from rtseg.arch import Arch
from rtseg.errors import RtsegError
from rtseg.ops import OpSignature, OpSpec, build_op
from rtseg.ops.mbv3 import make_divisible
from rtseg.spaces.base import Network, SearchSpace, Supernet, register_space

ERFNET_SOURCE = (
    "ERFNet: Romera et al., 'ERFNet: Efficient Residual Factorized ConvNet for Real-Time Semantic "
    "Segmentation', IEEE T-ITS 2018 (full encoder-decoder as published)"
)
LRASPP_SOURCE = (
    "LR-ASPP MobileNetV3-Large: Howard et al., 'Searching for MobileNetV3', ICCV 2019 (Table 1, sec. 6.1.2), "
    "laid out as torchvision's lraspp_mobilenet_v3_large (dilated last stage, output stride 16, 128-channel head)"
)


def scaled_repeats(n: int, depth: float) -> int:
    """How many blocks a run of ``n`` repeated blocks has at depth multiplier ``depth`` (EfficientNet's
    ``ceil(depth x n)``, at least one; the small tolerance keeps 0.6 x 5 at 3, not 4)."""
    return max(1, math.ceil(n * depth - 1e-9))


def erfnet_specs(num_classes: int, width: float = 1.0, depth: float = 1.0) -> list[tuple[OpSpec, int]]:
    """The operators of ERFNet in execution order, each with the downsampling factor of its input.

    ``width`` scales the 16/64/128 channels (multiples of 8); ``depth`` scales each run of NB-1D blocks
    (5 at 1/4, 8 at 1/8 whose dilations keep cycling 2, 4, 8, 16, and 2 + 2 in the decoder)."""
    c1, c2, c3 = (make_divisible(c * width) for c in (16, 64, 128))
    n4, n8, nd = scaled_repeats(5, depth), scaled_repeats(8, depth), scaled_repeats(2, depth)
    nb = lambda c, d, p: OpSpec.make("erfnet_nb1d", c, c, 1, dilation=d, dropout=p)  # noqa: E731
    specs: list[tuple[OpSpec, int]] = [(OpSpec.make("db", 3, c1, 2), 1), (OpSpec.make("db", c1, c2, 2), 2)]
    specs += [(nb(c2, 1, 0.03), 4) for _ in range(n4)]
    specs.append((OpSpec.make("db", c2, c3, 2), 4))
    specs += [(nb(c3, (2, 4, 8, 16)[i % 4], 0.3), 8) for i in range(n8)]
    specs.append((OpSpec.make("erfnet_up", c3, c2, 1), 8))
    specs += [(nb(c2, 1, 0.0), 4) for _ in range(nd)]
    specs.append((OpSpec.make("erfnet_up", c2, c1, 1), 4))
    specs += [(nb(c1, 1, 0.0), 2) for _ in range(nd)]
    specs.append((OpSpec.make("erfnet_out", c1, num_classes, 1), 2))
    return specs


#: MobileNetV3-Large (Howard et al. 2019, Table 1): (C_in, kernel, expanded, C_out, SE, activation, stride).
MBV3_LARGE: tuple[tuple[int, int, int, int, bool, str, int], ...] = (
    (16, 3, 16, 16, False, "relu", 1),
    (16, 3, 64, 24, False, "relu", 2),
    (24, 3, 72, 24, False, "relu", 1),
    (24, 5, 72, 40, True, "relu", 2),
    (40, 5, 120, 40, True, "relu", 1),
    (40, 5, 120, 40, True, "relu", 1),
    (40, 3, 240, 80, False, "hswish", 2),
    (80, 3, 200, 80, False, "hswish", 1),
    (80, 3, 184, 80, False, "hswish", 1),
    (80, 3, 184, 80, False, "hswish", 1),
    (80, 3, 480, 112, True, "hswish", 1),
    (112, 3, 672, 112, True, "hswish", 1),
    (112, 5, 672, 160, True, "hswish", 2),
    (160, 5, 960, 160, True, "hswish", 1),
    (160, 5, 960, 160, True, "hswish", 1),
)
LRASPP_INTER = 128  # the head's channels (torchvision's inter_channels; not scaled with the backbone)


def _mbv3_rows(depth: float) -> list[tuple[int, int, int, int, bool, str, int]]:
    """MobileNetV3-Large's rows with each run of identity blocks (stride 1, C_in == C_out) cut or
    extended (repeating its last block) to ``scaled_repeats(len(run), depth)``."""
    rows, i, table = [], 0, MBV3_LARGE
    residual = lambda r: r[6] == 1 and r[0] == r[3]  # noqa: E731
    while i < len(table):
        if not residual(table[i]):
            rows.append(table[i])
            i += 1
            continue
        j = i
        while j < len(table) and residual(table[j]):
            j += 1
        run = table[i:j]
        rows += [run[min(k, len(run) - 1)] for k in range(scaled_repeats(len(run), depth))]
        i = j
    return rows


def lraspp_mbv3_specs(num_classes: int, width: float = 1.0, depth: float = 1.0, output_stride: int = 16) -> list[tuple[OpSpec, int]]:
    """The operators of LR-ASPP MobileNetV3-Large in execution order, each with the downsampling factor
    of its input: the stem, the blocks, the last 1x1 conv, the head (at the low feature, 1/8) and the
    resize. A stride-2 block that would go below ``output_stride`` keeps the resolution and doubles the
    dilation of its stage instead (torchvision's ``dilated=True`` for 16)."""
    ch = lambda c: make_divisible(c * width)  # noqa: E731
    stem = ch(16)
    specs: list[tuple[OpSpec, int]] = [(OpSpec.make("conv_bn_hswish", 3, stem, 2, kernel=3), 1)]
    f, dil, low = 2, 1, None
    for c_in, k, hidden, c_out, se, act, stride in _mbv3_rows(depth):
        f_in = f
        if stride == 2 and f >= output_stride:
            dil, stride = dil * 2, 1
        elif stride == 2:
            f *= 2
        spec = OpSpec.make("mbv3_block", ch(c_in), ch(c_out), stride, kernel=k, hidden=ch(hidden), se=se, act=act, dilation=dil)
        specs.append((spec, f_in))
        if low is None and f == 8:
            low = spec.c_out  # torchvision's C2 tap: the first block at 1/8
    c_last = ch(MBV3_LARGE[-1][3])
    specs.append((OpSpec.make("conv_bn_hswish", c_last, 6 * c_last, 1, kernel=1), f))
    specs.append((OpSpec.make("lraspp", low, num_classes, 1, c_high=6 * c_last, inter=LRASPP_INTER, high_scale=f // 8), 8))
    specs.append((OpSpec.make("resize", num_classes, num_classes, 1, scale=8), 8))
    return specs


STDC_SOURCE = (
    "STDC1-Seg: Fan et al., 'Rethinking BiSeNet for Real-time Semantic Segmentation', CVPR 2021 (STDC modules of "
    "sec. 3.1, STDC1 stages, context path with ARM and FFM on the 1/8 detail feature, sec. 3.2; the training-time "
    "detail loss left out)"
)
DDRNET_SOURCE = (
    "DDRNet-23-slim: Hong et al., 'Deep Dual-resolution Networks for Real-time and Accurate Semantic Segmentation of "
    "Road Scenes', 2021 (high-resolution branch at 1/8, low-resolution branch to 1/64, bilateral fusion, DAPPM; "
    "the two-branch design of BiSeNet V2, Yu et al., IJCV 2021; the training-time auxiliary head left out)"
)

#: STDC1's stages (Fan et al. 2021, Table 1): (C_out, blocks) at 1/8, 1/16, 1/32 after a 32- and a
#: 64-channel stride-2 3x3 conv; STDC2 has 4, 5, 3 blocks (depth 2 comes near it).
STDC1_STAGES = ((256, 2), (512, 2), (1024, 2))
STDC_STEPS = 4  # blocks per STDC module (the published STDC networks' choice)
Layout = dict[str, list[tuple[OpSpec, int]]]


def _flatten(layout: Layout) -> list[tuple[OpSpec, int]]:
    return [item for group in layout.values() for item in group]


def stdc_layout(num_classes: int, width: float = 1.0, depth: float = 1.0) -> Layout:
    """STDC1-Seg's operators by role, in execution order, each with the downsampling factor of its input.

    ``width`` scales every channel count (the stem, the stages, the context path's 128 and the FFM's and
    output head's 256; multiples of 8); ``depth`` scales each stage's run of STDC modules."""
    ch = lambda c: make_divisible(c * width)  # noqa: E731
    layout: Layout = {"stem": [(OpSpec.make("conv_bn_relu", 3, ch(32), 2, kernel=3), 1),
                               (OpSpec.make("conv_bn_relu", ch(32), ch(64), 2, kernel=3), 2)]}
    c, f = ch(64), 4
    for name, (c_out, n) in zip(("stage8", "stage16", "stage32"), STDC1_STAGES):
        blocks = []
        for i in range(scaled_repeats(n, depth)):
            blocks.append((OpSpec.make("stdc_module", c, ch(c_out), 2 if i == 0 else 1, steps=STDC_STEPS), f))
            c, f = ch(c_out), (2 * f if i == 0 else f)
        layout[name] = blocks
    c8, c16, c32 = (ch(c) for c, _ in STDC1_STAGES)
    layout["head"] = [(OpSpec.make("stdc_head", c8, ch(256), 1, c16=c16, c32=c32, inter=ch(128)), 8),
                      (OpSpec.make("seg_head", ch(256), num_classes, 1, mid=ch(256)), 8),
                      (OpSpec.make("resize", num_classes, num_classes, 1, scale=8), 8)]
    return layout


def stdc_specs(num_classes: int, width: float = 1.0, depth: float = 1.0) -> list[tuple[OpSpec, int]]:
    return _flatten(stdc_layout(num_classes, width, depth))


DDRNET_BLOCKS = 2  # DDRNet-23's basic blocks in every run (layers = [2, 2, 2, 2])
#: Scaled DDRNet channel counts are multiples of 4, not 8: the 64-channel high-resolution branch carries
#: most of the cost, and a step of 8 channels there moves the net's latency by about 20%, more than the
#: tolerance a pick at a budget needs.
DDRNET_DIVISOR = 4


def ddrnet_layout(num_classes: int, width: float = 1.0, depth: float = 1.0) -> Layout:
    """DDRNet-23-slim's operators by role, in execution order, each with the downsampling factor of its input.

    ``width`` scales the base width 32 (DDRNet-23-slim; 2 gives DDRNet-23's 64) and every channel count
    that follows it (multiples of :data:`DDRNET_DIVISOR`); DAPPM's 128 branch channels, the same in both
    published nets, shrink below width 1 and stay at 128 above. ``depth`` scales each run of basic blocks (two in
    every stage of both branches); the bottleneck that ends each branch stays one."""
    c1, c2, c4, c8, c16 = (make_divisible(k * 32 * width, DDRNET_DIVISOR) for k in (1, 2, 4, 8, 16))
    n = scaled_repeats(DDRNET_BLOCKS, depth)
    basic = lambda a, b, s=1: OpSpec.make("res_basic", a, b, s)  # noqa: E731

    def run(c_in: int, c_out: int, f: int, stride: int) -> list[tuple[OpSpec, int]]:
        return [(basic(c_in, c_out, stride), f)] + [(basic(c_out, c_out), f * stride) for _ in range(n - 1)]

    return {
        "stem": [(OpSpec.make("conv_bn_relu", 3, c1, 2, kernel=3), 1), (OpSpec.make("conv_bn_relu", c1, c1, 2, kernel=3), 2)],
        "layer1": run(c1, c1, 4, 1),
        "layer2": run(c1, c2, 4, 2),
        "low3": run(c2, c4, 8, 2),
        "high3": run(c2, c2, 8, 1),
        "fuse3": [(OpSpec.make("bilateral_fusion", c2, c2, 1, c_low=c4, down=2), 8)],
        "low4": run(c4, c8, 16, 2),
        "high4": run(c2, c2, 8, 1),
        "fuse4": [(OpSpec.make("bilateral_fusion", c2, c2, 1, c_low=c8, down=4), 8)],
        "high5": [(OpSpec.make("res_bottleneck", c2, c4, 1, planes=c2), 8)],
        "low5": [(OpSpec.make("res_bottleneck", c8, c16, 2, planes=c8), 32)],
        "head": [(OpSpec.make("dappm", c4, c4, 1, c_low=c16, branch=make_divisible(128 * min(width, 1.0), DDRNET_DIVISOR), down=8), 8),
                 (OpSpec.make("seg_head", c4, num_classes, 1, mid=c2), 8),
                 (OpSpec.make("resize", num_classes, num_classes, 1, scale=8), 8)],
    }


def ddrnet_specs(num_classes: int, width: float = 1.0, depth: float = 1.0) -> list[tuple[OpSpec, int]]:
    return _flatten(ddrnet_layout(num_classes, width, depth))


class PeerNet(Network):
    """A hand-designed net whose registered operators run in sequence (ERFNet)."""

    def __init__(self, arch: Arch) -> None:
        super().__init__()
        self.arch = arch
        self.layers = nn.Sequential(*(build_op(spec) for spec, _ in peer_specs(arch)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def signatures(self, h: int, w: int) -> list[OpSignature]:
        return PeerSpace().signatures(self.arch, h, w)


class LRASPPNet(Network):
    """LR-ASPP MobileNetV3: the backbone's operators in sequence, the output of the first block at 1/8
    kept as the low-level feature, the head on (low, deep) and a resize to the input."""

    def __init__(self, arch: Arch) -> None:
        super().__init__()
        self.arch = arch
        specs = peer_specs(arch)
        self.backbone = nn.ModuleList(build_op(spec) for spec, _ in specs[:-2])
        self.head = build_op(specs[-2][0])
        self.upsample = build_op(specs[-1][0])
        # the low tap: the first block whose input is at 1/4 and that halves the resolution
        self.low_index = next(i for i, (spec, f) in enumerate(specs) if f == 4 and spec.stride == 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, low = x, x
        for i, op in enumerate(self.backbone):
            y = op(y)
            if i == self.low_index:
                low = y
        return self.upsample(self.head(low, y), size=x.shape[-2:])

    def signatures(self, h: int, w: int) -> list[OpSignature]:
        return PeerSpace().signatures(self.arch, h, w)


class _LayoutNet(Network):
    """A peer built from a layout (role -> operators): one ``nn.ModuleList`` per role."""

    layout: Callable[..., Layout]

    def __init__(self, arch: Arch) -> None:
        super().__init__()
        self.arch = arch
        g = {k: v for k, v in arch.genotype.items() if k != "model"}
        self.roles = nn.ModuleDict({role: nn.ModuleList(build_op(spec) for spec, _ in ops)
                                    for role, ops in type(self).layout(arch.num_classes, **g).items()})

    @staticmethod
    def chain(ops: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
        for op in ops:
            x = op(x)
        return x

    def signatures(self, h: int, w: int) -> list[OpSignature]:
        return PeerSpace().signatures(self.arch, h, w)


class STDCNet(_LayoutNet):
    """STDC1-Seg (:func:`stdc_layout`): the stem and three stages of STDC modules, the context path and FFM
    on the 1/8, 1/16 and 1/32 stage outputs, the output head and a resize to the input."""

    layout = staticmethod(stdc_layout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.roles
        f8 = self.chain(r["stage8"], self.chain(r["stem"], x))
        f16 = self.chain(r["stage16"], f8)
        f32 = self.chain(r["stage32"], f16)
        fuse, out, resize = r["head"]
        return resize(out(fuse(f8, f16, f32)), size=x.shape[-2:])


class DDRNet(_LayoutNet):
    """DDRNet-23-slim (:func:`ddrnet_layout`): a shared trunk to 1/8, then a high branch kept at 1/8 and a
    low branch halving to 1/64, fused both ways after the 1/16 and 1/32 stages; DAPPM on the low branch
    added to the high one, the output head and a resize to the input."""

    layout = staticmethod(ddrnet_layout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.roles
        trunk = self.chain(r["layer2"], self.chain(r["layer1"], self.chain(r["stem"], x)))
        low = self.chain(r["low3"], trunk)
        high, low = r["fuse3"][0](self.chain(r["high3"], trunk), low)
        low = self.chain(r["low4"], low)
        high, low = r["fuse4"][0](self.chain(r["high4"], high), low)
        high, low = self.chain(r["high5"], high), self.chain(r["low5"], low)
        dappm, out, resize = r["head"]
        return resize(out(dappm(high, low)), size=x.shape[-2:])


@dataclass(frozen=True)
class PeerModel:
    """A peer: its source, its operators as a function of its optional genotype fields, and its net."""

    source: str
    specs: Callable[..., list[tuple[OpSpec, int]]]
    net: Callable[[Arch], Network]
    #: optional genotype field -> (allowed values as a predicate, what the message says is allowed)
    fields: dict[str, tuple[Callable[[Any], bool], str]]


def _number_in(lo: float, hi: float) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and lo <= v <= hi


_SCALE_FIELDS = {"width": (_number_in(0.125, 2.0), "a number in [0.125, 2]"),
                 "depth": (_number_in(0.05, 2.0), "a number in [0.05, 2]")}

#: Peer name -> its definition.
PEERS: dict[str, PeerModel] = {
    "erfnet": PeerModel(ERFNET_SOURCE, erfnet_specs, PeerNet, dict(_SCALE_FIELDS)),
    "lraspp_mbv3": PeerModel(LRASPP_SOURCE, lraspp_mbv3_specs, LRASPPNet,
                             {**_SCALE_FIELDS, "output_stride": (lambda v: v in (8, 16) and not isinstance(v, bool), "8 or 16")}),
    "stdc": PeerModel(STDC_SOURCE, stdc_specs, STDCNet, dict(_SCALE_FIELDS)),
    "ddrnet": PeerModel(DDRNET_SOURCE, ddrnet_specs, DDRNet, dict(_SCALE_FIELDS)),
}
PEER_SOURCES: dict[str, str] = {name: m.source for name, m in PEERS.items()}


def peer_specs(arch: Arch) -> list[tuple[OpSpec, int]]:
    """The (operator, input downsampling factor) list of a peer arch, its optional fields applied."""
    g = dict(arch.genotype)
    return PEERS[g.pop("model")].specs(arch.num_classes, **g)


def _sizes(h: int, w: int, factor: int) -> tuple[int, int]:
    """The size of a feature at ``factor`` after stride-2 convs that round up (exact for multiples)."""
    while factor > 1:
        h, w, factor = (h + 1) // 2, (w + 1) // 2, factor // 2
    return h, w


class PeerSpace(SearchSpace):
    """Hand-designed peers (``{"model": "erfnet"}``, optionally scaled): buildable and measurable, not
    searchable."""

    name = "peer"
    size_divisor = 8  # ERFNet's three stride-2 downsamplers mirrored by three 2x upsamplers
    heads = ("classifier",)

    def validate(self, arch: Arch, source: str = "arch") -> None:
        model = arch.genotype.get("model")
        if model not in PEERS:
            raise RtsegError(f"{source}: genotype.model = {model!r} is not a known peer; known: {', '.join(sorted(PEERS))}")
        fields = PEERS[model].fields
        extra = set(arch.genotype) - {"model"} - set(fields)
        if extra:
            allowed = ", ".join(["model", *fields])
            raise RtsegError(f"{source}: the {model} genotype has unknown fields: {', '.join(sorted(extra))} (allowed: {allowed})")
        for key, (ok, what) in fields.items():
            if key in arch.genotype and not ok(arch.genotype[key]):
                raise RtsegError(f"{source}: genotype.{key} = {arch.genotype[key]!r} is out of range for {model}; use {what}")
        if arch.head not in self.heads:
            raise RtsegError(f"{source}: head {arch.head!r} is not available for peers (use 'classifier')")

    def sample(self, rng: random.Random, num_classes: int = 19, head: str = "classifier") -> Arch:
        raise RtsegError("the peer space is not searchable: it holds fixed hand-designed nets; sample from a search space such as 'ssr'")

    def supernet(self, num_classes: int = 19, relaxation: str | None = None) -> Supernet:
        raise RtsegError("the peer space is not searchable: it has no supernet; search a space such as 'ssr'")

    def build(self, arch: Arch) -> Network:
        self.validate(arch)
        return PEERS[arch.genotype["model"]].net(arch)

    def signatures(self, arch: Arch, h: int, w: int) -> list[OpSignature]:
        self.check_input(h, w)
        return [spec.at(*_sizes(h, w, f)) for spec, f in peer_specs(arch)]

    def candidate_signatures(self, h: int, w: int, num_classes: int = 19, heads: tuple[str, ...] | None = None) -> list[OpSignature]:
        """Every distinct signature of every published peer at ``h x w`` (so ``profile-ops`` can cover
        them; scaled members add signatures of their own)."""
        seen: dict[str, OpSignature] = {}
        for model in sorted(PEERS):
            arch = Arch(self.name, num_classes, {"model": model})
            for s in self.signatures(arch, h, w):
                seen.setdefault(s.key, s)
        return list(seen.values())


@register_space("peer")
def _peer_space() -> PeerSpace:
    return PeerSpace()
