"""Measuring the entries of a LUT (:mod:`rtseg.latency.profile` runs them): one operator signature
alone or in a stack (the ``isolated`` and ``network`` methods), many at once in one prepared batch,
the quick recheck of an entry, and the skeleton network whose end-to-end time sets a head's constant.
"""

from __future__ import annotations

import random
import statistics
from typing import Any, Sequence

import torch
from torch import nn

from rtseg.backends.timers import OpTimer, input_bytes
from rtseg.backends.timing import TimingStats
from rtseg.errors import RtsegError
from rtseg.latency.speed import SpeedReference
from rtseg.ops import Op, OpSignature, OpSpec, build_op, op_class

METHODS = ("network", "isolated")
#: The default method: isolated per-op sums under-predict whole networks (each operator timed alone
#: runs with warmer caches than inside a net); the network method predicts them closer (the
#: comparison measured on a CPU is in docs/luts.md, "The prediction model").
DEFAULT_METHOD = "network"
#: Defaults sized so the whole ssr space (about 1,600 signatures) profiles in minutes on a small CPU at
#: 128x256 (wall times measured: docs/luts.md); ``min_time_s`` adds repeats to
#: sub-millisecond operators so their median rests on enough samples.
DEFAULT_WARMUP = 5
DEFAULT_REPEATS = 25
DEFAULT_MIN_TIME_S = 0.03
DEFAULT_MAX_REPEATS = 400
DEFAULT_STACK = 3
#: Keep sampling an entry until its median's 95% CI is within 5% (at most DEFAULT_MAX_REPEATS runs or
#: DEFAULT_MAX_S seconds of runs): a quiet machine stops after the first batch of repeats.
DEFAULT_REL_CI = 0.05
DEFAULT_MAX_S = 1.0
MAX_ROTATION = 4



# -- which operators are searchable layers ---------------------------------------------------------
_SHAPE_CACHE: dict[OpSpec, bool] = {}


def shape_preserving(spec: OpSpec, h: int = 32, w: int = 32) -> bool:
    """An operator that keeps channels and resolution (a searchable layer slot: it can be stacked for
    the network method and replaced by identity in the skeleton). Resize and identity are not."""
    if spec.type in ("identity", "resize") or spec.c_in != spec.c_out or spec.stride != 1:
        return False
    if spec not in _SHAPE_CACHE:
        try:
            _SHAPE_CACHE[spec] = build_op(spec).output_hw(h, w) == (h, w)
        except RtsegError:
            _SHAPE_CACHE[spec] = False
    return _SHAPE_CACHE[spec]


def skeleton_network(space: Any, arch: Any) -> nn.Module:
    """CAS's identity network for ``arch``: its network with every shape-preserving operator replaced by identity."""
    net = space.build(arch)
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Op) and shape_preserving(child.spec):
                setattr(parent, name, build_op(OpSpec.make("identity", child.spec.c_in, child.spec.c_in)))
    return net


def skeleton_plan(space: Any, h: int, w: int, num_classes: int, heads: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per head: an arch to build the skeleton from, and the signatures the skeleton still runs.

    A space of fixed hand-designed nets (``peer``: nothing to sample) has no searchable layer and so no
    skeleton: its LUT holds the operator entries alone, and a net's prediction is their sum."""
    plan: dict[str, dict[str, Any]] = {}
    base: set[str] | None = None
    try:
        archs = {head: space.sample(random.Random(0), num_classes=num_classes, head=head) for head in heads}
    except RtsegError:
        return {}
    for head, arch in archs.items():
        fixed = [s for s in space.signatures(arch, h, w) if not shape_preserving(s.spec, s.h, s.w)]
        keys = [s.key for s in fixed]
        head_key = None
        if base is None:
            base = set(keys)
        else:
            head_key = next((k for k in keys if k not in base), None)
        plan[head] = {"arch": arch, "fixed": fixed, "head_key": head_key}
    return plan


def probe_signature(sigs: Sequence[OpSignature]) -> OpSignature:
    """The reference operator timed every :data:`rtseg.latency.profile.PROBE_EVERY_S` seconds while profiling, and again by
    ``lut validate``: the first searchable layer of the space. Its spread tells how steady the
    machine was while the LUT was measured (other processes, clock changes), and its ratio at
    validation time how much faster or slower the machine is then; nothing is corrected with it."""
    return next((s for s in sigs if shape_preserving(s.spec, s.h, s.w)), sigs[0])


# -- measuring ---------------------------------------------------------------------------------------
def rotation_for(timer: OpTimer, sets_bytes: int, rotation: int | None) -> int:
    """How many input sets to rotate: several when one set fits in the last-level cache."""
    if rotation is not None:
        return max(1, int(rotation))
    llc = timer.device.details.get("llc_bytes") or 0
    return MAX_ROTATION if llc and sets_bytes <= llc // 2 else 1


def _input_sets(sig: OpSignature, batch: int, n: int) -> list[tuple[torch.Tensor, ...]]:
    cls = op_class(sig.type)
    return [tuple(cls.example_inputs(sig, batch=batch)) for _ in range(n)]


def _stats_entry(sig: OpSignature, samples: list[float], method: str, **extra: Any) -> dict[str, Any]:
    st = TimingStats.from_samples(samples)
    return {"op": sig.short(), "median_ms": st.median_ms, "p10_ms": st.p10_ms, "p90_ms": st.p90_ms, "n": st.n,
            "method": method, **extra}


class IdentityCache:
    """c'_id per input shape: a stack of identities costs the same for every operator of that shape."""

    def __init__(self) -> None:
        self.values: dict[tuple[Any, ...], float] = {}


def measure_signature(timer: OpTimer, sig: OpSignature, warmup: int, repeats: int, method: str = DEFAULT_METHOD,
                      stack: int = DEFAULT_STACK, min_time_s: float = DEFAULT_MIN_TIME_S,
                      max_repeats: int = DEFAULT_MAX_REPEATS, rotation: int | None = None,
                      identity_cache: IdentityCache | None = None, rel_ci: float = DEFAULT_REL_CI,
                      max_s: float | None = DEFAULT_MAX_S, speed: SpeedReference | None = None) -> dict[str, Any]:
    """One LUT entry for ``sig`` (median/p10/p90/n in ms, and the method actually used); with a
    ``speed`` reference, also ``ref_ms``: the reference's median around the timed runs
    (:mod:`rtseg.latency.speed`)."""
    def timed(prepared: Any) -> tuple[list[float], float | None]:
        def run() -> list[float]:
            return prepared.stable_samples(warmup, repeats, min_time_s, max_repeats, rel_ci, max_s)

        return speed.bracket(run) if speed is not None else (run(), None)

    probe = _input_sets(sig, timer.batch, 1)
    n_rot = rotation_for(timer, input_bytes(probe), rotation)
    sets = probe + _input_sets(sig, timer.batch, n_rot - 1)
    if method == "network" and shape_preserving(sig.spec, sig.h, sig.w) and len(sets[0]) == 1:
        k = max(1, int(stack))
        net = nn.Sequential(*(build_op(sig.spec) for _ in range(k)))
        prepared = timer.prepare(net, sets)
        try:
            s_o, ref_ms = timed(prepared)
        finally:
            prepared.close()
        shape = (tuple(sets[0][0].shape), n_rot)
        cache = identity_cache if identity_cache is not None else IdentityCache()
        if shape not in cache.values:
            ident = nn.Sequential(*(build_op(OpSpec.make("identity", sig.spec.c_in, sig.spec.c_in)) for _ in range(k)))
            prepared = timer.prepare(ident, sets)
            try:
                cache.values[shape] = timer_median(prepared.samples(warmup, max(repeats, 50), min_time_s, max_repeats))
            finally:
                prepared.close()
        c_id = cache.values[shape]
        per = [(t - c_id) / k for t in s_o]
        return _stats_entry(sig, per, "network", slot=True, stack=k, network_median_ms=timer_median(s_o), identity_ms=c_id,
                            **_ref(ref_ms))
    prepared = timer.prepare(build_op(sig.spec), sets)
    try:
        samples, ref_ms = timed(prepared)
    finally:
        prepared.close()
    return _stats_entry(sig, samples, "isolated", slot=shape_preserving(sig.spec, sig.h, sig.w), **_ref(ref_ms))


def measure_signatures_batched(timer: OpTimer, sigs: Sequence[OpSignature], warmup: int, repeats: int, method: str = DEFAULT_METHOD,
                               stack: int = DEFAULT_STACK, max_repeats: int = DEFAULT_MAX_REPEATS,
                               identity_cache: IdentityCache | None = None, rel_ci: float = DEFAULT_REL_CI,
                               max_s: float | None = DEFAULT_MAX_S, speed: SpeedReference | None = None) -> list[dict[str, Any]]:
    """The entries of ``sigs`` measured together through :meth:`OpTimer.prepare_batch`: the same
    modules (an operator, or a stack of its copies and the stack of identities of its shape, timed
    once per group beside the stacks it is subtracted from) and the same arithmetic as
    :func:`measure_signature`, but prepared at once and sampled in shared rounds until every median
    settles. On TensorRT that is one engine for the whole group, timed per layer
    (:mod:`rtseg.backends.trt_batch`). One input set per module: between two runs of a module the
    others run, so its input is not waiting in the cache. Every entry records ``batched``: how
    many modules were prepared with it."""
    cache = identity_cache if identity_cache is not None else IdentityCache()
    modules: list[nn.Module] = []
    sets: list[list[tuple[torch.Tensor, ...]]] = []
    roles: list[tuple[str, Any, int]] = []  # ("stack"|"alone", entry index, k) or ("identity", shape key, k)
    pending: set[Any] = set()
    k = max(1, int(stack))
    for j, sig in enumerate(sigs):
        inputs = _input_sets(sig, timer.batch, 1)
        if method == "network" and shape_preserving(sig.spec, sig.h, sig.w) and len(inputs[0]) == 1:
            modules.append(nn.Sequential(*(build_op(sig.spec) for _ in range(k))))
            sets.append(inputs)
            roles.append(("stack", j, k))
            shape = (tuple(inputs[0][0].shape), "batched")
            if shape not in pending:  # each group times its own c'_id: the same group, the same modules (a recheck reuses the engine)
                pending.add(shape)
                modules.append(nn.Sequential(*(build_op(OpSpec.make("identity", sig.spec.c_in, sig.spec.c_in)) for _ in range(k))))
                sets.append(inputs)
                roles.append(("identity", shape, k))
        else:
            modules.append(build_op(sig.spec))
            sets.append(inputs)
            roles.append(("alone", j, 1))
    prepared = timer.prepare_batch(modules, sets, key=(method, k, tuple(s.key for s in sigs), tuple(r[0] for r in roles)))
    try:
        def run() -> list[list[float]]:
            return prepared.stable_samples(warmup, repeats, rel_ci, max_repeats, None if max_s is None else max_s * len(modules))

        samples, ref_ms = speed.bracket(run) if speed is not None else (run(), None)
        detail = prepared.describe() if prepared.describe is not None else {}
    finally:
        prepared.close()
    for (role, key, _), s in zip(roles, samples):
        if role == "identity":
            cache.values[key] = timer_median(s)
    entries: list[dict[str, Any]] = [{} for _ in sigs]
    extra = {"batched": len(modules)}
    timed_alone = set(detail.get("timed_alone", ()))  # shared a fused layer with another subgraph: re-timed in an engine of its own
    for i, ((role, j, kk), s) in enumerate(zip(roles, samples)):
        if role == "identity":
            continue
        sig = sigs[j]
        alone = {"timed_alone": True} if i in timed_alone else {}
        if role == "stack":
            c_id = cache.values[(tuple(sets[i][0][0].shape), "batched")]
            entries[j] = _stats_entry(sig, [(t - c_id) / kk for t in s], "network", slot=True, stack=kk, network_median_ms=timer_median(s),
                                      identity_ms=c_id, **extra, **alone, **_ref(ref_ms))
        else:
            entries[j] = _stats_entry(sig, s, "isolated", slot=shape_preserving(sig.spec, sig.h, sig.w), **extra, **alone, **_ref(ref_ms))
    return entries


def _ref(ref_ms: float | None) -> dict[str, Any]:
    return {} if ref_ms is None else {"ref_ms": ref_ms}


def at_run_speed(entry: dict[str, Any], other: dict[str, Any]) -> tuple[float, float]:
    """Two measurements of one entry made comparable: each median over its own reference time when
    both have one (the machine's speed at either moment divides out), else the raw medians."""
    a, b = float(entry["median_ms"]), float(other["median_ms"])
    ra, rb = entry.get("ref_ms"), other.get("ref_ms")
    if ra and rb:
        return a / float(ra), b / float(rb)
    return a, b


def recheck_entry(timer: OpTimer, sig: OpSignature, entry: dict[str, Any], warmup: int, repeats: int, method: str, stack: int,
                  min_time_s: float, max_repeats: int, rotation: int | None, identity_cache: IdentityCache,
                  max_s: float | None, speed: SpeedReference | None = None) -> tuple[dict[str, Any], bool]:
    """Second look at one entry, after all were measured: a quick re-timing, and a full one when the
    quick one is well below the entry. Load from other processes only ever adds time, so of two full
    medians the smaller is the less disturbed; the entry keeps it and records the one it replaced.
    With a speed reference the medians are compared at the speed each was measured at (a look
    taken while the whole machine is faster does not replace an entry). Returns the entry and
    whether this look lowered it."""
    old = float(entry["median_ms"])
    n = max(1, min(RECHECK_QUICK_REPEATS, repeats))
    quick = measure_signature(timer, sig, min(1, warmup), n, method, stack, 0.0, n, rotation, identity_cache,
                              rel_ci=float("inf"), max_s=None, speed=speed)
    q, o = at_run_speed(quick, entry)
    if old < RECHECK_FLOOR_MS or q >= RECHECK_RATIO * o:
        return dict(entry, checked=True), False
    full = measure_signature(timer, sig, warmup, repeats, method, stack, min_time_s, max_repeats, rotation, identity_cache,
                             max_s=max_s, speed=speed)
    f, o = at_run_speed(full, entry)
    if f < o:
        return dict(full, checked=True, replaced_ms=old), True
    return dict(entry, checked=True), False


#: Recheck: a quick re-timing below RECHECK_RATIO x the entry triggers a full one (entries under the
#: floor are too small for a ratio to mean anything).
RECHECK_QUICK_REPEATS = 3
RECHECK_RATIO = 0.8
RECHECK_FLOOR_MS = 0.02


def timer_median(samples: list[float]) -> float:
    return float(statistics.median(samples))


def measure_skeleton(timer: OpTimer, space: Any, arch: Any, h: int, w: int, warmup: int, repeats: int,
                     rotation: int | None = None, max_s: float = 5 * DEFAULT_MAX_S,
                     speed: SpeedReference | None = None) -> dict[str, Any]:
    """End-to-end timing of the identity network of ``arch`` (more repeats: it sets the constant)."""
    net = skeleton_network(space, arch)
    x = torch.randn(timer.batch, 3, h, w)
    n_rot = rotation_for(timer, x.numel() * x.element_size(), rotation)
    sets = [(x,)] + [(torch.randn_like(x),) for _ in range(n_rot - 1)]
    prepared = timer.prepare(net, sets)

    def run() -> list[float]:
        return prepared.stable_samples(max(warmup, 5), max(4 * repeats, 20), rel_ci=0.02, max_repeats=max(40 * repeats, 200),
                                       max_s=max_s)

    try:
        samples, ref_ms = speed.bracket(run) if speed is not None else (run(), None)
    finally:
        prepared.close()
    st = TimingStats.from_samples(samples)
    return {"median_ms": st.median_ms, "p10_ms": st.p10_ms, "p90_ms": st.p90_ms, "n": st.n, **_ref(ref_ms)}
