"""The parts of the CAS space (:mod:`rtseg.spaces.cas`): its primitives and config, the cell plan of
a layout, every operator signature of a config (:class:`Layout`), and the decoded cells and stem
that :class:`~rtseg.spaces.cas.CASNet` is built from. The supernet and the space live in
:mod:`rtseg.spaces.cas`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

import torch
from torch import nn

from rtseg.errors import RtsegError
from rtseg.ops import OpSignature, OpSpec, build_op

NONE = "none"
BACKBONE_PRIMITIVES = (
    "identity", "max_pool_3x3", "avg_pool_3x3", "conv_3x3_x2", "sep_conv_3x3_x2", "sep_conv_3x3_x4",
    "dil_conv_3x3_x2", "pooled_conv_x1", "pooled_conv_x2",
)
MS_PRIMITIVES = (
    "conv_3x3_d1", "conv_3x3_d2", "conv_3x3_d4", "conv_3x3_d8", "conv_15x1_1x15", "conv_25x1_1x25",
    "rspp_8", "rspp_16", "rspp_24", "identity",
)
KINDS = ("normal", "reduce", "ms")

_PRIMITIVE_OPS: dict[str, tuple[str, dict[str, Any]]] = {
    "max_pool_3x3": ("pool", {"mode": "max", "kernel": 3}),
    "avg_pool_3x3": ("pool", {"mode": "avg", "kernel": 3}),
    "conv_3x3_x2": ("relu_conv_bn", {"kernel": 3, "dilation": 1, "repeat": 2}),
    "sep_conv_3x3_x2": ("sep_conv", {"kernel": 3, "repeat": 2}),
    "sep_conv_3x3_x4": ("sep_conv", {"kernel": 3, "repeat": 4}),
    "dil_conv_3x3_x2": ("relu_conv_bn", {"kernel": 3, "dilation": 2, "repeat": 2}),
    "pooled_conv_x1": ("pooled_conv", {"repeat": 1}),
    "pooled_conv_x2": ("pooled_conv", {"repeat": 2}),
    **{f"conv_3x3_d{d}": ("relu_conv_bn", {"kernel": 3, "dilation": d, "repeat": 1}) for d in (1, 2, 4, 8)},
    "conv_15x1_1x15": ("decomposed_conv", {"kernel": 15}),
    "conv_25x1_1x25": ("decomposed_conv", {"kernel": 25}),
    **{f"rspp_{w}": ("rspp", {"window": w}) for w in (8, 16, 24)},
}


def primitive_spec(name: str, c: int, stride: int = 1) -> OpSpec:
    """The registered operator a primitive name stands for, at width ``c`` (identity with stride 2 is
    the factorized reduction of DARTS)."""
    if name == "identity":
        return OpSpec.make("identity", c, c, 1) if stride == 1 else OpSpec.make("factorized_reduce", c, c, 2)
    op_type, hp = _PRIMITIVE_OPS[name]
    return OpSpec.make(op_type, c, c, stride, **hp)


def proj_spec(c_in: int, c_out: int) -> OpSpec:
    return OpSpec.make("relu_conv_bn", c_in, c_out, 1, kernel=1, dilation=1, repeat=1)


def edge_pairs(nodes: int) -> list[tuple[int, int]]:
    """(node, input) of every edge of a cell with ``nodes`` intermediate nodes, in execution order."""
    return [(j, i) for j in range(nodes) for i in range(j + 2)]


def edge_name(kind: str, node: int, inp: int) -> str:
    return f"{kind}.node{node}.in{inp}"


@dataclass(frozen=True)
class CASConfig:
    stem: tuple[int, int, int] = (16, 16, 32)
    width: int = 8
    layout: str = "NNRNNRNN"
    nodes: int = 3
    ms_nodes: int = 3
    ms_width: int = 16
    ms_from: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(getattr(self, f.name)) if f.name == "stem" else getattr(self, f.name)) for f in fields(self)}

    @staticmethod
    def from_dict(d: Any, source: str = "arch") -> "CASConfig":
        where = f"{source}: genotype.config"
        if not isinstance(d, Mapping):
            raise RtsegError(f"{where} must be a JSON object")
        names = {f.name for f in fields(CASConfig)}
        extra = set(d) - names
        if extra:
            raise RtsegError(f"{where} has unknown fields: {', '.join(sorted(extra))} (known: {', '.join(sorted(names))})")
        kw: dict[str, Any] = {}
        for key in ("width", "nodes", "ms_nodes", "ms_width", "ms_from"):
            if key in d:
                v = d[key]
                if not isinstance(v, int) or isinstance(v, bool) or v < (0 if key == "ms_from" else 1):
                    raise RtsegError(f"{where}.{key} must be a positive integer, got {v!r}")
                kw[key] = v
        if "stem" in d:
            s = d["stem"]
            if not isinstance(s, list) or len(s) != 3 or not all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in s):
                raise RtsegError(f"{where}.stem must list three positive widths, got {s!r}")
            kw["stem"] = tuple(s)
        if "layout" in d:
            kw["layout"] = d["layout"]
        cfg = CASConfig(**kw)
        lay = cfg.layout
        if not isinstance(lay, str) or len(lay) < 2 or set(lay) - {"N", "R"} or lay.count("R") > 2:
            raise RtsegError(f"{where}.layout must be a string of at least 2 cells N (normal) / R (reduction) with at most two R, got {lay!r}")
        if cfg.width % 2:
            raise RtsegError(f"{where}.width must be even (reduction edges split it in two), got {cfg.width}")
        if cfg.ms_from >= len(lay) - 1:
            raise RtsegError(f"{where}.ms_from must index a cell before the last (0..{len(lay) - 2}), got {cfg.ms_from}")
        return cfg


@dataclass(frozen=True)
class CellPlan:
    """Widths and resolutions (as input/feature ratios) of one cell of the backbone."""

    kind: str
    c_pp: int
    c_p: int
    c: int
    down_pp: int
    down_p: int
    down_out: int

    @property
    def reduction(self) -> bool:
        return self.kind == "reduce"


def cell_plans(cfg: CASConfig) -> list[CellPlan]:
    plans = []
    c_pp, c_p, c = cfg.stem[1], cfg.stem[2], cfg.width
    down_pp, down_p = 2, 4
    for t in cfg.layout:
        red = t == "R"
        if red:
            c *= 2
        down_out = down_p * 2 if red else down_p
        plans.append(CellPlan("reduce" if red else "normal", c_pp, c_p, c, down_pp, down_p, down_out))
        c_pp, c_p, down_pp, down_p = c_p, cfg.nodes * c, down_p, down_out
    return plans


def _at(spec: OpSpec, h: int, w: int, down: int) -> OpSignature:
    return spec.at(h // down, w // down)


class Layout:
    """Every signature of one config at one input size, grouped the way the networks run them."""

    def __init__(self, cfg: CASConfig, h: int, w: int, num_classes: int) -> None:
        self.cfg, self.plans = cfg, cell_plans(cfg)
        s = cfg.stem
        self.stem = [
            _at(OpSpec.make("conv_bn_relu", 3, s[0], 2, kernel=3), h, w, 1),
            _at(OpSpec.make("conv_bn_relu", s[0], s[1], 1, kernel=3), h, w, 2),
            _at(OpSpec.make("conv_bn_relu", s[1], s[2], 2, kernel=3), h, w, 2),
        ]
        self.pre: list[tuple[OpSignature, OpSignature]] = []
        for p in self.plans:
            pre0 = OpSpec.make("factorized_reduce", p.c_pp, p.c, 2) if p.down_pp != p.down_p else proj_spec(p.c_pp, p.c)
            self.pre.append((_at(pre0, h, w, p.down_pp), _at(proj_spec(p.c_p, p.c), h, w, p.down_p)))
        hi, lo = self.plans[cfg.ms_from], self.plans[-1]
        self.ms_in = (cfg.nodes * hi.c, cfg.nodes * lo.c)
        self.ms_down, factor = hi.down_out, lo.down_out // hi.down_out
        self.ms_align = _at(OpSpec.make("resize", self.ms_in[1], self.ms_in[1], 1, scale=factor), h, w, lo.down_out) if factor > 1 else None
        c_out = cfg.ms_nodes * cfg.ms_width
        self.head = [
            _at(OpSpec.make("classifier", c_out, num_classes, 1), h, w, self.ms_down),
            _at(OpSpec.make("resize", num_classes, num_classes, 1, scale=self.ms_down), h, w, self.ms_down),
        ]
        self.h, self.w = h, w

    def fixed(self) -> list[OpSignature]:
        out = list(self.stem)
        for a, b in self.pre:
            out += [a, b]
        if self.ms_align is not None:
            out.append(self.ms_align)
        return out + self.head

    def edge(self, ci: int, op: str, inp: int) -> OpSignature:
        p = self.plans[ci]
        stride = 2 if p.reduction and inp < 2 else 1
        return _at(primitive_spec(op, p.c, stride), self.h, self.w, p.down_p if inp < 2 else p.down_out)

    def ms_proj(self, inp: int) -> OpSignature:
        return _at(proj_spec(self.ms_in[inp], self.cfg.ms_width), self.h, self.w, self.ms_down)

    def ms_edge(self, op: str) -> OpSignature:
        return _at(primitive_spec(op, self.cfg.ms_width, 1), self.h, self.w, self.ms_down)

    def choice_signatures(self, kind: str, node: int, inp: int) -> list[list[OpSignature]]:
        """Per choice of decision ``kind.node.in`` (index 0 = none), the signatures it places."""
        if kind == "ms":
            extra = [self.ms_proj(inp)] if inp < 2 else []
            return [[]] + [extra + [self.ms_edge(op)] for op in MS_PRIMITIVES]
        cells = [ci for ci, p in enumerate(self.plans) if p.kind == kind]
        return [[]] + [[self.edge(ci, op, inp) for ci in cells] for op in BACKBONE_PRIMITIVES]


def primitives(kind: str) -> tuple[str, ...]:
    return MS_PRIMITIVES if kind == "ms" else BACKBONE_PRIMITIVES


def node_count(cfg: CASConfig, kind: str) -> int:
    return cfg.ms_nodes if kind == "ms" else cfg.nodes


# -- the decoded cells ---------------------------------------------------------------------------


class CASCell(nn.Module):
    """A decoded normal or reduction cell: two input projections and two operations per node."""

    def __init__(self, plan: CellPlan, rows: list[list[list[Any]]]) -> None:
        super().__init__()
        pre0 = OpSpec.make("factorized_reduce", plan.c_pp, plan.c, 2) if plan.down_pp != plan.down_p else proj_spec(plan.c_pp, plan.c)
        self.pre0 = build_op(pre0)
        self.pre1 = build_op(proj_spec(plan.c_p, plan.c))
        self.inputs = [int(i) for row in rows for _, i in row]
        self.edges = nn.ModuleList(
            build_op(primitive_spec(op, plan.c, 2 if plan.reduction and int(i) < 2 else 1)) for row in rows for op, i in row
        )

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        for j in range(len(self.edges) // 2):
            a, b = 2 * j, 2 * j + 1
            states.append(self.edges[a](states[self.inputs[a]]) + self.edges[b](states[self.inputs[b]]))
        return torch.cat(states[2:], dim=1)


class MSCell(nn.Module):
    """A decoded multi-scale cell: the low-resolution input is upsampled to the high one, every edge
    from an input node has its own 1x1 projection to ``ms_width``."""

    def __init__(self, cfg: CASConfig, c_in: tuple[int, int], factor: int, rows: list[list[list[Any]]]) -> None:
        super().__init__()
        self.align = build_op(OpSpec.make("resize", c_in[1], c_in[1], 1, scale=factor)) if factor > 1 else None
        self.inputs = [int(i) for row in rows for _, i in row]
        self.proj = nn.ModuleDict({str(k): build_op(proj_spec(c_in[i], cfg.ms_width)) for k, i in enumerate(self.inputs) if i < 2})
        self.edges = nn.ModuleList(build_op(primitive_spec(op, cfg.ms_width, 1)) for row in rows for op, _ in row)

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        if self.align is not None:
            low = self.align(low, size=high.shape[-2:])
        states = [high, low]
        for j in range(len(self.edges) // 2):
            y: torch.Tensor | None = None
            for k in (2 * j, 2 * j + 1):
                t = states[self.inputs[k]]
                if str(k) in self.proj:
                    t = self.proj[str(k)](t)
                t = self.edges[k](t)
                y = t if y is None else y + t
            assert y is not None
            states.append(y)
        return torch.cat(states[2:], dim=1)


class Stem(nn.Module):
    """conv3x3 s2 (H/2) -> conv3x3 (H/2) -> conv3x3 s2 (H/4); the last two outputs are the first cell's inputs."""

    def __init__(self, cfg: CASConfig) -> None:
        super().__init__()
        s = cfg.stem
        self.convs = nn.ModuleList([
            build_op(OpSpec.make("conv_bn_relu", 3, s[0], 2, kernel=3)),
            build_op(OpSpec.make("conv_bn_relu", s[0], s[1], 1, kernel=3)),
            build_op(OpSpec.make("conv_bn_relu", s[1], s[2], 2, kernel=3)),
        ])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.convs[0](x)
        x1 = self.convs[1](x)
        return x1, self.convs[2](x1)
