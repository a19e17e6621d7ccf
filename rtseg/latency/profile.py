"""``rtseg profile-ops``: measure every operator a search space can place at an input size into a LUT.

What is measured, per distinct :class:`~rtseg.ops.OpSignature` of the space (every head's fixed
parts included), on one backend/device/precision/batch:

* ``isolated``: the operator alone, built by :func:`rtseg.ops.build_op` from its signature and fed
  its own example inputs (rotated through several input sets when they fit in the last-level
  cache, so a repeat does not find the previous repeat's data waiting there).
* ``network`` (CAS, Zhang et al., CVPR 2019, sec. 4.1): the operator inside a network made of it, minus the same
  network made of identities, ``c_o = (c'_o - c'_id) / K`` for a stack of ``K`` copies with their
  own weights; each copy then reads an input its predecessor just wrote and its weights are not the
  ones the previous call used, as in a real network. Operators that change shape (downsamplers,
  heads, resizes) cannot be stacked and are measured in isolation (each entry records its method).

Then, per head, the *skeleton*: the network with every searchable layer replaced by identity,
timed end to end; it turns into the per-network constant of the prediction model (see
:mod:`rtseg.latency.lut`).

Nothing is lost: entries are written atomically at most ``flush_s`` apart and on any exit
(Ctrl-C, an error), and a re-run with the same settings measures only what is missing. A file with
other settings is refused unless ``force``, which starts it over (never mixes).
"""

from __future__ import annotations

import datetime as _dt
import platform
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from rtseg.backends import BACKENDS, device_kind, get_backend
from rtseg.backends.device import DeviceInfo, detect_device, keeps_torch_threads, parse_device, steady_allocator
from rtseg.backends.timers import OpTimer, input_bytes, make_timer
from rtseg.backends.timing import TimingStats
from rtseg.backends.trt_batch import plan_chunks
from rtseg.errors import RtsegError
from rtseg.io import check_batch_memory, check_output_file, parse_hw
from rtseg.latency.calibrate import DEFAULT_CALIBRATION_ARCHS, calibrate, is_sane
from rtseg.latency.lut import LUT, load_lut, new_lut
from rtseg.latency.speed import SpeedReference, measure_probe
from rtseg.ops import Op, OpSignature, OpSpec, build_op, op_class
from rtseg.reporting import Reporter, RichReporter, SilentReporter, TaskBar
from rtseg.rundir import FileLock, lock_file
from rtseg.spaces import get_space, space_slug
from rtseg.version import __version__

METHODS = ("network", "isolated")
#: The default method: isolated per-op sums under-predict whole networks (each operator timed alone
#: runs with warmer caches than inside a net); the network method predicts them closer (the
#: comparison measured on a CPU is in rtseg/latency/README.md, "The prediction model").
DEFAULT_METHOD = "network"
#: Defaults sized so the whole ssr space (about 1,600 signatures) profiles in minutes on a small CPU at
#: 128x256 (wall times measured: rtseg/latency/README.md); ``min_time_s`` adds repeats to
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
#: Seconds between two timings of the reference operator (see :func:`probe_signature`).
PROBE_EVERY_S = 15.0
MAX_ROTATION = 4


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def default_lut_path(device: DeviceInfo, space: str, backend: str, precision: str, h: int, w: int,
                     batch: int = 1, method: str = DEFAULT_METHOD, root: str | Path = "engines") -> Path:
    """``engines/<device-slug>/lut-<space>-<backend>-<precision>-<H>x<W>[-<N>t].json``: ``-<N>t`` names
    a CPU LUT's thread count (a 1-thread and a 16-thread timing of one operator differ several-fold),
    ``-b<N>`` a batch N, ``-<method>`` a non-default method, so such tables sit side by side in the
    device's one folder."""
    name = f"lut-{space}-{backend}-{precision}-{h}x{w}"
    if device.kind == "cpu":
        name += f"-{device.details.get('threads', 0)}t"
    if batch != 1:
        name += f"-b{batch}"
    if method != DEFAULT_METHOD:
        name += f"-{method}"
    return Path(root) / device.slug / f"{name}.json"


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
    """The reference operator timed every :data:`PROBE_EVERY_S` seconds while profiling, and again by
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


class _IdentityCache:
    """c'_id per input shape: a stack of identities costs the same for every operator of that shape."""

    def __init__(self) -> None:
        self.values: dict[tuple[Any, ...], float] = {}


def measure_signature(timer: OpTimer, sig: OpSignature, warmup: int, repeats: int, method: str = DEFAULT_METHOD,
                      stack: int = DEFAULT_STACK, min_time_s: float = DEFAULT_MIN_TIME_S,
                      max_repeats: int = DEFAULT_MAX_REPEATS, rotation: int | None = None,
                      identity_cache: _IdentityCache | None = None, rel_ci: float = DEFAULT_REL_CI,
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
        cache = identity_cache if identity_cache is not None else _IdentityCache()
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
                               identity_cache: _IdentityCache | None = None, rel_ci: float = DEFAULT_REL_CI,
                               max_s: float | None = DEFAULT_MAX_S, speed: SpeedReference | None = None) -> list[dict[str, Any]]:
    """The entries of ``sigs`` measured together through :meth:`OpTimer.prepare_batch`: the same
    modules (an operator, or a stack of its copies and the stack of identities of its shape, timed
    once per group beside the stacks it is subtracted from) and the same arithmetic as
    :func:`measure_signature`, but prepared at once and sampled in shared rounds until every median
    settles. On TensorRT that is one engine for the whole group, timed per layer
    (:mod:`rtseg.backends.trt_batch`). One input set per module: between two runs of a module the
    others run, so its input is not waiting in the cache. Every entry records ``batched``: how
    many modules were prepared with it."""
    cache = identity_cache if identity_cache is not None else _IdentityCache()
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


def _at_run_speed(entry: dict[str, Any], other: dict[str, Any]) -> tuple[float, float]:
    """Two measurements of one entry made comparable: each median over its own reference time when
    both have one (the machine's speed at either moment divides out), else the raw medians."""
    a, b = float(entry["median_ms"]), float(other["median_ms"])
    ra, rb = entry.get("ref_ms"), other.get("ref_ms")
    if ra and rb:
        return a / float(ra), b / float(rb)
    return a, b


def recheck_entry(timer: OpTimer, sig: OpSignature, entry: dict[str, Any], warmup: int, repeats: int, method: str, stack: int,
                  min_time_s: float, max_repeats: int, rotation: int | None, identity_cache: _IdentityCache,
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
    q, o = _at_run_speed(quick, entry)
    if old < RECHECK_FLOOR_MS or q >= RECHECK_RATIO * o:
        return dict(entry, checked=True), False
    full = measure_signature(timer, sig, warmup, repeats, method, stack, min_time_s, max_repeats, rotation, identity_cache,
                             max_s=max_s, speed=speed)
    f, o = _at_run_speed(full, entry)
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


# -- the command -----------------------------------------------------------------------------------
def run_provenance(space: str, num_classes: int, heads: Sequence[str], info: DeviceInfo, timer: OpTimer, h: int, w: int,
                   batch: int, warmup: int, repeats: int, method: str, min_time_s: float, rotation: int | None,
                   stack: int, speed: SpeedReference | None = None) -> dict[str, Any]:
    prov: dict[str, Any] = {
        "space": space,
        "num_classes": num_classes,
        "device": info.to_dict(),
        "device_arg": info.arg,
        "backend": timer.name,
        "backend_version": timer.version,
        "backend_settings": timer.settings(),
        "precision": timer.precision,
        "batch": batch,
        "input": [h, w],
        "warmup": warmup,
        "repeats": repeats,
        "min_time_s": min_time_s,
        "rotation": "auto" if rotation is None else rotation,
        "method": method,
        "stack": stack if method == "network" else None,
        "threads": torch.get_num_threads(),
        "allocator": steady_allocator(),
        "clock": timer.clock,
        "speed_reference": speed.to_dict() if speed is not None else None,
        "clock_detail": ("thread CPU time (CLOCK_THREAD_CPUTIME_ID)" if timer.clock == "thread" else
                         "CUDA events" if info.kind == "cuda" and timer.name == "torch" else "time.perf_counter around a synchronous call"),
        "statistic": "median of repeats; p10/p90 spread",
        "stability": f"repeats added until the median's 95% CI is within {DEFAULT_REL_CI:.0%} (max {DEFAULT_MAX_REPEATS} runs, {DEFAULT_MAX_S} s)",
        "rtseg_version": __version__,
        "torch_version": torch.__version__,
        "python": platform.python_version(),
    }
    return prov


@dataclass
class _Settings:
    """How each entry is timed (the profile-ops options that the measuring steps share)."""

    warmup: int
    repeats: int
    method: str
    stack: int
    min_time_s: float
    max_repeats: int
    rotation: int | None
    max_entry_s: float


@dataclass
class _Run:
    """One profile-ops run, as the steps of :func:`profile_ops` share it: what to measure, with
    which timer, into which LUT, and the bookkeeping (flushes, the reference operator, the bar)."""

    space: Any
    space_name: str
    heads: list[str]
    info: DeviceInfo
    timer: OpTimer
    plan: dict[str, dict[str, Any]]
    all_sigs: list[OpSignature]
    subset: bool  # a ``signatures`` run: never complete, never calibrated
    probe: OpSignature
    speed: SpeedReference | None
    out: Path
    group: int
    lut: LUT
    s: _Settings
    flush_s: float
    reporter: Reporter
    on_entry: Callable[[int, OpSignature, dict[str, Any]], None] | None
    started: float = 0.0
    previous: float = 0.0
    last_flush: float = 0.0
    last_probe: float = -1e9
    ident: _IdentityCache = field(default_factory=_IdentityCache)
    lock: FileLock | None = None  # held on the LUT file while this run writes it
    bar: TaskBar = field(default_factory=TaskBar)

    def flush(self) -> None:
        """Write what was measured so far (atomically), with the time spent and whether it is complete."""
        lut = self.lut
        lut.provenance["profiling_s"] = round(self.previous + time.perf_counter() - self.started, 3)
        lut.provenance["updated"] = _now()
        lut.set_progress(complete=not self.subset and all(s.key in lut.entries for s in self.all_sigs)
                         and all(hd in lut.skeletons for hd in self.plan))
        lut.save(self.out)

    def entry_done(self) -> None:
        """One entry measured or rechecked: advance the bar and flush when the last flush is old enough."""
        self.bar.advance()
        if time.perf_counter() - self.last_flush >= self.flush_s:
            self.flush()
            self.last_flush = time.perf_counter()

    def maybe_probe(self, now_anyway: bool = False) -> None:
        """Time the reference operator when :data:`PROBE_EVERY_S` passed since the last time (or now)."""
        now = time.perf_counter()
        samples = self.lut.probes(self.probe.key, self.probe.short())
        if samples is not None and (now_anyway or now - self.last_probe >= PROBE_EVERY_S):
            samples.append([round(self.previous + now - self.started, 1), measure_probe(self.timer, self.probe)])
            self.last_probe = now

    def measure(self, sigs: Sequence[OpSignature]) -> list[dict[str, Any]]:
        """Entries for ``sigs``: one at a time, or together in one prepared batch (the timer's group size)."""
        s = self.s
        if self.group == 1:
            return [measure_signature(self.timer, sig, s.warmup, s.repeats, s.method, s.stack, s.min_time_s, s.max_repeats, s.rotation,
                                      self.ident, max_s=s.max_entry_s, speed=self.speed) for sig in sigs]
        return measure_signatures_batched(self.timer, sigs, s.warmup, s.repeats, s.method, s.stack, s.max_repeats, self.ident,
                                          max_s=s.max_entry_s, speed=self.speed)


@keeps_torch_threads
def profile_ops(
    space_name: str,
    h: int,
    w: int,
    backend: str = "torch",
    device: str = "cpu",
    precision: str = "fp32",
    batch: int = 1,
    warmup: int = DEFAULT_WARMUP,
    repeats: int = DEFAULT_REPEATS,
    method: str = DEFAULT_METHOD,
    out_path: str | Path | None = None,
    num_classes: int = 19,
    progress: bool = True,
    *,
    threads: int | None = None,
    heads: Sequence[str] | None = None,
    signatures: Sequence[OpSignature] | None = None,
    force: bool = False,
    min_time_s: float = DEFAULT_MIN_TIME_S,
    max_repeats: int = DEFAULT_MAX_REPEATS,
    rotation: int | None = None,
    stack: int = DEFAULT_STACK,
    clock: str = "wall",
    max_entry_s: float = DEFAULT_MAX_S,
    flush_s: float = 1.0,
    on_entry: Callable[[int, OpSignature, dict[str, Any]], None] | None = None,
    console: Any = None,
    recheck: bool = True,
    calibration_archs: int = DEFAULT_CALIBRATION_ARCHS,
    speed_reference: bool = True,
    space_options: dict[str, Any] | None = None,
    batch_entries: int | None = None,
    reporter: Reporter | None = None,
) -> Path:
    """Measure the operators of ``space_name`` at ``h x w`` into a LUT file and return its path.

    ``signatures`` restricts the run to a subset (tests, or re-measuring a few entries); the LUT then
    records that it is incomplete. ``max_entry_s`` caps the seconds of timed runs spent on one entry
    while waiting for its median to settle (five times that for a skeleton). ``on_entry(i, sig, entry)`` is called after each new entry.

    After the entries, ``recheck`` re-times each one quickly and re-measures those that come out well
    below their entry (a burst of load inflated them; see :func:`recheck_entry`). Once the LUT is
    complete, ``calibration_archs`` random archs are timed end to end to fit the layer factor
    (:mod:`rtseg.latency.calibrate`; 0 keeps the raw entries). Both are saved, so a resumed run
    skips what is done. ``speed_reference`` times the reference operator around every measurement
    (:mod:`rtseg.latency.speed`); off, entries are charged as measured. ``space_options`` sizes the
    space (``--space-opt``, e.g. CAS ``{"width": 16}``); the LUT records them and its default file
    name carries them.

    ``batch_entries`` measures entries in groups of that many through
    :func:`measure_signatures_batched` (default: the timer's :attr:`~OpTimer.batch_size`, 64 on
    TensorRT, where one engine per entry would cost a build each, and 1, one at a time, elsewhere);
    a batched run's recheck re-times every group once more and keeps the smaller of the two looks.

    ``reporter`` shows the progress; without one, ``progress`` (with an optional rich ``console``)
    means ``RichReporter(console)``, and ``progress=False`` a silent run.

    The steps, each a function of its own: :func:`_check_flags`, :func:`_setup`, then on the run
    :func:`_measure_entries`, :func:`_recheck_entries`, :func:`_measure_skeletons`,
    :func:`_calibrate`; the LUT is flushed on any exit.
    """
    _check_flags(backend, device, precision, method, warmup, repeats)
    reporter = reporter or (RichReporter(console) if progress else SilentReporter())
    s = _Settings(warmup, repeats, method, stack, min_time_s, max_repeats, rotation, max_entry_s)
    run = _setup(space_name, h, w, backend, device, precision, batch, clock, out_path, num_classes, threads, heads, signatures, force, s,
                 speed_reference, space_options, batch_entries, flush_s, reporter, on_entry)
    lut, h, w = run.lut, *run.lut.input_hw
    todo = [sig for sig in run.all_sigs if sig.key not in lut.entries]
    todo_skel = [hd for hd in run.plan if hd not in lut.skeletons]
    to_check = [sig for sig in run.all_sigs if not lut.entries.get(sig.key, {}).get("checked")] if recheck else []
    if todo or todo_skel:
        lut.set_calibration(None)  # fitted on entries that are about to change
    will_calibrate = calibration_archs > 0 and not run.subset
    cal_rounds = 5
    cal_steps = (calibration_archs + calibration_archs * cal_rounds) if will_calibrate and not lut.has_calibration else 0
    lut.set_progress(expected_entries=len(run.all_sigs))
    run.started = run.last_flush = time.perf_counter()
    run.previous = float(lut.provenance.get("profiling_s") or 0.0)
    try:
        with reporter.task(f"profiling {space_name} {h}x{w} ({backend}, {run.info.name}, {precision}, {method})",
                           total=len(todo) + len(to_check) + len(todo_skel) + cal_steps) as run.bar:
            _measure_entries(run, todo, probe_after=bool(todo_skel))
            _recheck_entries(run, to_check, backend)
            _measure_skeletons(run, todo_skel)
            lut.refresh()
            if will_calibrate and not lut.has_calibration and all(sig.key in lut.entries for sig in run.all_sigs) and lut.has_skeleton:
                _calibrate(run, calibration_archs, cal_rounds, backend)
    finally:
        if run.speed is not None:
            run.speed.close()
        try:
            run.flush()
        finally:
            if run.lock is not None:
                run.lock.release()
    lut.refresh()
    return run.out


def _check_flags(backend: str, device: str, precision: str, method: str, warmup: int, repeats: int) -> None:
    """Refuse what cannot be measured before anything is built: the backend's row of
    :data:`rtseg.backends.TABLE` (a missing TensorRT first of all: it must never turn into another
    backend's timings), then the method and the repeat counts."""
    spec = get_backend(backend)
    spec.require()
    if precision not in spec.precisions:
        raise RtsegError(f"unknown precision {precision!r}: use {' or '.join(spec.precisions)}")
    if device_kind(parse_device(device)) not in spec.devices:
        raise RtsegError(f"the {spec.name} backend runs on {' or '.join(spec.devices)}: use --device {spec.devices[0]} "
                         f"(or --backend {' / '.join(b for b in BACKENDS if b != spec.name)} on a CPU)")
    if method not in METHODS:
        raise RtsegError(f"unknown method {method!r}: use isolated or network")
    if warmup < 0 or repeats < 1:
        raise RtsegError("--warmup must be >= 0 and --repeats >= 1")


def _setup(space_name: str, h: int, w: int, backend: str, device: str, precision: str, batch: int, clock: str, out_path: str | Path | None,
           num_classes: int, threads: int | None, heads: Sequence[str] | None, signatures: Sequence[OpSignature] | None, force: bool,
           s: _Settings, speed_reference: bool, space_options: dict[str, Any] | None, batch_entries: int | None, flush_s: float,
           reporter: Reporter, on_entry: Callable[[int, OpSignature, dict[str, Any]], None] | None) -> _Run:
    """The space, the device and its timer, every signature to measure (the skeletons' own operators
    included), the reference operator, and the LUT at the output path (resumed, or new)."""
    space = get_space(space_name, space_options)
    space_options = space.options()
    h, w = parse_hw((h, w), space.size_divisor)
    check_batch_memory(batch, h, w, num_classes)
    heads = list(heads or space.heads)
    for hd in heads:
        if hd not in space.heads:
            raise RtsegError(f"head {hd!r} is not available in space {space_name!r}; choose from {', '.join(space.heads)}")
    info = detect_device(device, threads)
    timer = make_timer(backend, info, precision, batch, clock)
    plan = skeleton_plan(space, h, w, num_classes, heads)
    all_sigs = list(signatures) if signatures is not None else space.candidate_signatures(h, w, num_classes, heads=tuple(heads))
    seen = {sig.key for sig in all_sigs}
    for p in plan.values():  # the skeletons' own operators must be entries
        for sig in p["fixed"]:
            if sig.key not in seen:
                seen.add(sig.key)
                all_sigs.append(sig)
    probe = probe_signature(all_sigs)
    speed = SpeedReference(timer, probe) if speed_reference else None
    out = check_output_file(Path(out_path) if out_path is not None else default_lut_path(info, space_slug(space_name, space_options), backend,
                                                                                           precision, h, w, batch, s.method), "LUT path")
    if backend == "tensorrt":  # the timing cache rtseg export --trt keeps in the same folder: a re-run skips tactic timing
        timer.timing_cache = out.parent / "timing.cache"  # type: ignore[attr-defined]
    group = max(1, int(batch_entries if batch_entries is not None else timer.batch_size))
    prov = run_provenance(space_name, num_classes, heads, info, timer, h, w, batch, s.warmup, s.repeats, s.method, s.min_time_s, s.rotation,
                          s.stack, speed)
    prov["entries_per_batch"] = group
    lock = lock_file(out, "LUT")  # a second profile-ops into this LUT is refused, not interleaved
    try:
        lut = _open_or_create(out, space_name, num_classes, heads, prov, force, space_options)
    except BaseException:
        lock.release()
        raise
    return _Run(space, space_name, heads, info, timer, plan, all_sigs, signatures is not None, probe, speed, out, group, lut, s, flush_s,
                reporter, on_entry, lock=lock)


def _measure_entries(run: _Run, todo: list[OpSignature], probe_after: bool) -> None:
    """Measure every missing entry, in groups of the run's size, with the reference operator timed
    before, every :data:`PROBE_EVERY_S` seconds between groups, and after."""
    if todo or probe_after:
        run.maybe_probe(True)
    for chunk in _groups(todo, run.group):
        run.maybe_probe()
        for i, entry in zip(chunk, run.measure([todo[i] for i in chunk])):
            run.lut.set_entry(todo[i].key, entry)
            if run.on_entry is not None:
                run.on_entry(i, todo[i], entry)
            run.entry_done()
    if todo:
        run.maybe_probe(True)


def _recheck_entries(run: _Run, to_check: list[OpSignature], backend: str) -> None:
    """Second look at every entry not yet checked (see :func:`recheck_entry`; a batched run re-times
    whole groups and keeps the smaller of two looks); drops a calibration when any entry was lowered."""
    if not to_check:
        return
    lut, s = run.lut, run.s
    run.bar.update(description=f"rechecking {len(to_check)} entries ({backend}, {run.info.name})")
    lowered = 0
    if run.group == 1:
        for sig in to_check:
            entry, was_lowered = recheck_entry(run.timer, sig, lut.entries[sig.key], s.warmup, s.repeats, s.method, s.stack, s.min_time_s,
                                               s.max_repeats, s.rotation, run.ident, s.max_entry_s, run.speed)
            lowered += was_lowered
            lut.set_entry(sig.key, entry)
            run.entry_done()
    else:
        for chunk in _groups(to_check, run.group):
            for i, new in zip(chunk, run.measure([to_check[i] for i in chunk])):
                sig = to_check[i]
                old = lut.entries[sig.key]
                n, o = _at_run_speed(new, old)
                if n < o and float(old["median_ms"]) >= RECHECK_FLOOR_MS:
                    lut.set_entry(sig.key, dict(new, checked=True, replaced_ms=float(old["median_ms"])))
                    lowered += 1
                else:
                    lut.set_entry(sig.key, dict(old, checked=True))
                run.entry_done()
    lut.provenance["recheck"] = {"checked": len(to_check), "lowered": lowered, "ratio": RECHECK_RATIO}
    if lowered:
        lut.set_calibration(None)


def _measure_skeletons(run: _Run, todo_skel: list[str]) -> None:
    """Time each missing head's skeleton end to end (the network constant of the prediction model)."""
    h, w = run.lut.input_hw
    for hd in todo_skel:
        p = run.plan[hd]
        sk = measure_skeleton(run.timer, run.space, p["arch"], h, w, run.s.warmup, run.s.repeats, run.s.rotation,
                              max_s=5 * run.s.max_entry_s, speed=run.speed)
        sk["fixed"] = [sig.key for sig in p["fixed"]]
        sk["head_key"] = p["head_key"]
        run.lut.set_skeleton(hd, sk)
        run.bar.advance()


def _calibrate(run: _Run, calibration_archs: int, rounds: int, backend: str) -> None:
    """Fit the layer factor on whole networks (:mod:`rtseg.latency.calibrate`); a fit that fails
    :func:`~rtseg.latency.calibrate.is_sane` is kept as rejected, so a resumed run does not redo it."""
    run.bar.update(description=f"calibrating on {calibration_archs} whole networks ({backend}, {run.info.name})")
    record = calibrate(run.lut, run.timer, calibration_archs, warmup=max(run.s.warmup, 3), repeats=8 * rounds, rounds=rounds,
                       advance=run.bar.advance, speed=run.speed)
    run.lut.set_calibration(record, accepted=is_sane(record))


def _groups(items: Sequence[OpSignature], group: int) -> list[list[int]]:
    """Index groups of at most ``group`` signatures, also bounded by the bytes of their inputs and
    outputs (one TensorRT engine holds all of a group's tensors at once)."""
    if group <= 1:
        return [[i] for i in range(len(items))]
    sizes = [2 * 4 * s.spec.c_in * s.h * s.w for s in items]  # fp32 input and an output of about its size
    return plan_chunks(sizes, group)


def _open_or_create(out: Path, space: str, num_classes: int, heads: list[str], prov: dict[str, Any], force: bool,
                    space_options: dict[str, Any] | None = None) -> LUT:
    """Resume a matching LUT at ``out``; refuse a mismatching one unless ``force`` (then start over)."""
    run = dict(prov, space=space, num_classes=num_classes, space_options=space_options or {})
    if out.exists():
        try:
            lut = load_lut(out)
        except RtsegError as exc:
            if not force:
                raise RtsegError(f"{exc} (pass --force to overwrite it with a new LUT)") from None
            lut = None
        if lut is not None:
            diff = lut.mismatches(run)
            if lut.heads != list(heads):
                diff.append(f"heads {lut.heads} vs {list(heads)}")
            if not diff:
                lut.provenance["runs"] = int(lut.provenance.get("runs", 1)) + 1
                lut.provenance["backend_version"] = prov["backend_version"]
                return lut
            if not force:
                raise RtsegError(
                    f"{out} already holds a LUT measured with other settings ({'; '.join(diff[:4])}); choose another --out, "
                    "or pass --force to discard it and measure a new one"
                )
    prov = dict(prov, created=_now(), runs=1, profiling_s=0.0)
    return new_lut(space, num_classes, heads, prov, out, space_options)
