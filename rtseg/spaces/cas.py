"""The CAS search space (Zhang, Qiu, Liu, Yao, Liu, Mei, "Customizable Architecture Search for Semantic
Segmentation", CVPR 2019, sec. 3.1-3.4 and 4.1): DARTS-style cells with per-operator costs.

Macro structure (input H x W, Fig. 3)::

    stem: conv3x3 s2 (H/2) -> conv3x3 (H/2) -> conv3x3 s2 (H/4)
    cells, ``layout`` (default NNRNNRNN: 6 normal, 2 reduction; output stride 16); the width C doubles
        at every reduction cell, a cell outputs the concatenation of its N intermediate nodes (N x C)
    multi-scale cell on the output of cell ``ms_from`` (default the second normal cell, H/4) and the
        last cell's output, upsampled to it -> 1x1 classifier -> bilinear upsampling to H x W

A cell is a DAG (eq. 2): two input nodes (the outputs of the previous two cells or stem layers, each
projected to C by a 1x1 ReLU-Conv-BN, or by a factorized reduction when it comes from before a
reduction), N intermediate nodes, each the sum of an operation on each of its predecessors; the
output is their concatenation. During search every edge is a mixed operation (eq. 3) over the
backbone set O_b (normal and reduction cells; α_normal and α_reduce are shared by all cells of a kind,
weights are not) or the multi-scale set O_ms, plus ``none`` (search only, sec. 4.1). In the
multi-scale cell each edge from an input node has its own 1x1 projection to ``ms_width``
(sec. 3.4). Decoding keeps the strongest non-``none`` operation of every edge and the two strongest
edges (strength = that operation's probability) of every node (sec. 3.1, k = 2).

The CAS cost (eq. 5) is ``sum over edges and operations of p(o) * c_o``; :meth:`CASSupernet.expected_cost`
takes c_o from any per-signature cost (a measured LUT, FLOPs), so ``none`` costs 0 and the fixed parts
(stem, projections, head) add their cost with probability 1.

Choices where the seed is vague (its Fig. 3 is not in the text): the position of the reduction cells
(NNRNNRNN, so the second normal cell, which feeds the multi-scale cell, runs at 1/4); both pooled
convolutions of the seed's list (one and two 3x3 convs inside the 2x2 pool / upsample pair); the
first cell takes the second (1/2) and third (1/4) stem convs as its inputs ("the outputs of the
(i-1)-th and (i-2)-th cells or layers"); normal cells use 3 intermediate nodes and the multi-scale cell
3 by default. The paper's cells have N = 6 and N = 9 nodes counting the two input nodes and the output
node (sec. 3.3-3.4), i.e. 3 and 6 intermediate nodes: ``--space-opt ms_nodes=6`` reaches that scale,
``width``, ``ms_width``, ``stem`` and ``layout`` scale the rest (:meth:`CASSpace.with_options`). The whole
config is recorded in the genotype, so an arch JSON rebuilds its network without this default.

Genotype::

    {"config": {"stem": [16, 16, 32], "width": 8, "layout": "NNRNNRNN", "nodes": 3,
                "ms_nodes": 3, "ms_width": 16, "ms_from": 1},
     "normal": [[["sep_conv_3x3_x2", 0], ["identity", 1]], ...],   # per node: two [op, input] pairs
     "reduce": [...], "ms": [...]}

Inputs 0 and 1 are the cell's input nodes (0: the older one), 2.. the intermediate nodes.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Mapping

import torch
from torch import nn

from rtseg.arch import Arch
from rtseg.errors import RtsegError
from rtseg.ops import OpSignature, OpSpec, build_op
from rtseg.spaces.base import Decision, Network, SearchSpace, Supernet, register_space
from rtseg.spaces.cas_cells import (BACKBONE_PRIMITIVES, KINDS, MS_PRIMITIVES, NONE, CASCell, CASConfig, CellPlan, Layout, MSCell, Stem,
                                    cell_plans, edge_name, edge_pairs, node_count, primitive_spec, primitives, proj_spec)


# -- the decoded network -------------------------------------------------------------------------


class CASNet(Network):
    """A decoded network of the CAS space, built only from registered operators."""

    def __init__(self, arch: Arch, config: CASConfig) -> None:
        super().__init__()
        self.arch, self.config = arch, config
        plans = cell_plans(config)
        self.stem = Stem(config)
        self.cells = nn.ModuleList(CASCell(p, arch.genotype[p.kind]) for p in plans)
        hi, lo = plans[config.ms_from], plans[-1]
        self.ms = MSCell(config, (config.nodes * hi.c, config.nodes * lo.c), lo.down_out // hi.down_out, arch.genotype["ms"])
        nc = arch.num_classes
        self.head = build_op(OpSpec.make("classifier", config.ms_nodes * config.ms_width, nc, 1))
        self.upsample = build_op(OpSpec.make("resize", nc, nc, 1, scale=hi.down_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0, s1 = self.stem(x)
        outs = []
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
            outs.append(s1)
        y = self.ms(outs[self.config.ms_from], outs[-1])
        return self.upsample(self.head(y), size=x.shape[-2:])

    def signatures(self, h: int, w: int) -> list[OpSignature]:
        return CASSpace(self.config).signatures(self.arch, h, w)


# -- the supernet ---------------------------------------------------------------------------------


class MixedEdge(nn.Module):
    """An edge during search: ``sum_o p(o) * o(x)`` over the surviving operations (eq. 3); choice 0 is
    ``none`` (no module, contributes nothing)."""

    def __init__(self, specs: list[OpSpec]) -> None:
        super().__init__()
        self.ops = nn.ModuleList(build_op(s) for s in specs)

    def forward(self, x: torch.Tensor, p: torch.Tensor, alive: list[bool]) -> torch.Tensor | None:
        out: torch.Tensor | None = None
        for k, op in enumerate(self.ops):
            if alive[k + 1]:
                y = p[k + 1] * op(x)
                out = y if out is None else out + y
        return out

    def remove(self, choice: int) -> None:
        self.ops[choice - 1] = nn.Identity()  # frees the weights; never called once dead


class MixedCell(nn.Module):
    def __init__(self, plan: CellPlan, nodes: int) -> None:
        super().__init__()
        pre0 = OpSpec.make("factorized_reduce", plan.c_pp, plan.c, 2) if plan.down_pp != plan.down_p else proj_spec(plan.c_pp, plan.c)
        self.pre0 = build_op(pre0)
        self.pre1 = build_op(proj_spec(plan.c_p, plan.c))
        self.plan, self.nodes = plan, nodes
        self.edges = nn.ModuleList(
            MixedEdge([primitive_spec(op, plan.c, 2 if plan.reduction and i < 2 else 1) for op in BACKBONE_PRIMITIVES])
            for _, i in edge_pairs(nodes)
        )

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: list[tuple[torch.Tensor, list[bool]]]) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        pairs = edge_pairs(self.nodes)
        e = 0
        for j in range(self.nodes):
            y: torch.Tensor | None = None
            for i in range(j + 2):
                assert pairs[e] == (j, i)
                t = self.edges[e](states[i], *weights[e])
                e += 1
                if t is not None:
                    y = t if y is None else y + t
            if y is None:  # every edge of this node is "none"
                s = 2 if self.plan.reduction else 1
                ref = states[1]
                y = ref.new_zeros(ref.shape[0], self.plan.c, (ref.shape[-2] + s - 1) // s, (ref.shape[-1] + s - 1) // s)
            states.append(y)
        return torch.cat(states[2:], dim=1)


class MixedMSCell(nn.Module):
    def __init__(self, cfg: CASConfig, c_in: tuple[int, int], factor: int) -> None:
        super().__init__()
        self.align = build_op(OpSpec.make("resize", c_in[1], c_in[1], 1, scale=factor)) if factor > 1 else None
        self.nodes = cfg.ms_nodes
        pairs = edge_pairs(cfg.ms_nodes)
        self.proj = nn.ModuleDict({str(e): build_op(proj_spec(c_in[i], cfg.ms_width)) for e, (_, i) in enumerate(pairs) if i < 2})
        self.edges = nn.ModuleList(MixedEdge([primitive_spec(op, cfg.ms_width, 1) for op in MS_PRIMITIVES]) for _ in pairs)

    def forward(self, high: torch.Tensor, low: torch.Tensor, weights: list[tuple[torch.Tensor, list[bool]]]) -> torch.Tensor:
        if self.align is not None:
            low = self.align(low, size=high.shape[-2:])
        states = [high, low]
        e = 0
        for j in range(self.nodes):
            y: torch.Tensor | None = None
            for i in range(j + 2):
                p, alive = weights[e]
                if any(alive[1:]):
                    t = states[i]
                    if str(e) in self.proj:
                        t = self.proj[str(e)](t)
                    t = self.edges[e](t, p, alive)
                    y = t if y is None else y + t
                e += 1
            if y is None:
                y = high.new_zeros(high.shape[0], self.proj["0"].spec.c_out, high.shape[-2], high.shape[-1])
            states.append(y)
        return torch.cat(states[2:], dim=1)


class CASSupernet(Supernet):
    """Weight-sharing supernet of the CAS space (DARTS continuous relaxation, eq. 3).

    Decisions are named ``{kind}.node{j}.in{i}`` (level = kind: ``normal``, ``reduce``, ``ms``), with
    choices ``["none", *primitives]``; α of a kind is shared by all its cells (sec. 3.3)."""

    def __init__(self, num_classes: int = 19, config: CASConfig | None = None, relaxation: str = "softmax") -> None:
        nn.Module.__init__(self)
        self.config = config or CASConfig()
        self.num_classes, self.relaxation = num_classes, relaxation
        self.plans = cell_plans(self.config)
        self.stem = Stem(self.config)
        self.cells = nn.ModuleList(MixedCell(p, self.config.nodes) for p in self.plans)
        hi, lo = self.plans[self.config.ms_from], self.plans[-1]
        cfg = self.config
        self.ms = MixedMSCell(cfg, (cfg.nodes * hi.c, cfg.nodes * lo.c), lo.down_out // hi.down_out)
        self.head = build_op(OpSpec.make("classifier", cfg.ms_nodes * cfg.ms_width, num_classes, 1))
        self.upsample = build_op(OpSpec.make("resize", num_classes, num_classes, 1, scale=hi.down_out))
        self._init_decisions()
        for kind in KINDS:
            for j, i in edge_pairs(node_count(cfg, kind)):
                self._add_decision(edge_name(kind, j, i), kind, [NONE, *primitives(kind)])
        self._cost_cache: list[tuple[Any, int, int, dict[str, torch.Tensor], float]] = []

    # -- decisions ------------------------------------------------------------------------------
    def active_decisions(self) -> list[Decision]:
        """Decisions of the kinds present in the layout (a layout without R has no reduce cells)."""
        kinds = {p.kind for p in self.plans} | {"ms"}
        return [d for d in self.decisions() if d.level in kinds]

    def drop_weights(self, name: str, index: int) -> None:
        """Remove candidate ``index`` of ``name`` from every cell of that kind (``none`` has no weights)."""
        if index == 0:
            return
        kind, e = _parse_edge(name, self.config)
        if kind == "ms":
            self.ms.edges[e].remove(index)
        else:
            for p, cell in zip(self.plans, self.cells):
                if p.kind == kind:
                    cell.edges[e].remove(index)

    def regularization(self) -> dict[str, torch.Tensor]:
        """CAS adds no regularizer of its own (its loss is eq. 1: L_val + λ L_cost)."""
        return {}

    #: Shrinking order (:func:`rtseg.search.objective.shrink`): the cell kinds are independent.
    shrink_levels = KINDS

    def can_remove(self, name: str, index: int) -> bool:
        """Whether shrinking may remove candidate ``index`` of edge ``name``: not when that leaves the
        edge only ``none`` while its node keeps fewer than two edges with an operation, because
        decoding gives every node two edges (sec. 3.1, k = 2)."""
        alive = self._alive(name)
        if index == 0 or int(alive[1:].sum()) - int(bool(alive[index])) > 0:
            return True
        kind, node, _ = name.split(".")
        j = int(node[len("node"):])
        with_op = sum(1 for i in range(j + 2) if bool(self._alive(edge_name(kind, j, i))[1:].any()))
        return with_op - 1 >= 2

    def on_epoch(self, epoch: int, total_epochs: int) -> None:
        """Nothing is scheduled per epoch in CAS."""

    # -- forward --------------------------------------------------------------------------------
    def _weights(self, kind: str) -> list[tuple[torch.Tensor, list[bool]]]:
        return [(self.probs(edge_name(kind, j, i)), self._alive(edge_name(kind, j, i)).tolist())
                for j, i in edge_pairs(node_count(self.config, kind))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = {kind: self._weights(kind) for kind in KINDS}
        s0, s1 = self.stem(x)
        outs = []
        for p, cell in zip(self.plans, self.cells):
            s0, s1 = s1, cell(s0, s1, weights[p.kind])
            outs.append(s1)
        y = self.ms(outs[self.config.ms_from], outs[-1], weights["ms"])
        return self.upsample(self.head(y), size=x.shape[-2:])

    # -- discrete <-> relaxed -------------------------------------------------------------------
    def _best_op(self, name: str) -> tuple[int, float] | None:
        """Strongest surviving non-none choice of an edge and its probability (DARTS edge strength)."""
        with torch.no_grad():
            p = self.probs(name).clone()
        alive = self._alive(name)
        p[~alive] = -1.0
        p[0] = -1.0
        k = int(torch.argmax(p))
        return None if float(p[k]) < 0 else (k, float(p[k]))

    def argmax_choices(self) -> dict[str, int]:
        """The choices :meth:`decode` makes: on the two strongest edges of every node their strongest
        operation, ``none`` (0) elsewhere."""
        out: dict[str, int] = {}
        for kind in KINDS:
            n = node_count(self.config, kind)
            for j in range(n):
                ranked = []
                for i in range(j + 2):
                    best = self._best_op(edge_name(kind, j, i))
                    if best is not None:
                        ranked.append((-best[1], i, best[0]))
                ranked.sort()
                keep = {i: k for _, i, k in ranked[:2]}
                for i in range(j + 2):
                    out[edge_name(kind, j, i)] = keep.get(i, 0)
        return out

    def arch_from_choices(self, choices: Mapping[str, int], name: str | None = None) -> Arch:
        """The discrete arch of a choice per edge: edges whose choice is not ``none`` are selected;
        a node keeps the two selected edges of highest probability, and is filled up with its
        strongest other edges if fewer than two are selected."""
        geno: dict[str, Any] = {"config": self.config.to_dict()}
        for kind in KINDS:
            prims = primitives(kind)
            rows = []
            for j in range(node_count(self.config, kind)):
                ranked = []
                for i in range(j + 2):
                    nm = edge_name(kind, j, i)
                    c = int(choices[nm])
                    if c != 0:
                        with torch.no_grad():
                            ranked.append((0, -float(self.probs(nm)[c]), i, c))
                    else:
                        best = self._best_op(nm)
                        if best is not None:
                            ranked.append((1, -best[1], i, best[0]))
                ranked.sort()
                if len(ranked) < 2:
                    raise ValueError(f"{kind} node {j} has fewer than two edges with a surviving operation")
                rows.append([[prims[c - 1], i] for _, _, i, c in sorted(ranked[:2], key=lambda t: t[2])])
            geno[kind] = rows
        return Arch("cas", self.num_classes, geno, head="classifier", name=name)

    def decode(self, name: str | None = None) -> Arch:
        """Strongest operation per edge, two strongest edges per node (CAS paper, sec. 3.1)."""
        return self.arch_from_choices(self.argmax_choices(), name=name)

    def choices_of(self, arch: Arch) -> dict[str, int]:
        """The choice index per decision that ``arch`` makes (``none`` on the edges it drops)."""
        out: dict[str, int] = {}
        for kind in KINDS:
            prims = primitives(kind)
            for j, row in enumerate(arch.genotype[kind]):
                used = {int(i): prims.index(op) + 1 for op, i in row}
                for i in range(j + 2):
                    out[edge_name(kind, j, i)] = used.get(i, 0)
        return out

    def fix(self, arch: Arch) -> None:
        """Keep only the choices ``arch`` makes (its operations, ``none`` elsewhere), so the supernet
        computes exactly that arch."""
        space = CASSpace(self.config)
        space.validate(arch)
        if space.config_of(arch) != self.config:
            raise RtsegError("the arch was made for another CAS config than this supernet's")
        for name, idx in self.choices_of(arch).items():
            self._keep_only(name, [idx])

    def derive_weights(self, arch: Arch) -> dict[str, torch.Tensor]:
        """The state dict of ``CASNet(arch)`` holding this supernet's weights for that arch."""
        net = CASSpace(self.config).build(arch)
        src = self.state_dict()
        sd: dict[str, torch.Tensor] = {}

        def copy(src_prefix: str, dst_prefix: str) -> None:
            n = 0
            for k, t in src.items():
                if k.startswith(src_prefix):
                    sd[dst_prefix + k[len(src_prefix):]] = t.clone()
                    n += 1

        for prefix in ("stem.", "head.", "upsample.", "ms.align."):
            copy(prefix, prefix)
        pairs = {kind: edge_pairs(node_count(self.config, kind)) for kind in KINDS}
        for ci, p in enumerate(self.plans):
            copy(f"cells.{ci}.pre0.", f"cells.{ci}.pre0.")
            copy(f"cells.{ci}.pre1.", f"cells.{ci}.pre1.")
            k = 0
            for j, row in enumerate(arch.genotype[p.kind]):
                for op, i in row:
                    e = pairs[p.kind].index((j, int(i)))
                    copy(f"cells.{ci}.edges.{e}.ops.{BACKBONE_PRIMITIVES.index(op)}.", f"cells.{ci}.edges.{k}.")
                    k += 1
        k = 0
        for j, row in enumerate(arch.genotype["ms"]):
            for op, i in row:
                e = pairs["ms"].index((j, int(i)))
                if int(i) < 2:
                    copy(f"ms.proj.{e}.", f"ms.proj.{k}.")
                copy(f"ms.edges.{e}.ops.{MS_PRIMITIVES.index(op)}.", f"ms.edges.{k}.")
                k += 1
        net.load_state_dict(sd, strict=True)
        return sd

    # -- expected cost ---------------------------------------------------------------------------
    def _cost_tables(self, cost: Callable[[OpSignature], float], h: int, w: int) -> tuple[dict[str, torch.Tensor], float]:
        for fn, ch, cw, tables, fixed in self._cost_cache:
            if fn == cost and (ch, cw) == (h, w):
                return tables, fixed
        lay = Layout(self.config, h, w, self.num_classes)
        fixed = float(sum(float(cost(s)) for s in lay.fixed()))
        tables = {}
        for kind in KINDS:
            for j, i in edge_pairs(node_count(self.config, kind)):
                per_choice = lay.choice_signatures(kind, j, i)
                tables[edge_name(kind, j, i)] = torch.tensor([sum(float(cost(s)) for s in sigs) for sigs in per_choice])
        self._cost_cache = ([(cost, h, w, tables, fixed)] + self._cost_cache)[:4]
        return tables, fixed

    def expected_cost(self, cost: Callable[[OpSignature], float], h: int, w: int) -> torch.Tensor:
        """E[cost] = fixed parts + sum over edges and choices of p(o) * c_o (CAS eq. 5), differentiable
        in the α. A decision shared by several cells pays each cell's cost of the operation; an edge of
        the multi-scale cell from an input node pays its projection with every non-none choice."""
        tables, fixed = self._cost_tables(cost, h, w)
        device = next(iter(self.alphas.values())).device
        total = torch.tensor(fixed, device=device)
        for name, vec in tables.items():
            total = total + (self.probs(name) * vec.to(device)).sum()
        return total


def _parse_edge(name: str, cfg: CASConfig) -> tuple[str, int]:
    kind, node, inp = name.split(".")
    pair = (int(node[len("node"):]), int(inp[len("in"):]))
    return kind, edge_pairs(node_count(cfg, kind)).index(pair)


# -- the space ------------------------------------------------------------------------------------


class CASSpace(SearchSpace):
    name = "cas"
    size_divisor = 32  # output stride 16 and the pooled convolution's extra 2x2 pool
    heads = ("classifier",)  # the multi-scale cell and a 1x1 classifier

    default_reg = "none"  # CAS's loss is eq. 1, L_val + λ L_cost: no regularizer of its own
    reference_arch = "cas_ref"  # its cells at the supernet's own sizes seed the default search

    def __init__(self, config: CASConfig | None = None) -> None:
        self.config = config or CASConfig()

    def options(self) -> dict[str, Any]:
        default, mine = CASConfig().to_dict(), self.config.to_dict()
        return {k: v for k, v in mine.items() if v != default[k]}

    def with_options(self, options: Mapping[str, Any]) -> "CASSpace":
        """Sizes of the CAS config: ``width`` (C of the first cells), ``nodes`` and ``ms_nodes``
        (intermediate nodes of a backbone and of the multi-scale cell), ``ms_width``, ``layout``,
        ``stem`` and ``ms_from`` (see the module docstring for the paper's scale)."""
        return CASSpace(CASConfig.from_dict({**self.config.to_dict(), **dict(options)}, source="--space-opt (space cas)"))

    def config_of(self, arch: Arch, source: str = "arch") -> CASConfig:
        """The config an arch records (the space default when its genotype has none)."""
        if "config" not in arch.genotype:
            return self.config
        return CASConfig.from_dict(arch.genotype["config"], source)

    # -- validation -----------------------------------------------------------------------------
    def validate(self, arch: Arch, source: str = "arch") -> None:
        if arch.head not in self.heads:
            raise RtsegError(f"{source}: head {arch.head!r} is not one of {', '.join(self.heads)}")
        g = arch.genotype
        extra = set(g) - {"config", *KINDS}
        if extra:
            raise RtsegError(f"{source}: genotype has unknown fields: {', '.join(sorted(extra))} (expected config, normal, reduce, ms)")
        cfg = self.config_of(arch, source)
        for kind in KINDS:
            n, prims = node_count(cfg, kind), primitives(kind)
            where = f"{source}: genotype.{kind}"
            rows = g.get(kind)
            if rows is None:
                raise RtsegError(f"{where} is missing: list {n} nodes, each two [operation, input] pairs")
            if not isinstance(rows, list) or len(rows) != n:
                got = len(rows) if isinstance(rows, list) else type(rows).__name__
                raise RtsegError(f"{where} must list {n} nodes (genotype.config.{'ms_nodes' if kind == 'ms' else 'nodes'}), got {got}")
            for j, row in enumerate(rows):
                w = f"{where}[{j}]"
                if not isinstance(row, list) or len(row) != 2:
                    raise RtsegError(f"{w} must be two [operation, input] pairs")
                seen = set()
                for pair in row:
                    if not isinstance(pair, list) or len(pair) != 2:
                        raise RtsegError(f"{w} must be two [operation, input] pairs, got {pair!r}")
                    op, i = pair
                    if op not in prims:
                        raise RtsegError(f"{w}: {op!r} is not a {kind} operation; allowed: {', '.join(prims)}")
                    if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < j + 2:
                        raise RtsegError(f"{w}: input {i!r} is out of range; node {j} takes inputs 0..{j + 1}")
                    if i in seen:
                        raise RtsegError(f"{w}: input {i} is used twice; a node combines two different inputs")
                    seen.add(i)

    # -- sampling, building ---------------------------------------------------------------------
    def sample(self, rng: random.Random, num_classes: int = 19, head: str = "classifier") -> Arch:
        geno: dict[str, Any] = {"config": self.config.to_dict()}
        for kind in KINDS:
            prims = primitives(kind)
            geno[kind] = [
                [[rng.choice(prims), i] for i in sorted(rng.sample(range(j + 2), 2))] for j in range(node_count(self.config, kind))
            ]
        return Arch("cas", num_classes, geno, head=head)

    def build(self, arch: Arch) -> CASNet:
        self.validate(arch)
        return CASNet(arch, self.config_of(arch))

    def supernet(self, num_classes: int = 19, relaxation: str | None = None) -> CASSupernet:
        return CASSupernet(num_classes, self.config, relaxation=relaxation or "softmax")

    # -- signatures -----------------------------------------------------------------------------
    def fixed_signatures(self, h: int, w: int, num_classes: int = 19, config: CASConfig | None = None) -> list[OpSignature]:
        """Parts every arch of a config has: stem, cell input projections, the multi-scale cell's
        upsampling, classifier and final resize."""
        return Layout(config or self.config, h, w, num_classes).fixed()

    def signatures(self, arch: Arch, h: int, w: int) -> list[OpSignature]:
        """Signatures in execution order."""
        cfg = self.config_of(arch)
        lay = Layout(cfg, h, w, arch.num_classes)
        sigs = list(lay.stem)
        for ci, p in enumerate(lay.plans):
            sigs += list(lay.pre[ci])
            for row in arch.genotype[p.kind]:
                sigs += [lay.edge(ci, op, int(i)) for op, i in row]
        if lay.ms_align is not None:
            sigs.append(lay.ms_align)
        for row in arch.genotype["ms"]:
            for op, i in row:
                if int(i) < 2:
                    sigs.append(lay.ms_proj(int(i)))
                sigs.append(lay.ms_edge(op))
        return sigs + lay.head

    def candidate_signatures(self, h: int, w: int, num_classes: int = 19, heads: tuple[str, ...] | None = None) -> list[OpSignature]:
        """Every distinct signature an arch of this space (default config) can place at ``h x w``."""
        self.check_input(h, w)
        for hd in heads or ():
            if hd not in self.heads:
                raise RtsegError(f"head {hd!r} is not available in space {self.name!r}; choose {', '.join(self.heads)}")
        lay = Layout(self.config, h, w, num_classes)
        seen: dict[str, OpSignature] = {s.key: s for s in lay.fixed()}
        for kind in KINDS:
            for j, i in edge_pairs(node_count(self.config, kind)):
                for sigs in lay.choice_signatures(kind, j, i):
                    for s in sigs:
                        seen.setdefault(s.key, s)
        return list(seen.values())

    def cheapest_arch(self, cost: Callable[[OpSignature], float], h: int, w: int, num_classes: int = 19) -> Arch:
        """The arch of least total ``cost``: nodes are independent, so every node takes its two
        cheapest edges, each with its cheapest operation (costs summed over the cells of a kind)."""
        lay = Layout(self.config, h, w, num_classes)
        geno: dict[str, Any] = {"config": self.config.to_dict()}
        for kind in KINDS:
            prims = primitives(kind)
            rows = []
            for j in range(node_count(self.config, kind)):
                best = []
                for i in range(j + 2):
                    costs = [sum(float(cost(s)) for s in sigs) for sigs in lay.choice_signatures(kind, j, i)[1:]]
                    k = min(range(len(costs)), key=costs.__getitem__)
                    best.append((costs[k], i, prims[k]))
                rows.append([[op, i] for _, i, op in sorted(sorted(best)[:2], key=lambda t: t[1])])
            geno[kind] = rows
        return Arch("cas", num_classes, geno, head="classifier", name="cheapest")


@register_space("cas")
def _cas_space() -> CASSpace:
    return CASSpace()
