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

(How one entry is measured lives in :mod:`rtseg.latency.entries`.) Then, per head, the *skeleton*: the network with every searchable layer replaced by identity,
timed end to end; it turns into the per-network constant of the prediction model (see
:mod:`rtseg.latency.lut`).

Nothing is lost: entries are written atomically at most ``flush_s`` apart and on any exit
(Ctrl-C, an error), and a re-run with the same settings measures only what is missing. A file with
other settings is refused unless ``force``, which starts it over (never mixes).
"""

from __future__ import annotations

import datetime as _dt
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from rtseg.backends import BACKENDS, device_kind, get_backend
from rtseg.backends.device import DeviceInfo, detect_device, keeps_torch_threads, parse_device, steady_allocator
from rtseg.backends.timers import OpTimer, make_timer
from rtseg.backends.trt_batch import plan_chunks
from rtseg.errors import RtsegError
from rtseg.io import check_batch_memory, check_output_file, parse_hw
from rtseg.latency.calibrate import DEFAULT_CALIBRATION_ARCHS, calibrate, is_sane
from rtseg.latency.entries import (DEFAULT_MAX_REPEATS, DEFAULT_MAX_S, DEFAULT_METHOD, DEFAULT_MIN_TIME_S, DEFAULT_REL_CI, DEFAULT_REPEATS,
                                   DEFAULT_STACK, DEFAULT_WARMUP, METHODS, RECHECK_FLOOR_MS, RECHECK_RATIO, IdentityCache, at_run_speed,
                                   measure_signature, measure_signatures_batched, measure_skeleton, probe_signature, recheck_entry,
                                   skeleton_plan)
from rtseg.latency.lut import LUT, load_lut, new_lut
from rtseg.latency.speed import SpeedReference, measure_probe
from rtseg.ops import OpSignature
from rtseg.reporting import Reporter, RichReporter, SilentReporter, TaskBar
from rtseg.rundir import FileLock, lock_file
from rtseg.spaces import get_space, space_slug
from rtseg.version import __version__

#: Seconds between two timings of the reference operator (see :func:`rtseg.latency.entries.probe_signature`).
PROBE_EVERY_S = 15.0


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
    ident: IdentityCache = field(default_factory=IdentityCache)
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
    _run_steps(run, space_name, backend, precision, recheck, calibration_archs)
    run.lut.refresh()
    return run.out


def _run_steps(run: _Run, space_name: str, backend: str, precision: str, recheck: bool, calibration_archs: int) -> None:
    """What is left to do, then the steps under one progress bar: entries, rechecks, skeletons and
    the calibration; the LUT is flushed (and its lock released) on any exit."""
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
        with run.reporter.task(f"profiling {space_name} {h}x{w} ({backend}, {run.info.name}, {precision}, {run.s.method})",
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
                n, o = at_run_speed(new, old)
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


def _widens(lut: LUT, options: dict[str, Any]) -> bool:
    """Whether the space with ``options`` offers every operator the LUT's own options did (and more):
    then the LUT is resumed into the wider space rather than measured anew (an older ``ssr`` LUT
    without STDC layers gains their entries)."""
    h, w = lut.input_hw
    mine = {s.key for s in lut.search_space().candidate_signatures(h, w, lut.num_classes, heads=tuple(lut.heads))}
    theirs = {s.key for s in get_space(lut.space, options).candidate_signatures(h, w, lut.num_classes, heads=tuple(lut.heads))}
    return mine < theirs


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
            diff = lut.mismatches({k: v for k, v in run.items() if k != "space_options"})
            widened = lut.space_options != run["space_options"]
            if widened and not _widens(lut, run["space_options"]):
                diff.append(f"space_options {lut.space_options} vs {run['space_options']}")
                widened = False
            if lut.heads != list(heads):
                diff.append(f"heads {lut.heads} vs {list(heads)}")
            if not diff:
                lut.provenance["runs"] = int(lut.provenance.get("runs", 1)) + 1
                lut.provenance["backend_version"] = prov["backend_version"]
                if widened:  # its entries stay valid; the run measures the choices the options add
                    lut.provenance["widened_from_options"] = lut.space_options
                    lut.doc["space_options"] = dict(run["space_options"])
                return lut
            if not force:
                raise RtsegError(
                    f"{out} already holds a LUT measured with other settings ({'; '.join(diff[:4])}); choose another --out, "
                    "or pass --force to discard it and measure a new one"
                )
    prov = dict(prov, created=_now(), runs=1, profiling_s=0.0)
    return new_lut(space, num_classes, heads, prov, out, space_options)
