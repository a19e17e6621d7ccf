"""The SSR joint search space (Ye et al., "Efficient Joint-Dimensional Search with Solution Space
Regularization for Real-Time Semantic Segmentation", IJCV 2022: Tables 1-2, sec. 3.1, 5.2).

Macro structure (input H x W)::

    DB 3->16 (H)  ->  DB 16->64 (H/2)  ->  stage 1 at H/4: 2 fixed + 1..5 searchable NB-1D (64 ch)
                  ->  DB 64->128 (H/4) ->  stage 2 at H/8: 5 fixed + 1..5 searchable NB-1D (128 ch)
                  ->  head: 1x1 classifier at H/8 (search, baseline1) or the aggregation block

Every NB-1D layer chooses a (dilation, spatial) pair from {1,2,4,8,16} x {1,2} and, independently,
the output widths of its 3x1 and 1x3 convs from {C-32, C-28, ..., C}. The genotype lists, per stage,
the blocks actually present (so depth is the list length)::

    {"stages": [[{"dilation": 1, "spatial": 1, "c3x1": 64, "c1x3": 64}, ...], [...]]}

A layer may instead be a residual STDC module at the stage's width (Fan et al., "Rethinking BiSeNet
for Real-time Semantic Segmentation", CVPR 2021, sec. 3.1; the ``stdc_block`` operator), at full or
half resolution: the (dilation, spatial) decision has the choices ``["stdc", 1]`` and ``["stdc", 2]``
after the NB-1D ones, and such a layer is written ``{"op": "stdc", "spatial": 1}`` (its width is the
stage's, so the layer's two width decisions do not apply to it). The STDC module's three 3x3 convs of
halving width reach a wide receptive field for far fewer multiply-adds than two full-width factorized
convs, which is what a tight budget needs; only with these layers did the default search meet its bar
at every budget measured (``search/README.md``), so they are on by default. ``--space-opt stdc=false`` gives
the paper's own space, NB-1D layers only. Every ssr space builds STDC layers, so an arch JSON that uses
them rebuilds without the option; the option decides whether a search (and the LUT it prices with)
considers them. A LUT written before they were the default records no options and meant the paper's
space (:meth:`SSRSpace.unrecorded_options`).
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Mapping

import torch
from torch import nn

from rtseg.arch import Arch
from rtseg.errors import RtsegError
from rtseg.ops import OpSignature, OpSpec, build_op
from rtseg.ops.erfnet import NB1D
from rtseg.ops.stdc import STDCBlock
from rtseg.spaces.base import Decision, Network, SearchSpace, Supernet, register_space

LEVELS = ("depth", "dilation_spatial", "channels")
STDC = "stdc"  # the first element of a (dilation, spatial) choice that makes the layer an STDC module


@dataclass(frozen=True)
class StageConfig:
    width: int
    fixed: int
    max_extra: int
    downsample: int  # resolution of this stage relative to the input (4 or 8)


@dataclass(frozen=True)
class SSRConfig:
    stem_widths: tuple[int, int] = (16, 64)
    stages: tuple[StageConfig, ...] = (StageConfig(64, 2, 5, 4), StageConfig(128, 5, 5, 8))
    dilations: tuple[int, ...] = (1, 2, 4, 8, 16)
    spatials: tuple[int, ...] = (1, 2)
    channel_span: int = 32
    channel_step: int = 4
    stdc: bool = True  # offer the residual STDC module as a layer choice (--space-opt stdc=false leaves it out)

    def channel_choices(self, c_max: int) -> list[int]:
        return list(range(c_max - self.channel_span, c_max + 1, self.channel_step))

    @property
    def ds_choices(self) -> list[tuple[Any, int]]:
        """The (dilation, spatial) choices of a layer: NB-1D ones, then ``(STDC, spatial)`` when enabled
        (appended, so an NB-1D choice keeps its index with or without the option)."""
        out: list[tuple[Any, int]] = list(itertools.product(self.dilations, self.spatials))
        if self.stdc:
            out += [(STDC, s) for s in self.spatials]
        return out


def _ds_of(blk: dict[str, Any]) -> tuple[Any, int]:
    """A genotype block's (dilation, spatial) choice."""
    return (STDC, blk["spatial"]) if blk.get("op") == STDC else (blk["dilation"], blk["spatial"])


def _block_of(ds: tuple[Any, int] | list[Any], c3x1: int, c1x3: int) -> dict[str, Any]:
    """The genotype block of a (dilation, spatial) choice and two widths (an STDC layer has no widths)."""
    if ds[0] == STDC:
        return {"op": STDC, "spatial": int(ds[1])}
    return {"dilation": int(ds[0]), "spatial": int(ds[1]), "c3x1": int(c3x1), "c1x3": int(c1x3)}


def _block_spec(width: int, blk: dict[str, Any]) -> OpSpec:
    if blk.get("op") == STDC:
        return OpSpec.make("stdc_block", width, width, 1, spatial=blk["spatial"], steps=4)
    return OpSpec.make("nb1d", width, width, 1, dilation=blk["dilation"], spatial=blk["spatial"], c3x1=blk["c3x1"], c1x3=blk["c1x3"])


class SSRNet(Network):
    """A decoded network of the SSR space, built only from registered operators."""

    def __init__(self, arch: Arch, config: SSRConfig) -> None:
        super().__init__()
        self.arch = arch
        self.config = config
        c2, c4 = config.stem_widths
        c8 = config.stages[1].width
        nc = arch.num_classes
        self.db1 = build_op(OpSpec.make("db", 3, c2, 2))
        self.db2 = build_op(OpSpec.make("db", c2, c4, 2))
        self.stage1 = nn.Sequential(*(build_op(_block_spec(c4, b)) for b in arch.genotype["stages"][0]))
        self.db3 = build_op(OpSpec.make("db", c4, c8, 2))
        self.stage2 = nn.Sequential(*(build_op(_block_spec(c8, b)) for b in arch.genotype["stages"][1]))
        if arch.head == "aggregation":
            self.head = build_op(OpSpec.make("aggregation", c2, nc, 1, c4=c4, c8=c8, mid=c4))
            self.upsample = build_op(OpSpec.make("resize", nc, nc, 1, scale=4))
        else:
            self.head = build_op(OpSpec.make("classifier", c8, nc, 1))
            self.upsample = build_op(OpSpec.make("resize", nc, nc, 1, scale=8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = self.db1(x)
        x4 = self.stage1(self.db2(x2))
        x8 = self.stage2(self.db3(x4))
        y = self.head(x2, x4, x8) if self.arch.head == "aggregation" else self.head(x8)
        return self.upsample(y, size=x.shape[-2:])

    def signatures(self, h: int, w: int) -> list[OpSignature]:
        return SSRSpace(self.config).signatures(self.arch, h, w)


class SSRMixedLayer(nn.Module):
    """One searchable NB-1D layer: a weighted sum over (dilation, spatial) candidates, each a
    full-width :class:`NB1D` whose 3x1 and 1x3 outputs are multiplied by a weighted sum of shared
    zero-one channel masks (sec. 3.1). An STDC candidate (``stdc=true``) is an :class:`STDCBlock`
    at full width that ignores the masks."""

    def __init__(self, width: int, config: SSRConfig) -> None:
        super().__init__()
        self.width = width
        self.ds_choices = config.ds_choices
        self.channel_choices = config.channel_choices(width)
        self.candidates = nn.ModuleList(STDCBlock(width, width, spatial=s) if d == STDC else NB1D(width, width, dilation=d, spatial=s)
                                        for d, s in self.ds_choices)
        masks = torch.zeros(len(self.channel_choices), width)
        for i, c in enumerate(self.channel_choices):
            masks[i, :c] = 1.0
        self.register_buffer("masks", masks, persistent=False)

    def forward(self, x: torch.Tensor, p_ds: torch.Tensor, p_c3x1: torch.Tensor, p_c1x3: torch.Tensor,
                sample: bool = False) -> torch.Tensor:
        m1 = p_c3x1 @ self.masks
        m2 = p_c1x3 @ self.masks
        if sample:
            k = _pick(p_ds, self.training)
            return self.candidates[k](x, m1, m2) * _path_gate(p_ds[k])
        out: torch.Tensor | None = None
        for i, cand in enumerate(self.candidates):
            if isinstance(cand, nn.Identity):  # removed by shrinking
                continue
            y = p_ds[i] * cand(x, m1, m2)
            out = y if out is None else out + y
        assert out is not None, "every candidate of a layer was removed"
        return out

    def remove_candidate(self, index: int) -> None:
        """Drop a (dilation, spatial) candidate and free its weights."""
        self.candidates[index] = nn.Identity()


def _pick(p: torch.Tensor, training: bool) -> int:
    """One candidate of a decision: drawn from ``p`` while training, the most likely one otherwise."""
    if training:
        return int(torch.multinomial(p.detach(), 1))
    return int(torch.argmax(p.detach()))


def _path_gate(p_k: torch.Tensor) -> torch.Tensor:
    """1 in the forward pass, ``d/dp_k = 1/p_k`` in the backward one: the sampled path's output is
    passed unscaled (the network trains as the discrete subnet it is) while the architecture gradient
    reaches ``p_k`` as in the weighted sum (ProxylessNAS's path-level approximation, Cai, Zhu, Han,
    "ProxylessNAS: Direct Neural Architecture Search on Target Task and Hardware", ICLR 2019, sec. 3.2)."""
    return p_k / p_k.detach()


class SSRSupernet(Supernet):
    """Weight-sharing supernet of the SSR space.

    Depth: every stage has ``fixed + max_extra`` mixed layers; the stage output is the weighted sum
    of the outputs after ``fixed + d`` layers (eq. 2), so shallower depth choices reuse the first
    layers' weights. Dilation-and-spatial: a weighted sum of candidates (eq. 3-4). Channels: weighted
    zero-one masks shared by all candidates of a layer. Architecture parameters live in
    :attr:`alphas`; :meth:`weight_parameters` excludes them, for bilevel optimization.

    With :attr:`sample_paths` (single-path search), every training forward pass draws one depth per
    stage and one dilation-and-spatial candidate per layer from their probabilities and runs only
    that path (see :func:`_path_gate` for the gradient); evaluation runs the most likely path. A
    step then costs about one network instead of ten candidates per layer, so a search gets roughly
    ten times the steps in the same time, and the weights are trained as the subnets they will be
    decoded into rather than as a mixture whose outputs the decoded net never sees.
    """

    supports_single_path = True
    supports_path_forward = True
    #: Hierarchical shrinking order (SSR paper, sec. 3.5): depth first, so layers that can no longer run
    #: drop out before their own choices are considered.
    shrink_levels = LEVELS

    def __init__(self, num_classes: int = 19, config: SSRConfig | None = None, relaxation: str = "sigmoid") -> None:
        nn.Module.__init__(self)
        self.config = config or SSRConfig()
        self.num_classes = num_classes
        self.relaxation = relaxation
        c2, c4 = self.config.stem_widths
        c8 = self.config.stages[1].width
        self.db1 = build_op(OpSpec.make("db", 3, c2, 2))
        self.db2 = build_op(OpSpec.make("db", c2, c4, 2))
        self.db3 = build_op(OpSpec.make("db", c4, c8, 2))
        self.stages = nn.ModuleList(
            nn.ModuleList(SSRMixedLayer(st.width, self.config) for _ in range(st.fixed + st.max_extra))
            for st in self.config.stages
        )
        self.head = build_op(OpSpec.make("classifier", c8, num_classes, 1))
        self.upsample = build_op(OpSpec.make("resize", num_classes, num_classes, 1, scale=8))
        self._init_decisions()
        self._cost_tables: dict[Any, Any] = {}
        for si, st in enumerate(self.config.stages):
            self._add_decision(f"stage{si + 1}.depth", "depth", list(range(1, st.max_extra + 1)))
            for li in range(st.fixed + st.max_extra):
                pre = f"stage{si + 1}.layer{li + 1}"
                self._add_decision(f"{pre}.ds", "dilation_spatial", [list(c) for c in self.config.ds_choices])
                chans = self.config.channel_choices(st.width)
                self._add_decision(f"{pre}.c3x1", "channels", chans)
                self._add_decision(f"{pre}.c1x3", "channels", chans)

    # -- decisions ------------------------------------------------------------------------------
    def choices_of(self, arch: Arch) -> dict[str, int]:
        """Candidate index per decision that ``arch`` uses (decisions of absent layers omitted)."""
        return _choice_indices(arch, self.config)

    def drop_weights(self, name: str, index: int) -> None:
        """A removed (dilation, spatial) candidate frees its branch of the layer; channel and depth candidates share weights and keep them."""
        if name.endswith(".ds"):
            si, li = _stage_layer(name)
            self.stages[si][li].remove_candidate(index)

    # -- forward --------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = self.db1(x)
        y = self.db2(x2)
        for si, (st, layers) in enumerate(zip(self.config.stages, self.stages)):
            if si == 1:
                y = self.db3(y)
            y = self._stage(si, st, layers, y)
        return self.upsample(self.head(y), size=x.shape[-2:])

    def _stage(self, si: int, st: StageConfig, layers: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
        p_depth = self.probs(f"stage{si + 1}.depth")
        alive_depth = self._alive(f"stage{si + 1}.depth")
        last = st.fixed + int(torch.nonzero(alive_depth).max()) + 1
        if self.sample_paths:
            d = _pick(p_depth, self.training)
            for li in range(st.fixed + d + 1):
                pre = f"stage{si + 1}.layer{li + 1}"
                x = layers[li](x, self.probs(f"{pre}.ds"), self.probs(f"{pre}.c3x1"), self.probs(f"{pre}.c1x3"), sample=True)
            return x * _path_gate(p_depth[d])
        out: torch.Tensor | None = None
        for li in range(last):
            pre = f"stage{si + 1}.layer{li + 1}"
            x = layers[li](x, self.probs(f"{pre}.ds"), self.probs(f"{pre}.c3x1"), self.probs(f"{pre}.c1x3"))
            d = li + 1 - st.fixed  # depth choice index (1-based) ending here
            if d >= 1 and bool(alive_depth[d - 1]):
                y = p_depth[d - 1] * x
                out = y if out is None else out + y
        assert out is not None
        return out

    def forward_path(self, x: torch.Tensor, choices: dict[str, int]) -> torch.Tensor:
        """Run exactly one discrete subnet (a candidate index per decision, as :meth:`choices_of` or
        :meth:`argmax_choices` give) with the supernet's weights: one candidate per layer, one-hot channel
        masks, the chosen depth. The output equals that of ``SSRNet(arch)`` loaded with
        :meth:`derive_weights`; one-shot training and evaluation run through here."""
        x2 = self.db1(x)
        y = self.db2(x2)
        for si, (st, layers) in enumerate(zip(self.config.stages, self.stages)):
            if si == 1:
                y = self.db3(y)
            depth = self._decisions[f"stage{si + 1}.depth"].choices[choices[f"stage{si + 1}.depth"]]
            for li in range(st.fixed + depth):
                pre = f"stage{si + 1}.layer{li + 1}"
                layer = layers[li]
                cand = layer.candidates[choices[f"{pre}.ds"]]
                if isinstance(cand, nn.Identity):
                    raise ValueError(f"candidate {choices[f'{pre}.ds']} of {pre} was removed from the supernet")
                y = cand(y, layer.masks[choices[f"{pre}.c3x1"]], layer.masks[choices[f"{pre}.c1x3"]])
        return self.upsample(self.head(y), size=x.shape[-2:])

    # -- discrete <-> relaxed -------------------------------------------------------------------
    def argmax_choices(self) -> dict[str, int]:
        """Index of the most likely surviving candidate of every decision."""
        with torch.no_grad():
            return {name: int(torch.argmax(self.probs(name))) for name in self._decisions}

    def arch_from_choices(self, choices: dict[str, int], name: str | None = None) -> Arch:
        """The discrete arch given a candidate index per decision (layers past the depth are ignored)."""
        stages = []
        for si, st in enumerate(self.config.stages):
            depth = self._decisions[f"stage{si + 1}.depth"].choices[choices[f"stage{si + 1}.depth"]]
            blocks = []
            for li in range(st.fixed + depth):
                pre = f"stage{si + 1}.layer{li + 1}"
                blocks.append(_block_of(self._decisions[f"{pre}.ds"].choices[choices[f"{pre}.ds"]],
                                        self._decisions[f"{pre}.c3x1"].choices[choices[f"{pre}.c3x1"]],
                                        self._decisions[f"{pre}.c1x3"].choices[choices[f"{pre}.c1x3"]]))
            stages.append(blocks)
        return Arch("ssr", self.num_classes, {"stages": stages}, head="classifier", name=name)

    def active_decisions(self) -> list[Decision]:
        """Decisions that can still change the network: a layer past the deepest surviving depth
        choice never runs, so its choices no longer count (SSR paper, sec. 3.5, hierarchical shrinking)."""
        out = []
        for si, st in enumerate(self.config.stages):
            alive_depth = self._alive(f"stage{si + 1}.depth")
            last = st.fixed + int(torch.nonzero(alive_depth).max()) + 1
            out.append(self._decisions[f"stage{si + 1}.depth"])
            for li in range(last):
                pre = f"stage{si + 1}.layer{li + 1}"
                out += [self._decisions[f"{pre}.ds"], self._decisions[f"{pre}.c3x1"], self._decisions[f"{pre}.c1x3"]]
        for d in out:
            d.alive = self._alive(d.name)
        return out

    def fix(self, arch: Arch) -> None:
        """Keep only the candidates ``arch`` uses (one-hot), so the supernet computes exactly that arch."""
        SSRSpace(self.config).validate(arch)
        for dec, idx in _choice_indices(arch, self.config).items():
            self._keep_only(dec, [idx])
        # layers beyond the chosen depth are never run once depth is one-hot

    def derive_weights(self, arch: Arch) -> dict[str, torch.Tensor]:
        """The state dict of ``SSRNet(arch)`` holding this supernet's weights for that arch
        (full-width convs sliced to the chosen widths)."""
        net = SSRSpace(self.config).build(arch)
        sd = {}
        src = self.state_dict()
        for k in ("db1", "db2", "db3"):
            for n, t in getattr(self, k).state_dict().items():
                sd[f"{k}.{n}"] = t.clone()
        for n, t in self.head.state_dict().items():
            sd[f"head.{n}"] = t.clone()
        for si, blocks in enumerate(arch.genotype["stages"]):
            for li, blk in enumerate(blocks):
                ci = self.config.ds_choices.index(_ds_of(blk))
                prefix = f"stages.{si}.{li}.candidates.{ci}."
                dst = f"stage{si + 1}.{li}."
                if blk.get("op") == STDC:  # full width: the candidate's weights as they are
                    names = [n for n in src if n.startswith(prefix)]
                    if not names:
                        raise ValueError(f"candidate {blk} of stage {si + 1} layer {li + 1} was removed from the supernet")
                    sd.update({dst + n[len(prefix):]: src[n].clone() for n in names})
                    continue
                a, b = blk["c3x1"], blk["c1x3"]
                if prefix + "conv3x1.weight" not in src:
                    raise ValueError(f"candidate {blk} of stage {si + 1} layer {li + 1} was removed from the supernet")
                sd[dst + "conv3x1.weight"] = src[prefix + "conv3x1.weight"][:a].clone()
                sd[dst + "conv1x3.weight"] = src[prefix + "conv1x3.weight"][:b, :a].clone()
                for bn, c in (("bn1", a), ("bn2", b)):
                    for stat in ("weight", "bias", "running_mean", "running_var"):
                        sd[dst + f"{bn}.{stat}"] = src[prefix + f"{bn}.{stat}"][:c].clone()
                    sd[dst + f"{bn}.num_batches_tracked"] = src[prefix + f"{bn}.num_batches_tracked"].clone()
        net.load_state_dict(sd, strict=True)
        return sd

    # -- expected costs (latency from a LUT, FLOPs) ---------------------------------------------
    def expected_cost(self, cost: Callable[[OpSignature], float], h: int, w: int) -> torch.Tensor:
        """E[cost] under the current relaxed distribution (CAS eq. 5), differentiable in the alphas.

        ``cost`` maps an operator signature to its cost (a LUT's latency, FLOPs...). A searchable
        layer's cost depends jointly on its (dilation, spatial) choice and both widths, so the sum
        runs over the full product of independent choices; layer ``fixed + j`` runs with probability
        P(depth >= j). Fixed parts (downsamplers, head, resize) add their cost with probability 1.
        """
        space = SSRSpace(self.config)
        device = next(iter(self.alphas.values())).device
        key = (cost, h, w)
        if key not in self._cost_tables:  # the tables depend only on (cost, size): build them once
            fixed = sum(float(cost(sig)) for sig in space.fixed_signatures(h, w, self.num_classes, "classifier"))
            tables = [torch.as_tensor(space.layer_cost_table(si, h, w, cost), dtype=torch.float32) for si in range(len(self.config.stages))]
            self._cost_tables[key] = (fixed, tables)
        fixed, tables = self._cost_tables[key]
        total = torch.full((), fixed, device=device)
        for si, st in enumerate(self.config.stages):
            table = tables[si].to(device)
            p_depth = self.probs(f"stage{si + 1}.depth")
            for li in range(st.fixed + st.max_extra):
                d = li + 1 - st.fixed
                p_run = p_depth[max(d, 1) - 1 :].sum() if d >= 1 else torch.ones((), device=device)
                pre = f"stage{si + 1}.layer{li + 1}"
                e = torch.einsum("i,j,k,ijk->", self.probs(f"{pre}.ds"), self.probs(f"{pre}.c3x1"), self.probs(f"{pre}.c1x3"), table)
                total = total + p_run * e
        return total


def _stage_layer(name: str) -> tuple[int, int]:
    parts = name.split(".")
    return int(parts[0][len("stage") :]) - 1, int(parts[1][len("layer") :]) - 1


def _choice_indices(arch: Arch, config: SSRConfig) -> dict[str, int]:
    out: dict[str, int] = {}
    for si, (st, blocks) in enumerate(zip(config.stages, arch.genotype["stages"])):
        out[f"stage{si + 1}.depth"] = len(blocks) - st.fixed - 1
        chans = config.channel_choices(st.width)
        for li, blk in enumerate(blocks):
            pre = f"stage{si + 1}.layer{li + 1}"
            ds = _ds_of(blk)
            if ds[0] == STDC and ds not in config.ds_choices:
                raise RtsegError(f"arch: stage {si + 1} layer {li + 1} is an STDC layer, which this space leaves out (--space-opt stdc=false); search it in the default ssr space")
            out[f"{pre}.ds"] = config.ds_choices.index(ds)
            # an STDC layer has no widths of its own: its width decisions sit at full width
            out[f"{pre}.c3x1"] = chans.index(blk.get("c3x1", st.width))
            out[f"{pre}.c1x3"] = chans.index(blk.get("c1x3", st.width))
    return out


class SSRSpace(SearchSpace):
    name = "ssr"
    reference_family = "baseline1"
    size_divisor = 16  # H/8 stage with a 2x2 spatial pool
    heads = ("classifier", "aggregation")

    def __init__(self, config: SSRConfig | None = None) -> None:
        self.config = config or SSRConfig()

    def options(self) -> dict[str, Any]:
        return {} if self.config.stdc else {"stdc": False}

    def unrecorded_options(self) -> dict[str, Any]:
        """LUTs written before STDC layers were the default record no options, and priced NB-1D layers only."""
        return {"stdc": False}

    def layer_kind_references(self, price: Callable[[Arch], float], high_ms: float, num_classes: int) -> list[tuple[Arch, str]]:
        """With STDC layers: every searchable layer an STDC module, at full and at half resolution, each
        at the depths that come nearest ``high_ms`` without passing it (the shallowest where none fits,
        for the search to move into its band by a few changed layers)."""
        if not self.config.stdc:
            return []
        depths = list(itertools.product(*(range(st.fixed + 1, st.fixed + st.max_extra + 1) for st in self.config.stages)))
        out = []
        for spatial in self.config.spatials:
            nets = [Arch("ssr", num_classes, {"stages": [[{"op": STDC, "spatial": spatial} for _ in range(n)] for n in d]},
                         head="classifier", name=f"uniform-stdc-s{spatial}") for d in depths]
            fitting = [(ms, i) for i, ms in enumerate(map(price, nets)) if ms <= high_ms]
            out.append((nets[max(fitting)[1]] if fitting else nets[0], f"reference-stdc-s{spatial}"))
        return out

    def options_needed(self, arch: Arch) -> dict[str, Any]:
        stdc = any(isinstance(b, dict) and b.get("op") == STDC for st in arch.genotype.get("stages", []) for b in st)
        return {"stdc": True} if stdc else {}

    def with_options(self, options: Mapping[str, Any]) -> "SSRSpace":
        """``stdc``: offer the residual STDC module as a layer choice (the module docstring). The rest of
        the space is its paper's backbone and has no options."""
        unknown = set(options) - {"stdc"}
        if unknown:
            raise RtsegError(f"space 'ssr' takes only --space-opt stdc=true|false (got {', '.join(sorted(unknown))}); "
                             "the rest of its size is fixed by its paper's backbone")
        value = options.get("stdc", self.config.stdc)
        if not isinstance(value, bool):
            raise RtsegError(f"--space-opt stdc={value!r}: write stdc=true or stdc=false")
        return SSRSpace(replace(self.config, stdc=value))

    # -- validation -----------------------------------------------------------------------------
    def validate(self, arch: Arch, source: str = "arch") -> None:
        cfg = self.config
        if arch.head not in self.heads:
            raise RtsegError(f"{source}: head {arch.head!r} is not one of {', '.join(self.heads)}")
        stages = arch.genotype.get("stages")
        if not isinstance(stages, list) or len(stages) != len(cfg.stages):
            raise RtsegError(f"{source}: genotype.stages must be a list of {len(cfg.stages)} stages")
        for si, (st, blocks) in enumerate(zip(cfg.stages, stages)):
            where = f"{source}: genotype.stages[{si}]"
            lo, hi = st.fixed + 1, st.fixed + st.max_extra
            if not isinstance(blocks, list) or not lo <= len(blocks) <= hi:
                n = len(blocks) if isinstance(blocks, list) else type(blocks).__name__
                raise RtsegError(f"{where} must list {lo} to {hi} blocks, got {n}")
            chans = cfg.channel_choices(st.width)
            for bi, blk in enumerate(blocks):
                w = f"{where}[{bi}]"
                if not isinstance(blk, dict):
                    raise RtsegError(f"{w} must be an object with dilation, spatial, c3x1, c1x3")
                if "op" in blk:
                    if blk["op"] != STDC:
                        raise RtsegError(f"{w}.op = {blk['op']!r} is unknown; the only layer op is {STDC!r} (an NB-1D layer has no op)")
                    extra = set(blk) - {"op", "spatial"}
                    if extra:
                        raise RtsegError(f"{w} is an STDC layer, whose width is the stage's; it takes only op and spatial, not {', '.join(sorted(extra))}")
                    if blk.get("spatial") not in cfg.spatials or isinstance(blk.get("spatial"), bool):
                        raise RtsegError(f"{w}.spatial = {blk.get('spatial')!r} is out of range; allowed: {', '.join(map(str, cfg.spatials))}")
                    continue
                for key, allowed in (("dilation", cfg.dilations), ("spatial", cfg.spatials), ("c3x1", chans), ("c1x3", chans)):
                    if key not in blk:
                        raise RtsegError(f"{w} lacks {key!r}")
                    if blk[key] not in allowed or isinstance(blk[key], bool):
                        raise RtsegError(f"{w}.{key} = {blk[key]!r} is out of range; allowed: {', '.join(map(str, allowed))}")
                extra = set(blk) - {"dilation", "spatial", "c3x1", "c1x3"}
                if extra:
                    raise RtsegError(f"{w} has unknown fields: {', '.join(sorted(extra))}")

    # -- sampling, building ---------------------------------------------------------------------
    def sample(self, rng: random.Random, num_classes: int = 19, head: str = "classifier") -> Arch:
        if self.config.stdc:
            return self._sample_with_stdc(rng, num_classes, head)
        stages = []
        for st in self.config.stages:
            n = st.fixed + rng.randint(1, st.max_extra)
            chans = self.config.channel_choices(st.width)
            stages.append(
                [
                    {"dilation": rng.choice(self.config.dilations), "spatial": rng.choice(self.config.spatials), "c3x1": rng.choice(chans), "c1x3": rng.choice(chans)}
                    for _ in range(n)
                ]
            )
        return Arch("ssr", num_classes, {"stages": stages}, head=head)

    def _sample_with_stdc(self, rng: random.Random, num_classes: int, head: str) -> Arch:
        """Uniform over every layer choice, STDC ones included (the plain space keeps its own draw, so
        its seeded samples stay what they were)."""
        stages = []
        for st in self.config.stages:
            chans = self.config.channel_choices(st.width)
            n = st.fixed + rng.randint(1, st.max_extra)
            stages.append([_block_of(rng.choice(self.config.ds_choices), rng.choice(chans), rng.choice(chans)) for _ in range(n)])
        return Arch("ssr", num_classes, {"stages": stages}, head=head)

    def uniform_arch(self, depths: Iterable[int], num_classes: int = 19, head: str = "classifier", dilation: int = 1,
                     spatial: int = 1, channel_offset: int = 0, name: str | None = None) -> Arch:
        """An arch with the same block everywhere (baselines, the cheapest and dearest archs)."""
        stages = []
        for st, n in zip(self.config.stages, depths):
            c = st.width - channel_offset
            stages.append([{"dilation": dilation, "spatial": spatial, "c3x1": c, "c1x3": c} for _ in range(n)])
        return Arch("ssr", num_classes, {"stages": stages}, head=head, name=name)

    def build(self, arch: Arch) -> SSRNet:
        self.validate(arch)
        return SSRNet(arch, self.config)

    def supernet(self, num_classes: int = 19, relaxation: str | None = None) -> SSRSupernet:
        return SSRSupernet(num_classes, self.config, relaxation=relaxation or "sigmoid")

    # -- signatures -----------------------------------------------------------------------------
    def _sizes(self, h: int, w: int) -> dict[int, tuple[int, int]]:
        sizes = {1: (h, w)}
        for f in (2, 4, 8):
            ph, pw = sizes[f // 2]
            sizes[f] = ((ph + 1) // 2, (pw + 1) // 2)
        return sizes

    def fixed_signatures(self, h: int, w: int, num_classes: int, head: str) -> list[OpSignature]:
        """Parts every arch has: the three downsamplers, the head and the final resize."""
        c2, c4 = self.config.stem_widths
        c8 = self.config.stages[1].width
        sz = self._sizes(h, w)
        sigs = [
            OpSpec.make("db", 3, c2, 2).at(*sz[1]),
            OpSpec.make("db", c2, c4, 2).at(*sz[2]),
            OpSpec.make("db", c4, c8, 2).at(*sz[4]),
        ]
        if head == "aggregation":
            sigs += [OpSpec.make("aggregation", c2, num_classes, 1, c4=c4, c8=c8, mid=c4).at(*sz[2]),
                     OpSpec.make("resize", num_classes, num_classes, 1, scale=4).at(*sz[4])]
        else:
            sigs += [OpSpec.make("classifier", c8, num_classes, 1).at(*sz[8]),
                     OpSpec.make("resize", num_classes, num_classes, 1, scale=8).at(*sz[8])]
        return sigs

    def signatures(self, arch: Arch, h: int, w: int) -> list[OpSignature]:
        """Signatures in execution order (downsamplers and blocks, then head and resize)."""
        sz = self._sizes(h, w)
        fixed = self.fixed_signatures(h, w, arch.num_classes, arch.head)
        sigs = [fixed[0], fixed[1]]
        for si, (st, blocks) in enumerate(zip(self.config.stages, arch.genotype["stages"])):
            if si == 1:
                sigs.append(fixed[2])
            sigs += [_block_spec(st.width, b).at(*sz[st.downsample]) for b in blocks]
        return sigs + fixed[3:]

    def layer_signature(self, stage: int, ds: tuple[Any, int], c3x1: int, c1x3: int, h: int, w: int) -> OpSignature:
        st = self.config.stages[stage]
        blk = _block_of(ds, c3x1, c1x3)
        return _block_spec(st.width, blk).at(*self._sizes(h, w)[st.downsample])

    def layer_cost_table(self, stage: int, h: int, w: int, cost: Callable[[OpSignature], float]) -> list[list[list[float]]]:
        """cost[ds][c3x1][c1x3] for one searchable layer of ``stage`` (same for every layer of it)."""
        chans = self.config.channel_choices(self.config.stages[stage].width)
        return [[[float(cost(self.layer_signature(stage, ds, a, b, h, w))) for b in chans] for a in chans] for ds in self.config.ds_choices]

    def cheapest_arch(self, cost: Callable[[OpSignature], float], h: int, w: int, num_classes: int = 19) -> Arch:
        """The arch of least total ``cost`` (every layer of a stage has the same candidates and input
        size, so it is the shallowest depth with the cheapest block everywhere)."""
        stages = []
        for si, st in enumerate(self.config.stages):
            chans = self.config.channel_choices(st.width)
            table = self.layer_cost_table(si, h, w, cost)
            best = min(((table[i][a][b], i, a, b) for i in range(len(table)) for a in range(len(chans)) for b in range(len(chans))))
            blk = _block_of(self.config.ds_choices[best[1]], chans[best[2]], chans[best[3]])
            stages.append([dict(blk) for _ in range(st.fixed + 1)])
        return Arch("ssr", num_classes, {"stages": stages}, head="classifier", name="cheapest")

    def candidate_signatures(self, h: int, w: int, num_classes: int = 19, heads: tuple[str, ...] | None = None) -> list[OpSignature]:
        """Every distinct signature an arch of this space can place at ``h x w``."""
        self.check_input(h, w)
        seen: dict[str, OpSignature] = {}
        for head in heads or ("classifier",):
            for s in self.fixed_signatures(h, w, num_classes, head):
                seen.setdefault(s.key, s)
        for si, st in enumerate(self.config.stages):
            chans = self.config.channel_choices(st.width)
            for ds in self.config.ds_choices:
                for a in chans:
                    for b in chans:
                        s = self.layer_signature(si, ds, a, b, h, w)
                        seen.setdefault(s.key, s)
        return list(seen.values())


@register_space("ssr")
def _ssr_space() -> SSRSpace:
    return SSRSpace()
