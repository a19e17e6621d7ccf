"""Hand-designed families scaled to a latency budget: the peers a searched net has to beat.

A searched net is only worth its search if it is more accurate than what a user gets by taking a
known design and shrinking or growing it to the same latency. A :class:`Family` is such a design
with scale knobs; its members are Arch JSONs of an existing space (so they build, count FLOPs,
export and benchmark like any arch), listed along the family's scaling rule over a grid of its knobs,
smallest first.
:func:`pick_nearest` measures members with the measuring callable it is given (the deploy backend's
:class:`rtseg.backends.measure.LatencyMeasure`, or a LUT's prediction) and returns the one whose
latency is nearest a budget T.

Families (``FAMILIES``; ``rtseg arch families`` lists them):

``baseline1``
    SSR's baseline1 (5 + 8 NB-1D blocks, dilation 1, full width, 1x1 classifier at 1/8) scaled inside
    the ``ssr`` space, so an ssr LUT predicts every member: ``depth`` adds or removes blocks in both
    stages (-2..+2, the space's 3..7 and 6..10 blocks), ``narrow`` removes channels from every block's
    3x1 and 1x3 convs (0..32 step 4, the space's channel choices). Below the smallest of those
    (0.42 of baseline1's multiply-adds) the space has no thinner or shallower net,
    so the family continues by resolution, the third scaling dimension of EfficientNet: ``half_res``
    runs the last 1..6 blocks of stage 2 at half resolution (the space's spatial factor 2).
``erfnet``
    ERFNet (Romera et al., IEEE T-ITS 2018) with a width multiplier (0.125..1, channels in multiples
    of 8) and a depth multiplier (0.25..1 step 1/8 of every run of blocks), see
    :mod:`rtseg.spaces.peers`.
``lraspp_mbv3``, ``lraspp_mbv3_os8``
    LR-ASPP on MobileNetV3-Large (Howard et al., ICCV 2019, sec. 6.1.2; torchvision's layout) at
    output stride 16 or 8, with a width multiplier (0.25..1.5, channels in multiples of 8 as
    MobileNetV3's own width multiplier) and a depth multiplier (0.5 or 1 of every run of identity
    blocks).

``stdc``
    STDC1-Seg (Fan et al., "Rethinking BiSeNet for Real-time Semantic Segmentation", CVPR 2021: STDC
    modules, the STDC1 stages, the context path and FFM on the 1/8 detail feature) with a width
    multiplier (0.25..1.5 of every channel count) and a depth multiplier of each stage's two modules
    (0.5..2; 2 gives four per stage, near STDC2's 4, 5, 3).
``ddrnet``
    DDRNet-23-slim (Hong et al., "Deep Dual-resolution Networks for Real-time and Accurate Semantic
    Segmentation of Road Scenes", 2021), the two-branch design also of BiSeNet V2 (Yu et al., IJCV
    2021): a high-resolution branch at 1/8, a low-resolution one to 1/64, bilateral fusion and DAPPM,
    with a width multiplier (0.25..2 of the base width 32; 2 is DDRNet-23) and a depth multiplier (0.5
    or 1 of each run of two basic blocks).

Both scale along their width at the published depth (the ``width`` rule, as MobileNetV3): their
runs are two blocks long, so any depth below the published one halves a run at once, a jump in
latency that compound scaling would put in the middle of the path, where budgets fall between two
members. The depth knob is held with ``fixed`` (``--fix depth=0.5``), and the picker's refinement
between two path members also tries the other depth.

Width grids step by 1/16, which moves the widest layers by 8 channels: the finest step the
multiple-of-8 rounding allows, so the grid itself is the fine search the budget needs.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Iterable, Mapping, Sequence

from rtseg.arch import Arch
from rtseg.errors import RtsegError
from rtseg.flops import sum_op_flops
from rtseg.ops import OpSignature
from rtseg.spaces.base import get_space, load_arch, validate_arch
from rtseg.spaces.peers import PEER_SOURCES

#: How close to the budget a pick should land (a fraction of T).
DEFAULT_TOL = 0.05


@dataclass(frozen=True)
class Knob:
    """One scale knob: its grid (smallest net first) and its value in the unscaled design."""

    name: str
    grid: tuple[Any, ...]
    default: Any
    help: str


@dataclass(frozen=True)
class Member:
    """One member of a family: its knob values, its arch and its operator signatures at the input size."""

    family: str
    knobs: dict[str, Any]
    arch: Arch
    sigs: tuple[OpSignature, ...] = field(repr=False)
    ops: str = field(default="", compare=False)  # digest of its operator signatures: equal nets, equal digest

    @cached_property
    def flops(self) -> int:
        """Multiply-adds at the input size, per operator signature (:func:`rtseg.flops.sum_op_flops`, as
        ``arch show`` counts them); counted on first use, which for a large family is most of its cost."""
        return sum_op_flops(self.sigs)

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, "name": self.arch.name, "knobs": dict(self.knobs), "flops": self.flops}


class Family:
    """A hand-designed net with scale knobs. Subclasses give :attr:`knobs` and :meth:`make`."""

    name: str = ""
    space: str = ""
    source: str = ""
    rule: str = "grid"  # how the knobs move together when none is held (see ``settings``)
    #: True when every knob grows (towards a larger net) along ``settings``: its order is then the size order
    ordered_path: bool = False
    knobs: tuple[Knob, ...] = ()

    def make(self, num_classes: int, knobs: Mapping[str, Any]) -> Arch:  # pragma: no cover - overridden
        raise NotImplementedError

    def settings(self) -> list[dict[str, Any]]:
        """The knob settings of the family's scaling rule (by default the product of the knob grids;
        a family that scales its knobs together lists that path instead)."""
        return self.grid_settings()

    def grid_settings(self, fixed: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """The product of the knob grids, the knobs in ``fixed`` held at their values."""
        fixed = dict(fixed or {})
        names = [k.name for k in self.knobs]
        grids = [(fixed[k.name],) if k.name in fixed else k.grid for k in self.knobs]
        return [dict(zip(names, vals)) for vals in itertools.product(*grids)]

    def check_knobs(self, knobs: Mapping[str, Any]) -> dict[str, Any]:
        known = {k.name: k for k in self.knobs}
        unknown = set(knobs) - set(known)
        if unknown:
            raise RtsegError(f"family {self.name!r} has no knob {', '.join(sorted(unknown))}; its knobs: {', '.join(known)}")
        return {k.name: knobs.get(k.name, k.default) for k in self.knobs}

    def arch(self, num_classes: int = 19, **knobs: Any) -> Arch:
        """The member at ``knobs`` (the others at the unscaled design's values), named after them and
        recording the family, its knobs and its source in ``meta``."""
        full = self.check_knobs(knobs)
        arch = self.make(num_classes, full)
        changed = ",".join(f"{k}={_fmt(v)}" for k, v in full.items() if v != self._knob(k).default)
        arch.name = f"{self.name}({changed})" if changed else self.name
        arch.meta = {**arch.meta, "family": {"name": self.name, "knobs": full, "source": self.source}}
        return arch

    def _knob(self, name: str) -> Knob:
        return next(k for k in self.knobs if k.name == name)

    def distinct(self, input_hw: tuple[int, int] = (128, 256), num_classes: int = 19,
                 fixed: Mapping[str, Any] | None = None, grid: bool = False) -> dict[str, tuple[dict[str, Any], Arch, list[Any]]]:
        """Digest of the operator signatures -> (knobs, arch, signatures) for every distinct net of the
        scaling rule (or of the product grid: ``grid``, or whenever ``fixed`` holds some knobs). Two
        settings that round to the same operators are one net; on the rule's path the larger setting
        names it (so the top of a peer family is the published net)."""
        fixed = dict(fixed or {})
        self.check_knobs(fixed)
        h, w = input_hw
        space = get_space(self.space)
        space.check_input(h, w)
        path = not fixed and not grid
        seen: dict[str, tuple[dict[str, Any], Arch, list[Any]]] = {}
        for s in (self.settings() if path else self.grid_settings(fixed)):
            arch = self.arch(num_classes, **s)
            sigs = space.signatures(arch, h, w)
            key = hashlib.sha1("\n".join(sig.key for sig in sigs).encode()).hexdigest()
            if key not in seen or path:
                seen[key] = (self.check_knobs(s), arch, sigs)
        return seen

    def members(self, input_hw: tuple[int, int] = (128, 256), num_classes: int = 19,
                fixed: Mapping[str, Any] | None = None, grid: bool = False) -> list[Member]:
        """Every distinct net of the family's scaling rule, smallest first. ``fixed`` holds some knobs
        at given values and scales the others over their grids instead; ``grid`` lists the full product
        grid of the knobs rather than the scaling rule. A rule whose knobs only grow along its path
        (:attr:`ordered_path`) is listed in path order, along which multiply-adds never decrease; any
        other list is sorted by multiply-adds."""
        found = self.distinct(input_hw, num_classes, fixed, grid)
        out = [Member(self.name, knobs, arch, tuple(sigs), key) for key, (knobs, arch, sigs) in found.items()]
        if self.ordered_path and not fixed and not grid:
            return out
        return sorted(out, key=lambda m: (m.flops, m.arch.name or ""))


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _width_grid(lo_16ths: int, hi_16ths: int) -> tuple[float, ...]:
    return tuple(k / 16 for k in range(lo_16ths, hi_16ths + 1))


class Baseline1Family(Family):
    name = "baseline1"
    space = "ssr"
    rule = "depth x width grid, then stage-2 resolution"
    source = ("SSR's baseline1 (5 + 8 NB-1D blocks, dilation 1, full width, Table 7 of the SSR paper) scaled in depth, "
              "width and, below the ssr space's thinnest and shallowest net, stage-2 resolution")
    knobs = (
        Knob("depth", (-2, -1, 0, 1, 2), 0, "NB-1D blocks added to each stage (baseline1: 5 at 1/4, 8 at 1/8)"),
        Knob("narrow", tuple(range(32, -1, -4)), 0, "channels removed from every block's 3x1 and 1x3 convs (of 64 and 128)"),
        Knob("half_res", tuple(range(6, -1, -1)), 0, "last blocks of stage 2 run at half resolution (spatial factor 2)"),
    )

    def settings(self) -> list[dict[str, Any]]:
        """Depth x width at full resolution, then, from the thinnest and shallowest of those, more and
        more stage-2 blocks at half resolution: one path that keeps shrinking where the space stops."""
        out = [{"depth": d, "narrow": n, "half_res": 0} for d in (-2, -1, 0, 1, 2) for n in range(32, -1, -4)]
        return out + [{"depth": -2, "narrow": 32, "half_res": k} for k in range(1, 7)]

    def make(self, num_classes: int, knobs: Mapping[str, Any]) -> Arch:
        for k in self.knobs:
            v = knobs[k.name]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v) or int(v) not in k.grid:
                raise RtsegError(f"family baseline1: {k.name} = {v!r} is not one of {', '.join(map(str, sorted(k.grid)))}")
        base = load_arch("baseline1")
        depth, narrow, half = int(knobs["depth"]), int(knobs["narrow"]), int(knobs["half_res"])
        stages = []
        for blocks in base.genotype["stages"]:
            n = len(blocks) + depth
            c = blocks[0]["c3x1"] - narrow
            stages.append([{"dilation": 1, "spatial": 1, "c3x1": c, "c1x3": c} for _ in range(n)])
        for blk in stages[1][len(stages[1]) - half:]:
            blk["spatial"] = 2
        arch = Arch("ssr", num_classes, {"stages": stages}, head="classifier")
        get_space("ssr").validate(arch, source=f"family baseline1 at {dict(knobs)}")
        return arch


#: EfficientNet's compound-scaling bases (Tan & Le, ICML 2019, sec. 3.3): depth alpha^phi, width beta^phi.
COMPOUND_ALPHA, COMPOUND_BETA = 1.2, 1.1


class PeerFamily(Family):
    """A peer of the ``peer`` space scaled by its ``width`` and ``depth`` genotype fields.

    ``rule`` is how the two move together when neither is held: ``compound`` follows EfficientNet's
    compound scaling with its published bases (depth = alpha^phi, width = beta^phi, so depth =
    width^(ln alpha / ln beta)); ``width`` keeps the published depth and scales the width alone, the
    way MobileNetV3 itself is scaled (its width multiplier). One knob moving both keeps the measured
    latency monotone along the family, which the picking bisection relies on: over a product grid,
    multiply-adds order the members but not their latency (a deep, thin ERFNet runs slower than a
    shallow, wider one with more multiply-adds, its many small layers each paying a fixed cost)."""

    space = "peer"
    ordered_path = True

    def __init__(self, name: str, model: str, widths: tuple[float, ...], depths: tuple[float, ...], rule: str,
                 extra: Mapping[str, Any] | None = None, note: str = "") -> None:
        if rule not in ("compound", "width"):
            raise ValueError(f"unknown scaling rule {rule!r}")
        self.name = name
        self.model = model
        self.rule = rule
        self.extra = dict(extra or {})
        how = ("compound scaling of width and depth (EfficientNet, Tan & Le, ICML 2019)" if rule == "compound"
               else "a width multiplier (as MobileNetV3)")
        self.source = PEER_SOURCES[model] + (f"; {note}" if note else "") + f"; scaled by {how}"
        self.knobs = (
            Knob("width", widths, 1.0, "channel multiplier (channels rounded to multiples of 8)"),
            Knob("depth", depths, 1.0, "multiplier of every run of repeated blocks (ceil, at least one)"),
        )

    def settings(self) -> list[dict[str, Any]]:
        """Width on a grid of 1/32 steps over the width knob's range; depth 1, or width^(ln alpha /
        ln beta) for compound scaling (clamped to the depth knob's range)."""
        wk, dk = self.knobs
        lo, hi = min(wk.grid), max(wk.grid)
        widths = [k / 32 for k in range(math.ceil(lo * 32), math.floor(hi * 32) + 1)]
        if self.rule == "width":
            return [{"width": w, "depth": 1.0} for w in widths]
        exp = math.log(COMPOUND_ALPHA) / math.log(COMPOUND_BETA)
        return [{"width": w, "depth": round(min(max(w ** exp, min(dk.grid)), max(dk.grid)), 4)} for w in widths]

    def make(self, num_classes: int, knobs: Mapping[str, Any]) -> Arch:
        g = {"model": self.model, "width": float(knobs["width"]), "depth": float(knobs["depth"]), **self.extra}
        return Arch.from_dict(Arch("peer", num_classes, g).to_dict(), source=f"family {self.name} at {dict(knobs)}", check=validate_arch)


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Baseline1Family(),
        PeerFamily("erfnet", "erfnet", _width_grid(2, 16), tuple(k / 8 for k in range(1, 9)), "compound"),
        PeerFamily("lraspp_mbv3", "lraspp_mbv3", _width_grid(4, 24), (0.5, 0.6, 1.0), "width"),
        PeerFamily("lraspp_mbv3_os8", "lraspp_mbv3", _width_grid(4, 24), (0.5, 0.6, 1.0), "width", {"output_stride": 8},
                   "output stride 8"),
        PeerFamily("stdc", "stdc", _width_grid(4, 24), (0.5, 1.0, 1.5, 2.0), "width"),
        PeerFamily("ddrnet", "ddrnet", _width_grid(4, 32), (0.5, 1.0), "width"),
    )
}


def family_names() -> list[str]:
    return list(FAMILIES)


def get_family(name: str | Family) -> Family:
    if isinstance(name, Family):
        return name
    try:
        return FAMILIES[name]
    except KeyError:
        raise RtsegError(f"unknown family {name!r}; available: {', '.join(FAMILIES)}") from None


# -- measuring and picking --------------------------------------------------------------------------


@dataclass
class Pick:
    """What :func:`pick_nearest` chose, with every member it measured on the way."""

    family: str
    target_ms: float
    member: Member
    measured_ms: float
    tol: float
    tried: list[dict[str, Any]]
    measure: dict[str, Any] = field(default_factory=dict)
    range_ms: tuple[float, float] | None = None  # measured latency of the smallest and largest member, when measured

    @property
    def error(self) -> float:
        """(measured - T) / T."""
        return self.measured_ms / self.target_ms - 1.0

    @property
    def within_tol(self) -> bool:
        return abs(self.error) <= self.tol

    def arch(self) -> Arch:
        """The picked arch, its measured latency and the measurement's settings recorded in ``meta``."""
        arch = load_arch(self.member.arch.to_dict())
        arch.meta["latency"] = {"target_ms": self.target_ms, "measured_ms": self.measured_ms, "error": self.error,
                                "within_tol": self.within_tol, "tol": self.tol, **self.measure}
        return arch

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, "target_ms": self.target_ms, "measured_ms": self.measured_ms, "error": self.error,
                "within_tol": self.within_tol, "tol": self.tol, "member": self.member.to_dict(), "measure": self.measure,
                "tried": self.tried, "arch": self.arch().to_dict()}


def _around(lo: int, hi: int, n: int, window: int) -> Iterable[int]:
    """Indices just outside the bracket [lo, hi], nearest first."""
    for k in range(1, window + 1):
        for i in (lo - k, hi + k):
            if 0 <= i < n:
                yield i


def pick_nearest(family: str | Family, target_ms: float, measure: Callable[[Arch], float], *,
                 input_hw: tuple[int, int] = (128, 256), num_classes: int = 19, tol: float = DEFAULT_TOL,
                 fixed: Mapping[str, Any] | None = None, refine: int = 4, window: int = 2, confirm: int = 3,
                 on_measure: Callable[[Member, float], None] | None = None) -> Pick:
    """The member of ``family`` whose latency, as ``measure(arch)`` (ms) gives it, is nearest
    ``target_ms``.

    1. A bisection over the family's members (its scaling rule, smallest first) finds the
       two neighbours whose measured latency brackets T (about log2(members) measurements).
    2. When neither is within ``tol`` of T, the finer grid: up to ``refine`` members of the knobs'
       product grid that lie between the two (see :func:`_between`) are measured, nearest first.
    3. Measured latency is not exactly monotone in multiply-adds (a shared machine adds noise), so
       while no measured member is within ``tol``, the ``window`` members on each side of the bracket
       are measured too.
    4. When ``measure`` also has a ``many(archs)`` method (:class:`rtseg.backends.measure.LatencyMeasure` has), the
       ``confirm`` members nearest T are timed again together, interleaved, and the pick is made on
       those figures (``tried`` keeps the first figure as ``search_ms``): on a shared machine,
       one-at-a-time timings drift between members.

    When T lies outside the family's range the nearest end is returned and :attr:`Pick.within_tol`
    says so."""
    fam = get_family(family)
    if not target_ms > 0:
        raise RtsegError(f"the latency budget must be a positive number of milliseconds, got {target_ms!r}")
    if not 0 < tol < 1:
        raise RtsegError(f"the tolerance is a fraction of the budget in (0, 1), got {tol!r}")
    members = fam.members(input_hw, num_classes, fixed)
    cache: dict[str, float] = {}
    seen: dict[str, Member] = {}

    def lat(m: Member) -> float:
        if m.ops not in cache:
            cache[m.ops], seen[m.ops] = float(measure(m.arch)), m
            if on_measure is not None:
                on_measure(m, cache[m.ops])
        return cache[m.ops]

    def close_enough() -> bool:
        return min(abs(v / target_ms - 1.0) for v in cache.values()) <= tol

    lo, hi = _bisect(members, lat, target_ms)
    if not close_enough() and lo != hi:
        a, b = members[lo], members[hi]
        for m in _between(fam, a, b, cache[a.ops], cache[b.ops], target_ms, input_hw, num_classes, fixed)[:refine]:
            lat(m)
            if close_enough():
                break
    for i in _around(lo, hi, len(members), window):
        if close_enough():
            break
        lat(members[i])
    span = (cache[members[0].ops], cache[members[-1].ops]) if members[0].ops in cache and members[-1].ops in cache else None
    first = dict(cache)
    many = getattr(measure, "many", None)
    if confirm > 1 and callable(many) and len(cache) > 1:
        near = sorted(cache, key=lambda k: abs(cache[k] - target_ms))[:confirm]
        for k, ms in zip(near, many([seen[k].arch for k in near])):
            cache[k] = float(ms)
            if on_measure is not None:
                on_measure(seen[k], cache[k])
    best = min(cache, key=lambda k: (abs(cache[k] - target_ms), seen[k].flops))
    tried = [{**seen[k].to_dict(), "measured_ms": cache[k], **({"search_ms": first[k]} if cache[k] != first[k] else {})}
             for k in sorted(cache, key=lambda k: seen[k].flops)]
    return Pick(fam.name, float(target_ms), seen[best], cache[best], tol, tried,
                getattr(measure, "record", {"measure": getattr(measure, "__name__", type(measure).__name__)}), span)


def _between(fam: Family, a: Member, b: Member, lat_a: float, lat_b: float, target_ms: float, input_hw: tuple[int, int],
             num_classes: int, fixed: Mapping[str, Any] | None) -> list[Member]:
    """Members of the knobs' product grid that lie between two neighbours ``a`` < ``b`` of the scaling
    rule: multiply-adds strictly between theirs, every knob within one grid step of the range the two
    span. Ordered by how near their multiply-adds are to the ones that would run in T, interpolated
    log-linearly from the two measurements (the rule's step can be coarse where one channel count
    rounds to the next multiple of 8; a neighbour that moves one knob alone is often nearer T)."""
    fixed = dict(fixed or {})

    def near(knobs: Mapping[str, Any]) -> bool:
        for k in fam.knobs:
            if k.name in fixed:
                continue
            lo_v, hi_v = sorted((a.knobs[k.name], b.knobs[k.name]))
            vals = sorted(set(k.grid) | {lo_v, hi_v})
            i, j = vals.index(lo_v), vals.index(hi_v)
            if knobs[k.name] not in vals[max(0, i - 1): j + 2]:
                return False
        return True

    cands = []
    for key, (knobs, arch, sigs) in fam.distinct(input_hw, num_classes, fixed, grid=True).items():
        if key in (a.ops, b.ops) or not near(knobs):
            continue
        m = Member(fam.name, knobs, arch, tuple(sigs), key)  # multiply-adds counted only for the few near the bracket
        if a.flops < m.flops < b.flops:
            cands.append(m)
    t = math.log(target_ms / lat_a) / math.log(lat_b / lat_a) if lat_b > lat_a > 0 else 0.5
    goal = math.log(a.flops) + min(max(t, 0.0), 1.0) * (math.log(b.flops) - math.log(a.flops))
    return sorted(cands, key=lambda m: abs(math.log(m.flops) - goal))


def _bisect(members: Sequence[Member], lat: Callable[[Member], float], target_ms: float) -> tuple[int, int]:
    """Indices (lo, hi) of adjacent members whose latency brackets T (lo == hi at either end)."""
    lo, hi = 0, len(members) - 1
    if lat(members[lo]) >= target_ms:
        return lo, lo
    if lat(members[hi]) <= target_ms:
        return hi, hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if lat(members[mid]) < target_ms:
            lo = mid
        else:
            hi = mid
    return lo, hi


def parse_knobs(items: Sequence[str]) -> dict[str, Any]:
    """``["depth=0.5", "half_res=2"]`` -> ``{"depth": 0.5, "half_res": 2}`` (numbers as numbers)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise RtsegError(f"a knob is given as NAME=VALUE (e.g. width=0.5), got {item!r}")
        try:
            val: Any = int(text)
        except ValueError:
            try:
                val = float(text)
            except ValueError:
                raise RtsegError(f"knob {key.strip()!r} needs a number, got {text!r}") from None
        out[key.strip()] = val
    return out
