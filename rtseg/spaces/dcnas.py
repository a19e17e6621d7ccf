"""The DCNAS densely connected search space (Zhang et al., "DCNAS: Densely Connected Neural Architecture
Search for Semantic Image Segmentation", CVPR 2021, sec. 3, and its supplementary material, sec. 1.1-1.4).

Macro structure (input H x W)::

    stem: conv7x7 s2 (``stem`` filters) -> four conv3x3 s2 with F, 2F, 4F, 8F filters = M(s, 0) for
          s = 1/4, 1/8, 1/16, 1/32 (the feature pyramid, the DCNAS supplement sec. 1.2)
    fusion modules M(s, l), l = 1..L, width F * s_index: M(s, l) aggregates modules M(s', l'), l' < l
          (all four scales), each through its shape-alignment branch (3x3 strided conv from a finer
          scale, 1x1 conv + bilinear upsampling from a coarser one, nothing at the same scale), and
          feeds the sum to its mixture layer: one MobileNetV3 block, kernel {3, 5, 7} x expansion {3, 6}
    head: the outputs of M(s, L), upsampled to 1/4 and concatenated, 3x3 conv, 1x1 classifier, then
          bilinear upsampling to H x W

During search (eq. 1-7):

* mixture layer: ``sum_o softmax(α)_o o(I)`` (eq. 1-2); with ``partial_channel = 4`` the operators run on
  the first quarter of the channels and the rest bypass (eq. 7, fixed masks); the operators slice
  their full-width weights (see :mod:`rtseg.ops.mbv3`), so the toggle does not change the weights.
* paths: ``I(s,l) = sum softmax(β)_i H_i(O_i)`` over the inputs (eq. 3-4); with ``path_sampling`` (in
  training mode) ``n_paths`` inputs per module are drawn without replacement from
  ``softmax(β / τ)`` (eq. 5) and blended with softmax(β) renormalized over the draw (eq. 6); τ is
  annealed geometrically by :meth:`DCNASSupernet.on_epoch`. Modules no drawn path reaches are not run.

Path strength, decoding and regularizers: the supplement's formulas are lost in its extraction, so
rtseg defines them around one quantity, the path strength ``r_i = p_i / max_j p_j`` (p = softmax β of
the module): 1 for the strongest input, in (0, 1) for the others, and like softmax β invariant to a
shift of β (cross-entropy only moves β relative to each other). Decoding (DCNAS supplement, Algorithm 1) is a
breadth-first walk from M(s, L) back to the stem that keeps, per module, the inputs with
``r >= 0.5`` (at most k = ``max_inputs``, the strongest first, so at least one), and the argmax
operator of every module it reaches. :meth:`DCNASSupernet.regularization` returns the three terms of
the DCNAS supplement sec. 1.4: the entropy of softmax α (pushes each mixture layer to one operator), the 0-or-1
pressure ``mean r (1 - r)`` on paths, and a Lagrangian ``λ_m relu(sum_i r_i - k)`` with λ updated by
dual ascent, keeping 1..k inputs per module (at least one holds by construction of r).
:meth:`DCNASSupernet.expected_cost` weighs a path's alignment cost by its strength and by the
probability that its module is used, ``u_m = 1 - prod_succ (1 - r_{m->succ} u_succ)`` (u = 1 at
layer L), and a mixture layer's expected operator cost by u_m; for a fixed arch r and u are exactly
0 or 1 and E[cost] is the arch's cost.

Defaults are small (F = 8, L = 3, 32-filter 7x7 stem, 32-channel head) so a search at 128x256 runs in
minutes on a CPU; the seed's best model is F = 64, L = 14 (``--space-opt width=64 --space-opt layers=14``,
:meth:`DCNASSpace.with_options`). The config is recorded in the genotype::

    {"config": {"width": 8, "layers": 3, "stem": 32, "head": 32, "max_inputs": 3},
     "modules": [{"scale": 4, "layer": 1, "kernel": 3, "expansion": 6, "inputs": [[4, 0], [8, 0]]}, ...]}

``scale`` is the denominator of the resolution (4, 8, 16, 32); an input ``[scale, 0]`` is the stem.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields
from typing import Any, Callable, Iterable, Mapping

import torch
from torch import nn

from rtseg.arch import Arch
from rtseg.errors import RtsegError
from rtseg.ops import OpSignature, OpSpec, build_op
from rtseg.spaces.base import Decision, Network, SearchSpace, Supernet, register_space, relax

SCALES = (4, 8, 16, 32)
KERNELS = (3, 5, 7)
EXPANSIONS = (3, 6)
OP_CHOICES = [{"kernel": k, "expansion": e} for k in KERNELS for e in EXPANSIONS]
PATH_THRESHOLD = 0.5

Node = tuple[int, int]  # (scale, layer)


@dataclass(frozen=True)
class DCNASConfig:
    width: int = 8  # F
    layers: int = 3  # L
    stem: int = 32
    head: int = 32
    max_inputs: int = 3  # k

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @staticmethod
    def from_dict(d: Any, source: str = "arch") -> "DCNASConfig":
        where = f"{source}: genotype.config"
        if not isinstance(d, Mapping):
            raise RtsegError(f"{where} must be a JSON object")
        names = [f.name for f in fields(DCNASConfig)]
        extra = set(d) - set(names)
        if extra:
            raise RtsegError(f"{where} has unknown fields: {', '.join(sorted(extra))} (known: {', '.join(names)})")
        for key, v in d.items():
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise RtsegError(f"{where}.{key} must be a positive integer, got {v!r}")
        return DCNASConfig(**dict(d))

    def width_of(self, scale: int) -> int:
        return self.width * scale // 4

    def candidates(self, layer: int) -> list[Node]:
        """Inputs a module of ``layer`` may take, in canonical order (layer, then scale)."""
        return [(s, lp) for lp in range(layer) for s in SCALES]

    def nodes(self) -> list[Node]:
        """Every fusion module, in execution order."""
        return [(s, lv) for lv in range(1, self.layers + 1) for s in SCALES]


def node_key(node: Node) -> str:
    return f"s{node[0]}_l{node[1]}"


def align_spec(cfg: DCNASConfig, src: Node, dst: Node) -> OpSpec | None:
    """The shape-alignment branch from ``src`` to ``dst`` (None at the same scale: widths match)."""
    s_in, s_out = src[0], dst[0]
    c_in, c_out = cfg.width_of(s_in), cfg.width_of(s_out)
    if s_in == s_out:
        return None
    if s_in < s_out:
        return OpSpec.make("shape_align", c_in, c_out, s_out // s_in, up=1)
    return OpSpec.make("shape_align", c_in, c_out, 1, up=s_in // s_out)


def op_spec(cfg: DCNASConfig, scale: int, kernel: int, expansion: int) -> OpSpec:
    c = cfg.width_of(scale)
    return OpSpec.make("mbconv", c, c, 1, kernel=kernel, expansion=expansion)


def stem_specs(cfg: DCNASConfig) -> list[tuple[OpSpec, int]]:
    """(spec, input downsampling) of the stem: a 7x7 conv then four stride-2 3x3 convs."""
    out = [(OpSpec.make("conv_bn_relu", 3, cfg.stem, 2, kernel=7), 1)]
    c = cfg.stem
    for s in SCALES:
        out.append((OpSpec.make("conv_bn_relu", c, cfg.width_of(s), 2, kernel=3), s // 2))
        c = cfg.width_of(s)
    return out


def head_specs(cfg: DCNASConfig, num_classes: int) -> list[OpSpec]:
    return [OpSpec.make("dense_head", cfg.width, num_classes, 1, levels=len(SCALES), mid=cfg.head),
            OpSpec.make("resize", num_classes, num_classes, 1, scale=4)]


def _at(spec: OpSpec, h: int, w: int, down: int) -> OpSignature:
    return spec.at(h // down, w // down)


def _modules(arch: Arch) -> dict[Node, dict[str, Any]]:
    return {(int(m["scale"]), int(m["layer"])): m for m in arch.genotype["modules"]}


def _order(mods: Iterable[Node]) -> list[Node]:
    return sorted(mods, key=lambda n: (n[1], n[0]))


# -- the discrete network ------------------------------------------------------------------------


class _Stem(nn.Module):
    def __init__(self, cfg: DCNASConfig) -> None:
        super().__init__()
        self.convs = nn.ModuleList(build_op(s) for s, _ in stem_specs(cfg))

    def forward(self, x: torch.Tensor) -> dict[Node, torch.Tensor]:
        x = self.convs[0](x)
        feats = {}
        for s, conv in zip(SCALES, self.convs[1:]):
            x = conv(x)
            feats[(s, 0)] = x
        return feats


class FusionModule(nn.Module):
    """A decoded fusion module: the alignment branches of its inputs, summed, then one operator."""

    def __init__(self, cfg: DCNASConfig, node: Node, spec: Mapping[str, Any]) -> None:
        super().__init__()
        self.inputs: list[Node] = [(int(s), int(lv)) for s, lv in spec["inputs"]]
        self.align = nn.ModuleDict()
        for k, src in enumerate(self.inputs):
            a = align_spec(cfg, src, node)
            if a is not None:
                self.align[str(k)] = build_op(a)
        self.op = build_op(op_spec(cfg, node[0], spec["kernel"], spec["expansion"]))

    def forward(self, feats: Mapping[Node, torch.Tensor]) -> torch.Tensor:
        x: torch.Tensor | None = None
        for k, src in enumerate(self.inputs):
            y = feats[src]
            if str(k) in self.align:
                y = self.align[str(k)](y)
            x = y if x is None else x + y
        assert x is not None
        return self.op(x)


class DCNASNet(Network):
    """A decoded network of the DCNAS space, built only from registered operators."""

    def __init__(self, arch: Arch, config: DCNASConfig) -> None:
        super().__init__()
        self.arch, self.config = arch, config
        mods = _modules(arch)
        self.order = _order(mods)
        self.stem = _Stem(config)
        self.fusion = nn.ModuleDict({node_key(n): FusionModule(config, n, mods[n]) for n in self.order})
        head, up = head_specs(config, arch.num_classes)
        self.head = build_op(head)
        self.upsample = build_op(up)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.stem(x)
        for n in self.order:
            feats[n] = self.fusion[node_key(n)](feats)
        L = self.config.layers
        y = self.head(*(feats[(s, L)] for s in SCALES))
        return self.upsample(y, size=x.shape[-2:])

    def signatures(self, h: int, w: int) -> list[OpSignature]:
        return DCNASSpace(self.config).signatures(self.arch, h, w)


# -- the supernet ---------------------------------------------------------------------------------


class MixtureLayer(nn.Module):
    """``sum_o w_o o(S I) + (1 - S) I`` (eq. 2 and 7): the operators see the first ``1 / ratio`` of the
    channels (all of them at ratio 1), the other channels pass through."""

    def __init__(self, cfg: DCNASConfig, scale: int) -> None:
        super().__init__()
        self.ops = nn.ModuleList(build_op(op_spec(cfg, scale, c["kernel"], c["expansion"])) for c in OP_CHOICES)

    def forward(self, x: torch.Tensor, p: torch.Tensor, alive: list[bool], ratio: int) -> torch.Tensor:
        c = x.shape[1]
        cs = max(1, c // ratio) if ratio > 1 else c
        xs = x[:, :cs] if cs < c else x
        out: torch.Tensor | None = None
        for k, op in enumerate(self.ops):
            if alive[k]:
                y = op(xs, width=cs if cs < c else None)
                y = p[k] * y
                out = y if out is None else out + y
        assert out is not None, "every operator of a mixture layer was removed"
        return torch.cat([out, x[:, cs:]], dim=1) if cs < c else out


class MixedFusion(nn.Module):
    def __init__(self, cfg: DCNASConfig, node: Node) -> None:
        super().__init__()
        self.candidates = cfg.candidates(node[1])
        self.align = nn.ModuleDict()
        for i, src in enumerate(self.candidates):
            a = align_spec(cfg, src, node)
            if a is not None:
                self.align[str(i)] = build_op(a)
        self.mixed = MixtureLayer(cfg, node[0])


class DCNASSupernet(Supernet):
    """Weight-sharing supernet of the DCNAS space; see the module docstring.

    Decisions: ``s{scale}_l{layer}.op`` (level ``op``, choices :data:`OP_CHOICES`, α) and
    ``s{scale}_l{layer}.paths`` (level ``path``, choices the candidate inputs ``[scale, layer]``, β).
    Switches: :attr:`path_sampling` (bool), :attr:`partial_channel` (4 or 1), :attr:`n_paths`."""

    def __init__(self, num_classes: int = 19, config: DCNASConfig | None = None, relaxation: str = "softmax",
                 tau_start: float = 5.0, tau_end: float = 0.5, n_paths: int | None = None) -> None:
        nn.Module.__init__(self)
        self.config = cfg = config or DCNASConfig()
        self.num_classes, self.relaxation = num_classes, relaxation
        self.path_sampling = True
        self.partial_channel = 4
        self.n_paths = n_paths or cfg.max_inputs
        self.tau_start, self.tau_end = float(tau_start), float(tau_end)
        #: Weights of the entropy and 0-or-1 terms, step size of the multipliers' dual ascent.
        self.reg_weights = {"entropy": 0.1, "binary": 0.5}
        self.lagrange_lr = 0.01
        self.nodes = cfg.nodes()
        self.stem = _Stem(cfg)
        self.fusion = nn.ModuleDict({node_key(n): MixedFusion(cfg, n) for n in self.nodes})
        head, up = head_specs(cfg, num_classes)
        self.head = build_op(head)
        self.upsample = build_op(up)
        self._init_decisions()
        for n in self.nodes:
            self._add_decision(f"{node_key(n)}.op", "op", [dict(c) for c in OP_CHOICES])
            self._add_decision(f"{node_key(n)}.paths", "path", [list(c) for c in cfg.candidates(n[1])])
        self.register_buffer("tau", torch.tensor(self.tau_start))
        self.register_buffer("fixed", torch.tensor(False))
        self.register_buffer("lagrange", torch.zeros(len(self.nodes)))
        self._cost_cache: list[tuple[Any, int, int, dict[str, Any]]] = []

    # -- decisions ------------------------------------------------------------------------------
    def probs(self, name: str) -> torch.Tensor:
        """softmax α (or the chosen relaxation) of an operator decision, softmax β (eq. 3) of paths."""
        mode = "softmax" if name.endswith(".paths") else self.relaxation
        return relax(self._alpha(name), self._alive(name), mode)

    def strengths(self, node: Node) -> torch.Tensor:
        """Path strengths r = p / max p of a module's inputs (exactly the alive mask once fixed)."""
        name = f"{node_key(node)}.paths"
        alive = self._alive(name)
        if bool(self.fixed):
            return alive.to(self._alpha(name).dtype)
        p = self.probs(name)
        return p / p.max()

    #: Shrinking (:func:`rtseg.search.objective.shrink`) removes weak operators of the mixture layers;
    #: paths are not a one-of choice and are left to :meth:`regularization` and the decoding.
    shrink_levels = ("op",)

    def active_decisions(self) -> list[Decision]:
        """The operator decisions. Paths are not a one-of choice (a module keeps 1..k inputs); they
        are driven by :meth:`regularization` and read by the breadth-first decoding."""
        return [d for d in self.decisions() if d.level == "op"]

    def drop_weights(self, name: str, index: int) -> None:
        """A removed operator becomes an ``Identity`` of its mixture; a removed path drops its alignment."""
        key, what = name.split(".")
        fus = self.fusion[key]
        if what == "op":
            fus.mixed.ops[index] = nn.Identity()
        elif str(index) in fus.align:
            del fus.align[str(index)]

    def on_epoch(self, epoch: int, total_epochs: int) -> None:
        """Anneal τ geometrically from ``tau_start`` (epoch 0) to ``tau_end`` (last epoch)."""
        t = min(1.0, epoch / max(1, total_epochs - 1))
        self.tau.fill_(self.tau_start * (self.tau_end / self.tau_start) ** t)

    # -- forward --------------------------------------------------------------------------------
    def _active_paths(self) -> dict[Node, tuple[list[int], torch.Tensor | None]]:
        out: dict[Node, tuple[list[int], torch.Tensor | None]] = {}
        fixed = bool(self.fixed)
        for n in self.nodes:
            name = f"{node_key(n)}.paths"
            alive = self._alive(name)
            idx = torch.nonzero(alive).flatten()
            if fixed:
                out[n] = (idx.tolist(), None)
                continue
            p = self.probs(name)
            if self.path_sampling and self.training and idx.numel() > self.n_paths:
                q = relax(self._alpha(name) / self.tau, alive, "softmax")  # eq. 5
                idx = torch.multinomial(q.detach(), self.n_paths, replacement=False).sort().values
                w = p[idx] / p[idx].sum()  # eq. 6
            else:
                w = p[idx]
            out[n] = (idx.tolist(), w)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        active = self._active_paths()
        cfg = self.config
        needed = {(s, cfg.layers) for s in SCALES}
        for n in reversed(self.nodes):
            if n in needed:
                cands = cfg.candidates(n[1])
                needed.update(cands[i] for i in active[n][0] if cands[i][1] > 0)
        feats = self.stem(x)
        ratio = 1 if bool(self.fixed) else int(self.partial_channel)
        for n in self.nodes:
            if n not in needed:
                continue
            key = node_key(n)
            fus = self.fusion[key]
            idx, w = active[n]
            agg: torch.Tensor | None = None
            for j, i in enumerate(idx):
                y = feats[fus.candidates[i]]
                if str(i) in fus.align:
                    y = fus.align[str(i)](y)
                if w is not None:
                    y = w[j] * y
                agg = y if agg is None else agg + y
            assert agg is not None
            name = f"{key}.op"
            feats[n] = fus.mixed(agg, self.probs(name), self._alive(name).tolist(), ratio)
        y = self.head(*(feats[(s, cfg.layers)] for s in SCALES))
        return self.upsample(y, size=x.shape[-2:])

    # -- regularization (DCNAS supplement, sec. 1.4) ------------------------------------------------------
    def regularization(self) -> dict[str, torch.Tensor]:
        """``entropy``: mean entropy of softmax α; ``binary``: mean r (1 - r) over paths; ``inputs``:
        sum_m λ_m relu(sum_i r_i - k) (λ >= 0, updated by dual ascent at every call in training mode).
        Already weighted (:attr:`reg_weights`): add them to the architecture loss as they are."""
        ents, bins, viols = [], [], []
        for n in self.nodes:
            p = self.probs(f"{node_key(n)}.op")
            alive = self._alive(f"{node_key(n)}.op")
            pa = p[alive].clamp_min(1e-12)
            ents.append(-(pa * pa.log()).sum())
            r = self.strengths(n)[self._alive(f"{node_key(n)}.paths")]
            bins.append((r * (1 - r)).mean())
            viols.append(torch.relu(r.sum() - self.config.max_inputs))
        viol = torch.stack(viols)
        if self.training and torch.is_grad_enabled():
            with torch.no_grad():
                self.lagrange.add_(self.lagrange_lr * viol.detach()).clamp_(min=0.0)
        return {
            "entropy": self.reg_weights["entropy"] * torch.stack(ents).mean(),
            "binary": self.reg_weights["binary"] * torch.stack(bins).mean(),
            "inputs": (self.lagrange * viol).sum(),
        }

    # -- discrete <-> relaxed -------------------------------------------------------------------
    def kept_inputs(self, node: Node) -> list[Node]:
        """The inputs decoding keeps: strength >= 0.5, the strongest first, at most k."""
        with torch.no_grad():
            r = self.strengths(node)
            p = self.probs(f"{node_key(node)}.paths")
        alive = self._alive(f"{node_key(node)}.paths")
        cands = self.config.candidates(node[1])
        order = sorted((i for i in range(len(cands)) if bool(alive[i]) and float(r[i]) >= PATH_THRESHOLD),
                       key=lambda i: (-float(p[i]), i))
        return sorted((cands[i] for i in order[: self.config.max_inputs]), key=lambda n: (n[1], n[0]))

    def argmax_choices(self) -> dict[str, int]:
        """Index of the most likely surviving candidate of every decision (for paths: the strongest
        input; the topology itself comes from the breadth-first decoding)."""
        with torch.no_grad():
            return {d.name: int(torch.argmax(self.probs(d.name))) for d in self.decisions()}

    def arch_from_choices(self, choices: Mapping[str, int], name: str | None = None) -> Arch:
        """The arch decoded breadth-first (DCNAS supplement, Algorithm 1) from M(s, L) back to the stem, with
        the operator of each module it reaches taken from ``choices``."""
        cfg = self.config
        queue = [(s, cfg.layers) for s in SCALES]
        conns: dict[Node, list[Node]] = {}
        while queue:
            n = queue.pop(0)
            if n in conns:
                continue
            conns[n] = self.kept_inputs(n)
            queue += [src for src in conns[n] if src[1] > 0 and src not in conns]
        mods = []
        for n in _order(conns):
            op = OP_CHOICES[int(choices[f"{node_key(n)}.op"])]
            mods.append({"scale": n[0], "layer": n[1], "kernel": op["kernel"], "expansion": op["expansion"],
                         "inputs": [list(src) for src in conns[n]]})
        return Arch("dcnas", self.num_classes, {"config": cfg.to_dict(), "modules": mods}, head="classifier", name=name)

    def decode(self, name: str | None = None) -> Arch:
        return self.arch_from_choices(self.argmax_choices(), name=name)

    def choices_of(self, arch: Arch) -> dict[str, int]:
        """The operator index of every module ``arch`` has (its inputs are not a one-of choice)."""
        return {f"{node_key(n)}.op": OP_CHOICES.index({"kernel": m["kernel"], "expansion": m["expansion"]})
                for n, m in _modules(arch).items()}

    def fix(self, arch: Arch) -> None:
        """Keep only the operators and paths ``arch`` uses and switch to its exact computation: plain
        sums over the kept paths, full channels, no sampling."""
        space = DCNASSpace(self.config)
        space.validate(arch)
        if space.config_of(arch) != self.config:
            raise RtsegError("the arch was made for another DCNAS config than this supernet's")
        for n, m in _modules(arch).items():
            key = node_key(n)
            self._keep_only(f"{key}.op", [OP_CHOICES.index({"kernel": m["kernel"], "expansion": m["expansion"]})])
            cands = self.config.candidates(n[1])
            self._keep_only(f"{key}.paths", [cands.index((int(s), int(lv))) for s, lv in m["inputs"]])
        self.fixed.fill_(True)
        self.partial_channel = 1

    def derive_weights(self, arch: Arch) -> dict[str, torch.Tensor]:
        """The state dict of ``DCNASNet(arch)`` holding this supernet's weights for that arch."""
        net = DCNASSpace(self.config).build(arch)
        src = self.state_dict()
        sd: dict[str, torch.Tensor] = {}

        def copy(a: str, b: str) -> None:
            for k, t in src.items():
                if k.startswith(a):
                    sd[b + k[len(a):]] = t.clone()

        for prefix in ("stem.", "head.", "upsample."):
            copy(prefix, prefix)
        for n, m in _modules(arch).items():
            key = node_key(n)
            cands = self.config.candidates(n[1])
            op = OP_CHOICES.index({"kernel": m["kernel"], "expansion": m["expansion"]})
            copy(f"fusion.{key}.mixed.ops.{op}.", f"fusion.{key}.op.")
            for k, (s, lv) in enumerate(m["inputs"]):
                copy(f"fusion.{key}.align.{cands.index((int(s), int(lv)))}.", f"fusion.{key}.align.{k}.")
        net.load_state_dict(sd, strict=True)
        return sd

    # -- expected cost ---------------------------------------------------------------------------
    def _cost_tables(self, cost: Callable[[OpSignature], float], h: int, w: int) -> dict[str, Any]:
        for fn, ch, cw, tables in self._cost_cache:
            if fn == cost and (ch, cw) == (h, w):
                return tables
        cfg = self.config
        space = DCNASSpace(cfg)
        tables: dict[str, Any] = {"fixed": float(sum(float(cost(s)) for s in space.fixed_signatures(h, w, self.num_classes)))}
        for n in self.nodes:
            ops = [float(cost(_at(op_spec(cfg, n[0], c["kernel"], c["expansion"]), h, w, n[0]))) for c in OP_CHOICES]
            aligns = []
            for src in cfg.candidates(n[1]):
                a = align_spec(cfg, src, n)
                aligns.append(0.0 if a is None else float(cost(_at(a, h, w, src[0]))))
            tables[node_key(n)] = (torch.tensor(ops), torch.tensor(aligns))
        self._cost_cache = ([(cost, h, w, tables)] + self._cost_cache)[:4]
        return tables

    def usage(self) -> dict[Node, torch.Tensor]:
        """u_m, the (relaxed) probability that module m is part of the decoded network."""
        cfg = self.config
        r = {n: self.strengths(n) for n in self.nodes}
        one = torch.ones((), device=self.tau.device)
        u: dict[Node, torch.Tensor] = {}
        for n in reversed(self.nodes):
            if n[1] == cfg.layers:
                u[n] = one
                continue
            miss = one
            for succ in self.nodes:
                if succ[1] > n[1]:
                    i = cfg.candidates(succ[1]).index(n)
                    miss = miss * (1 - r[succ][i] * u[succ])
            u[n] = 1 - miss
        return u

    def expected_cost(self, cost: Callable[[OpSignature], float], h: int, w: int) -> torch.Tensor:
        """E[cost] = fixed parts + sum_m u_m (E_α[operator cost] + sum_i r_i cost(alignment i))."""
        tables = self._cost_tables(cost, h, w)
        device = self.tau.device
        total = torch.tensor(tables["fixed"], device=device)
        u = self.usage()
        for n in self.nodes:
            ops, aligns = tables[node_key(n)]
            p = self.probs(f"{node_key(n)}.op")
            total = total + u[n] * ((p * ops.to(device)).sum() + (self.strengths(n) * aligns.to(device)).sum())
        return total


# -- the space ------------------------------------------------------------------------------------


class DCNASSpace(SearchSpace):
    name = "dcnas"
    size_divisor = 32
    heads = ("classifier",)  # the dense head of the DCNAS supplement sec. 1.2

    #: DCNAS's own terms (supplement sec. 1.4: entropy of α, 0-or-1 pressure on paths, at most k inputs
    #: by a Lagrangian), :meth:`DCNASSupernet.regularization`.
    default_reg = "dcnas"
    own_regs = ("dcnas",)

    def __init__(self, config: DCNASConfig | None = None) -> None:
        self.config = config or DCNASConfig()

    def options(self) -> dict[str, Any]:
        default, mine = DCNASConfig().to_dict(), self.config.to_dict()
        return {k: v for k, v in mine.items() if v != default[k]}

    def with_options(self, options: Mapping[str, Any]) -> "DCNASSpace":
        """Sizes of the DCNAS config: ``width`` (F), ``layers`` (L), ``stem`` (filters of the 7x7 conv),
        ``head`` (the head's 3x3 conv) and ``max_inputs`` (k); the paper's best model is ``width=64
        layers=14`` with k = 3 (DCNAS sec. 4.1, supplement sec. 1.2)."""
        return DCNASSpace(DCNASConfig.from_dict({**self.config.to_dict(), **dict(options)}, source="--space-opt (space dcnas)"))

    def config_of(self, arch: Arch, source: str = "arch") -> DCNASConfig:
        if "config" not in arch.genotype:
            return self.config
        return DCNASConfig.from_dict(arch.genotype["config"], source)

    # -- validation -----------------------------------------------------------------------------
    def validate(self, arch: Arch, source: str = "arch") -> None:
        if arch.head not in self.heads:
            raise RtsegError(f"{source}: head {arch.head!r} is not one of {', '.join(self.heads)}")
        g = arch.genotype
        extra = set(g) - {"config", "modules"}
        if extra:
            raise RtsegError(f"{source}: genotype has unknown fields: {', '.join(sorted(extra))} (expected config, modules)")
        cfg = self.config_of(arch, source)
        mods = g.get("modules")
        if not isinstance(mods, list) or not mods:
            raise RtsegError(f"{source}: genotype.modules must be a non-empty list of fusion modules")
        seen: dict[Node, list[Node]] = {}
        keys = {"scale", "layer", "kernel", "expansion", "inputs"}
        for mi, m in enumerate(mods):
            w = f"{source}: genotype.modules[{mi}]"
            if not isinstance(m, dict):
                raise RtsegError(f"{w} must be an object with {', '.join(sorted(keys))}")
            missing, unknown = keys - set(m), set(m) - keys
            if missing:
                raise RtsegError(f"{w} lacks {', '.join(sorted(missing))}")
            if unknown:
                raise RtsegError(f"{w} has unknown fields: {', '.join(sorted(unknown))}")
            for key, allowed in (("scale", SCALES), ("layer", range(1, cfg.layers + 1)), ("kernel", KERNELS), ("expansion", EXPANSIONS)):
                v = m[key]
                if isinstance(v, bool) or v not in allowed:
                    raise RtsegError(f"{w}.{key} = {v!r} is out of range; allowed: {', '.join(map(str, allowed))}")
            node = (m["scale"], m["layer"])
            if node in seen:
                raise RtsegError(f"{w}: module scale {node[0]} layer {node[1]} is listed twice")
            ins = m["inputs"]
            if not isinstance(ins, list) or not 1 <= len(ins) <= cfg.max_inputs:
                raise RtsegError(f"{w}.inputs must list 1 to {cfg.max_inputs} [scale, layer] pairs (genotype.config.max_inputs)")
            nodes = []
            for src in ins:
                ok = isinstance(src, list) and len(src) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in src)
                if not ok or src[0] not in SCALES or not 0 <= src[1] < node[1]:
                    raise RtsegError(f"{w}.inputs: {src!r} is not an earlier module; use [scale, layer] with scale in "
                                     f"{', '.join(map(str, SCALES))} and layer 0..{node[1] - 1} (0 = stem)")
                if tuple(src) in nodes:
                    raise RtsegError(f"{w}.inputs: {src!r} is listed twice")
                nodes.append((src[0], src[1]))
            seen[node] = nodes
        for s in SCALES:
            if (s, cfg.layers) not in seen:
                raise RtsegError(f"{source}: genotype.modules lacks the last-layer module scale {s} layer {cfg.layers}, which the head needs")
        used = {src for ins in seen.values() for src in ins}
        for node, ins in seen.items():
            for src in ins:
                if src[1] > 0 and src not in seen:
                    raise RtsegError(f"{source}: module scale {node[0]} layer {node[1]} takes input [{src[0]}, {src[1]}], which is not listed")
            if node[1] < cfg.layers and node not in used:
                raise RtsegError(f"{source}: module scale {node[0]} layer {node[1]} feeds no other module; remove it or use it as an input")

    # -- sampling, building ---------------------------------------------------------------------
    def sample(self, rng: random.Random, num_classes: int = 19, head: str = "classifier") -> Arch:
        cfg = self.config
        needed = {(s, cfg.layers) for s in SCALES}
        mods: dict[Node, dict[str, Any]] = {}
        for layer in range(cfg.layers, 0, -1):
            for s in SCALES:
                if (s, layer) not in needed:
                    continue
                ins = rng.sample(cfg.candidates(layer), rng.randint(1, cfg.max_inputs))
                needed.update(src for src in ins if src[1] > 0)
                mods[(s, layer)] = {"scale": s, "layer": layer, "kernel": rng.choice(KERNELS), "expansion": rng.choice(EXPANSIONS),
                                    "inputs": [list(src) for src in sorted(ins, key=lambda n: (n[1], n[0]))]}
        return Arch("dcnas", num_classes, {"config": cfg.to_dict(), "modules": [mods[n] for n in _order(mods)]}, head=head)

    def build(self, arch: Arch) -> DCNASNet:
        self.validate(arch)
        return DCNASNet(arch, self.config_of(arch))

    def supernet(self, num_classes: int = 19, relaxation: str | None = None, **kwargs: Any) -> DCNASSupernet:
        return DCNASSupernet(num_classes, self.config, relaxation=relaxation or "softmax", **kwargs)

    # -- signatures -----------------------------------------------------------------------------
    def fixed_signatures(self, h: int, w: int, num_classes: int = 19, config: DCNASConfig | None = None) -> list[OpSignature]:
        """Stem, head and final resize: the parts every arch of a config has."""
        cfg = config or self.config
        head, up = head_specs(cfg, num_classes)
        return [_at(s, h, w, d) for s, d in stem_specs(cfg)] + [_at(head, h, w, 4), _at(up, h, w, 4)]

    def signatures(self, arch: Arch, h: int, w: int) -> list[OpSignature]:
        """Signatures in execution order: stem, then per module its alignments and operator, head."""
        cfg = self.config_of(arch)
        fixed = self.fixed_signatures(h, w, arch.num_classes, cfg)
        sigs = fixed[:-2]
        mods = _modules(arch)
        for n in _order(mods):
            m = mods[n]
            for s, lv in m["inputs"]:
                a = align_spec(cfg, (s, lv), n)
                if a is not None:
                    sigs.append(_at(a, h, w, s))
            sigs.append(_at(op_spec(cfg, n[0], m["kernel"], m["expansion"]), h, w, n[0]))
        return sigs + fixed[-2:]

    def candidate_signatures(self, h: int, w: int, num_classes: int = 19, heads: tuple[str, ...] | None = None) -> list[OpSignature]:
        """Every distinct signature an arch of this space (default config) can place at ``h x w``."""
        self.check_input(h, w)
        for hd in heads or ():
            if hd not in self.heads:
                raise RtsegError(f"head {hd!r} is not available in space {self.name!r}; choose {', '.join(self.heads)}")
        cfg = self.config
        seen = {s.key: s for s in self.fixed_signatures(h, w, num_classes)}
        for n in cfg.nodes():
            for c in OP_CHOICES:
                s = _at(op_spec(cfg, n[0], c["kernel"], c["expansion"]), h, w, n[0])
                seen.setdefault(s.key, s)
            for src in cfg.candidates(n[1]):
                a = align_spec(cfg, src, n)
                if a is not None:
                    s = _at(a, h, w, src[0])
                    seen.setdefault(s.key, s)
        return list(seen.values())

    def cheapest_arch(self, cost: Callable[[OpSignature], float], h: int, w: int, num_classes: int = 19) -> Arch:
        """The arch of least total ``cost``: the head needs the four last-layer modules and each needs
        one input, so the cheapest takes, per scale, the cheapest operator fed by the stem."""
        cfg = self.config
        mods = []
        for s in SCALES:
            node = (s, cfg.layers)
            op = min(OP_CHOICES, key=lambda c: float(cost(_at(op_spec(cfg, s, c["kernel"], c["expansion"]), h, w, s))))

            def align_cost(src: Node) -> float:
                a = align_spec(cfg, src, node)
                return 0.0 if a is None else float(cost(_at(a, h, w, src[0])))

            src = min(((sp, 0) for sp in SCALES), key=align_cost)
            mods.append({"scale": s, "layer": cfg.layers, "kernel": op["kernel"], "expansion": op["expansion"], "inputs": [list(src)]})
        return Arch("dcnas", num_classes, {"config": cfg.to_dict(), "modules": mods}, head="classifier", name="cheapest")


@register_space("dcnas")
def _dcnas_space() -> DCNASSpace:
    return DCNASSpace()


__all__ = ["DCNASConfig", "DCNASNet", "DCNASSpace", "DCNASSupernet", "OP_CHOICES", "SCALES"]
