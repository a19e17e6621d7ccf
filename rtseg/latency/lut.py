"""The latency lookup table: a versioned JSON file of measured operator latencies with provenance.

File layout (``format: rtseg.lut``, ``schema_version: 1``)::

    {"format": "rtseg.lut", "schema_version": 1, "space": "ssr", "num_classes": 19,
     "heads": ["classifier", "aggregation"], "complete": true,
     "space_options": {"width": 16},   # --space-opt, those that differ from the space's defaults
     "provenance": {"device": {...}, "device_arg": "cpu", "backend": "torch", "backend_version": "...",
                    "backend_settings": {...}, "precision": "fp32", "batch": 1, "input": [128, 256],
                    "warmup": 5, "repeats": 30, "min_time_s": 0.03, "rotation": 4, "method": "isolated",
                    "stack": 3, "threads": 2, "created": "...", "updated": "...", "rtseg_version": "...",
                    "profiling_s": 61.2, "runs": 1},
     "entries": {"<OpSignature.key>": {"op": "nb1d(64->64,...)@32x64", "median_ms": ..., "p10_ms": ...,
                                       "p90_ms": ..., "n": 30, "method": "isolated", "ref_ms": ...}, ...},
     "skeletons": {"classifier": {"median_ms": ..., "p10_ms": ..., "p90_ms": ..., "n": ...,
                                  "fixed": ["<key>", ...]}, ...}}

The prediction model (why it has this form): a network's latency is the sum of its operators'
entries plus one measured per-network constant, ``predict(arch) = sum(cost(sig)) + constant_ms``.
The constant is CAS's identity network (CAS paper, sec. 4.1) put to work: each ``skeletons[head]`` is the
whole network with every searchable (shape-preserving) layer replaced by identity, timed end to
end; what it costs beyond its own operators' entries (the top-level forward, the final output, the
cache state a real network leaves behind) is a property of the network, not of any operator, so it
is ``constant_ms``. Heads other than the space's first (search) head differ in that constant; the
difference is added to the cost of that head's operator, which occurs exactly once per network, so
the sum identity holds for every arch.

Every measured median is charged at the profiling run's typical speed: an entry or skeleton with
``ref_ms`` (the reference operator's time beside it, :mod:`rtseg.latency.speed`) counts as
``median_ms * base_ms / ref_ms``, ``base_ms`` being the median of the entries' ``ref_ms``; on a
machine whose speed drifts (a shared CPU) that keeps entries measured minutes apart additive.
Entries without ``ref_ms`` (older LUTs, ``--no-speed-reference``) count as measured.

One number may be fitted, and only from measurements of whole networks: ``calibration.scale``
(optional; written by ``profile-ops`` unless ``--calibration-archs 0``). The network method costs a
searchable layer inside a stack of copies of itself; inside a real network each layer follows
different ones, with colder caches, and runs slower than in the stack (the factors fitted so far are in ``docs/luts.md``,
"Measured"). ``profile-ops`` therefore times a few random archs end
to end (drawn with a seed of their own, never the ones ``lut validate`` draws) and fits one factor on
the layer ("slot") entries, least squares through the origin on measured minus fixed parts.
Entries of the fixed parts (stem, downsamplers, heads) and the constant are not scaled::

    "calibration": {"scale": 1.14, "archs": 4, "seed": 104729, "head": "classifier",
                    "mape_before": 0.14, "mape_after": 0.02, "rows": [...]}
"""

from __future__ import annotations

import copy
import json
import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from rtseg.backends.device import detect_device, device_kind
from rtseg.errors import RtsegError
from rtseg.io import atomic_write_text, read_json
from rtseg.latency.speed import base_speed, speed_factor
from rtseg.ops import OpSignature
from rtseg.spaces import get_space, load_arch

LUT_FORMAT = "rtseg.lut"
LUT_SCHEMA_VERSION = 1
#: Provenance fields that must agree for two runs to write into one LUT.
MATCH_FIELDS = ("backend", "precision", "batch", "input", "method", "warmup", "repeats", "clock", "speed_reference")


@dataclass
class ArchCost:
    """What a :class:`Pricer` charges an arch: predicted latency (ms) and multiply-adds (0 when not counted)."""

    latency_ms: float
    flops: float


@dataclass(frozen=True)
class Pricer:
    """The prediction model as a function of an arch: the sum of its operators' ``cost`` plus the
    per-network ``constant_ms``, and, with a ``flops`` counter, its multiply-adds.

    :meth:`LUT.pricer` makes the one a search prices its candidates with (no fit checks per call: the
    search checks the LUT against its space, input and classes once, up front); :meth:`LUT.predict`
    charges through the same one. A stand-in cost (a test's, or none for a FLOPs-only count) makes
    one directly."""

    cost: Callable[[OpSignature], float]
    constant_ms: float = 0.0
    flops: Callable[[OpSignature], float] | None = None

    def price_signatures(self, sigs: Sequence[OpSignature]) -> ArchCost:
        return ArchCost(sum(self.cost(s) for s in sigs) + self.constant_ms,
                        float(sum(self.flops(s) for s in sigs)) if self.flops else 0.0)

    def price(self, arch: Any, h: int, w: int) -> ArchCost:
        """The cost of ``arch`` (an :class:`~rtseg.arch.Arch`) at ``h x w``."""
        return self.price_signatures(get_space(arch.space).signatures(arch, h, w))

    def expected_latency(self, supernet: Any, h: int, w: int) -> Any:
        """E[latency] of a relaxed supernet (a differentiable tensor): its expected operator cost plus
        the constant, which equals :meth:`price` of the decoded arch once every decision is one-hot."""
        return supernet.expected_cost(self.cost, h, w) + self.constant_ms


@dataclass
class Prediction:
    """Predicted end-to-end latency of one arch: the per-operator costs plus the network constant."""

    total_ms: float
    per_op: list[tuple[OpSignature, float]]
    constant_ms: float

    def to_dict(self) -> dict[str, Any]:
        return {"total_ms": self.total_ms, "constant_ms": self.constant_ms,
                "per_op": [{"op": s.short(), "key": s.key, "ms": ms} for s, ms in self.per_op]}


#: Largest time a LUT may record for one operator or network (ms): a hundred seconds; beyond it the
#: number is damaged, and a sum of such numbers overflows to inf and NaN.
MAX_ENTRY_MS = 1e5


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def _is_int(v: Any, lo: int = 1) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= lo


def _check_stats(where: str, e: Any, whole_network: bool = False) -> None:
    """A measured timing: median, p10 and p90 finite, ordered and at most :data:`MAX_ENTRY_MS`, and
    ``n`` a positive count. The median must be positive, except for a layer costed inside a stack
    of itself minus a stack of identities (the network method), whose time can come out slightly
    below zero from noise, but never below minus its share of the identities it was measured with."""
    if not isinstance(e, dict):
        raise RtsegError(f"{where} must be an object with median_ms, p10_ms, p90_ms and n")
    for k in ("median_ms", "p10_ms", "p90_ms", "n"):
        v = e.get(k)
        if not _is_number(v):
            raise RtsegError(f"{where} lacks a numeric {k!r}" if not isinstance(v, (int, float)) or isinstance(v, bool)
                             else f"{where}: {k!r} is {v}, not a finite number")
        if k != "n" and abs(float(v)) > MAX_ENTRY_MS:
            raise RtsegError(f"{where}: {k!r} is {v} ms, beyond any operator's time (at most {MAX_ENTRY_MS:g} ms); the LUT is damaged: re-run rtseg profile-ops")
    if not _is_int(e["n"]):
        raise RtsegError(f"{where}: 'n' (timings taken) must be a positive integer, got {e['n']!r}")
    med, lo, hi = float(e["median_ms"]), float(e["p10_ms"]), float(e["p90_ms"])
    if not lo <= med <= hi:
        raise RtsegError(f"{where}: p10 {lo:g} <= median {med:g} <= p90 {hi:g} ms does not hold; the LUT is damaged: re-run rtseg profile-ops")
    floor = 0.0
    if not whole_network and e.get("method") == "network" and _is_number(e.get("identity_ms")) and _is_int(e.get("stack")):
        floor = -float(e["identity_ms"]) / int(e["stack"])
    if med <= floor and not (med == 0.0 and floor == 0.0 and not whole_network):
        raise RtsegError(f"{where}: median {med:g} ms is not a measured latency (it must be positive); the LUT is damaged: re-run rtseg profile-ops")
    ref = e.get("ref_ms")
    if ref is not None and (not _is_number(ref) or float(ref) <= 0 or float(ref) > MAX_ENTRY_MS):
        raise RtsegError(f"{where}: 'ref_ms' (the speed reference's time) must be a positive number")


#: Typed fields of a LUT's provenance: (key, accepted types, required).
_PROVENANCE_FIELDS: tuple[tuple[str, tuple[type, ...], bool], ...] = (
    ("device", (dict,), True), ("backend", (str,), True), ("precision", (str,), True), ("method", (str,), True),
    ("batch", (int,), True), ("input", (list,), True), ("threads", (int, type(None)), False), ("clock", (str,), False),
    ("device_arg", (str, type(None)), False), ("backend_version", (str, type(None)), False), ("warmup", (int,), False),
    ("repeats", (int,), False), ("runs", (int,), False), ("profiling_s", (int, float), False), ("stack", (int, type(None)), False),
    ("backend_settings", (dict, type(None)), False), ("recheck", (dict, type(None)), False),
)


def _check_header(doc: dict[str, Any], source: str) -> None:
    """Every header field rtseg reads has its type (a string ``device`` or a string ``skeletons``
    would otherwise fail deep inside as an AttributeError)."""
    for key, typ in (("space", str), ("num_classes", int), ("heads", list), ("provenance", dict), ("entries", dict)):
        if not isinstance(doc.get(key), typ) or isinstance(doc.get(key), bool):
            raise RtsegError(f"{source}: LUT field {key!r} is missing or not a {typ.__name__}")
    if doc["num_classes"] < 1 or not doc["heads"] or not all(isinstance(h, str) and h for h in doc["heads"]):
        raise RtsegError(f"{source}: LUT fields 'num_classes' (at least 1) and 'heads' (a non-empty list of names) are damaged")
    for key, typ in (("skeletons", dict), ("probes", dict), ("space_options", dict), ("complete", bool), ("calibration_rejected", dict)):
        if doc.get(key) is not None and not isinstance(doc[key], typ):
            raise RtsegError(f"{source}: LUT field {key!r} must be a {typ.__name__}, got {type(doc[key]).__name__}")
    probes = doc.get("probes")
    if probes is not None and not (isinstance(probes.get("samples", []), list) and isinstance(probes.get("op", ""), str)):
        raise RtsegError(f"{source}: LUT field 'probes' must hold an 'op' name and a list of 'samples'")
    prov = doc["provenance"]
    for key, types, required in _PROVENANCE_FIELDS:
        if key not in prov:
            if required:
                raise RtsegError(f"{source}: LUT provenance lacks {key!r}")
            continue
        v = prov[key]
        if not isinstance(v, types) or (isinstance(v, bool) and bool not in types):
            names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise RtsegError(f"{source}: LUT provenance.{key} must be {names}, got {type(v).__name__}")
    for key in ("name", "kind", "arg", "slug"):
        if prov["device"].get(key) is not None and not isinstance(prov["device"][key], str):
            raise RtsegError(f"{source}: LUT provenance.device.{key} must be a string")
    for key in ("batch", "threads", "warmup", "repeats", "runs"):
        if isinstance(prov.get(key), int) and not _is_int(prov[key], 0 if key == "warmup" else 1):
            raise RtsegError(f"{source}: LUT provenance.{key} must be a positive integer, got {prov[key]!r}")
    inp = prov["input"]
    if not (len(inp) == 2 and all(_is_int(v) for v in inp)):
        raise RtsegError(f"{source}: LUT provenance.input must be [H, W]")


def validate_doc(doc: Any, source: str) -> None:
    """Check the structure of a LUT document; errors name the file and the offending field."""
    if not isinstance(doc, dict):
        raise RtsegError(f"{source}: a LUT must be a JSON object, got {type(doc).__name__}")
    if doc.get("format") != LUT_FORMAT:
        raise RtsegError(f"{source} is not an rtseg LUT (format is {doc.get('format')!r}, expected {LUT_FORMAT!r}); create one with rtseg profile-ops")
    ver = doc.get("schema_version")
    if ver != LUT_SCHEMA_VERSION:
        raise RtsegError(f"{source}: LUT schema_version {ver!r} is not supported by this rtseg (expects {LUT_SCHEMA_VERSION}); re-run rtseg profile-ops")
    _check_header(doc, source)
    for k, e in doc["entries"].items():
        _check_stats(f"{source}: entry {k[:80]}", e)
    for head, sk in (doc.get("skeletons") or {}).items():
        _check_stats(f"{source}: skeleton {head!r}", sk, whole_network=True)
        if not isinstance(sk.get("fixed"), list) or not all(isinstance(k, str) for k in sk["fixed"]):
            raise RtsegError(f"{source}: skeleton {head!r} lacks its list of fixed operators")
    cal = doc.get("calibration")
    if cal is not None:
        scale = cal.get("scale") if isinstance(cal, dict) else None
        if not _is_number(scale) or not 0 < float(scale) < 100:
            raise RtsegError(f"{source}: LUT calibration must be an object with a positive numeric 'scale'")


def is_slot_entry(entry: dict[str, Any]) -> bool:
    """A searchable layer's entry (scaled by the calibration); older LUTs lack the flag, and there only
    network-method entries were measured as layers."""
    return bool(entry["slot"]) if "slot" in entry else entry.get("method") == "network"


class LUT:
    """A loaded latency lookup table (see the module docstring for the file and the model)."""

    def __init__(self, doc: dict[str, Any], path: Path | None = None) -> None:
        validate_doc(doc, str(path) if path else "LUT")
        self.doc = doc
        self.path = path
        self._build_model()

    # -- identity ---------------------------------------------------------------------------------
    @property
    def provenance(self) -> dict[str, Any]:
        return self.doc["provenance"]

    @property
    def space(self) -> str:
        return self.doc["space"]

    @property
    def space_options(self) -> dict[str, Any]:
        """The space's size options it was profiled for (``--space-opt``; ``{}`` = the defaults). A LUT
        without the field predates LUTs always recording it, and meant the defaults of its time
        (:meth:`~rtseg.spaces.base.SearchSpace.unrecorded_options`)."""
        if "space_options" not in self.doc:
            return get_space(self.space).unrecorded_options()
        return dict(self.doc["space_options"] or {})

    def search_space(self) -> Any:
        """The search space this LUT measured, with its size options."""
        return get_space(self.space, self.space_options)

    @property
    def num_classes(self) -> int:
        return int(self.doc["num_classes"])

    @property
    def heads(self) -> list[str]:
        return list(self.doc["heads"])

    @property
    def backend(self) -> str:
        return self.provenance["backend"]

    @property
    def precision(self) -> str:
        return self.provenance["precision"]

    @property
    def batch(self) -> int:
        return int(self.provenance["batch"])

    @property
    def input_hw(self) -> tuple[int, int]:
        h, w = self.provenance["input"]
        return int(h), int(w)

    @property
    def method(self) -> str:
        return self.provenance["method"]

    @property
    def clock(self) -> str:
        return str(self.provenance.get("clock", "wall"))

    @property
    def threads(self) -> int | None:
        return self.provenance.get("threads")

    @property
    def device(self) -> dict[str, Any]:
        """The device it was measured on, as its provenance records it (``kind``, ``name``, ``arg``...)."""
        return dict(self.provenance["device"])

    @property
    def device_arg(self) -> str:
        """The device string it was measured with (``cpu``, ``cuda:N``)."""
        return str(self.provenance.get("device_arg") or self.device.get("arg") or "cpu")

    @property
    def device_kind(self) -> str:
        """``cpu`` or ``cuda``: the kind recorded, else the kind of :attr:`device_arg`."""
        return str(self.device.get("kind") or device_kind(self.device_arg))

    @property
    def entries(self) -> dict[str, dict[str, Any]]:
        return self.doc["entries"]

    @property
    def skeletons(self) -> dict[str, dict[str, Any]]:
        return self.doc.setdefault("skeletons", {})

    @property
    def name(self) -> str:
        return str(self.path) if self.path else f"LUT({self.space}, {self.backend})"

    # -- the prediction model ---------------------------------------------------------------------
    def _build_model(self) -> None:
        """Costs per key and the network constant, derived from the measured entries and skeletons."""
        self._scale = self.calibration_scale
        self._base = base_speed([e.get("ref_ms") or 0.0 for e in self.entries.values()])
        self._cost: dict[str, float] = {k: self._at_base(e) * (self._scale if is_slot_entry(e) else 1.0)
                                        for k, e in self.entries.items()}
        self._constants: dict[str, float] = {}
        for head, sk in self.skeletons.items():
            if all(k in self._cost for k in sk["fixed"]):
                self._constants[head] = self._at_base(sk) - sum(self._cost[k] for k in sk["fixed"])
        base = self.heads[0] if self.heads else None
        self._constant = self._constants.get(base, 0.0) if base else 0.0
        # per-head constants beyond the search head's go into that head's own operator (once per net)
        for head, c in self._constants.items():
            if head == base or not self.skeletons[head].get("head_key"):
                continue
            key = self.skeletons[head]["head_key"]
            if key in self._cost:
                self._cost[key] += c - self._constant

    def _at_base(self, timing: dict[str, Any]) -> float:
        """A measured median (an entry or a skeleton) at the run's typical speed (see :mod:`rtseg.latency.speed`)."""
        return float(timing["median_ms"]) * speed_factor(timing.get("ref_ms"), self._base)

    @property
    def speed_base_ms(self) -> float | None:
        """The reference operator's typical time over the profiling run (None: no speed reference)."""
        return self._base

    def refresh(self) -> None:
        """Recompute the model after entries or skeletons changed (the profiler calls this)."""
        validate_doc(self.doc, self.name)
        self._build_model()

    @property
    def constant_ms(self) -> float:
        """Per-network constant of the prediction model (0 until the skeleton is measured)."""
        return self._constant

    @property
    def calibration_scale(self) -> float:
        """The fitted factor on layer entries (1.0 when the LUT has no calibration)."""
        cal = self.doc.get("calibration")
        return float(cal["scale"]) if isinstance(cal, dict) else 1.0

    def raw_cost(self, sig: OpSignature) -> float:
        """The measured entry of ``sig`` (ms) at the run's typical speed, before the calibration factor."""
        return self._at_base(self.entries[sig.key])

    @property
    def has_skeleton(self) -> bool:
        return bool(self.heads) and self.heads[0] in self._constants

    def has(self, sig: OpSignature) -> bool:
        return sig.key in self._cost

    def cost(self, sig: OpSignature) -> float:
        """Latency (ms) the model charges for ``sig`` (a dict lookup; the search calls this a lot)."""
        try:
            return self._cost[sig.key]
        except KeyError:
            h, w = self.input_hw
            raise RtsegError(
                f"LUT {self.name} does not cover operator {sig.short()} (it was measured for space {self.space!r} at "
                f"{h}x{w}, {self.num_classes} classes); re-run rtseg profile-ops --space {self.space} --input "
                f"<HxW of your network> for that space and input"
            ) from None

    def pricer(self, flops: Callable[[OpSignature], float] | None = None) -> Pricer:
        """This LUT's prediction model as a :class:`Pricer` (``flops`` counts multiply-adds beside it)."""
        return Pricer(self.cost, float(self._constant), flops)

    def predict(self, arch: Any, h: int | None = None, w: int | None = None, force: bool = False) -> Prediction:
        """Predicted end-to-end latency of ``arch`` at ``h x w`` (default: the LUT's input size).

        Refuses an arch of another space, input size or class count unless ``force`` (then any
        operator the LUT lacks still raises)."""
        arch = load_arch(arch)
        lh, lw = self.input_hw
        h = lh if h is None else int(h)
        w = lw if w is None else int(w)
        self.check_fits(space=arch.space, input_hw=(h, w), num_classes=arch.num_classes, head=arch.head, force=force)
        space = get_space(arch.space)
        lacking: dict[str, Any] = {}
        needed = space.options_needed(arch)
        if needed:  # an option the arch needs must leave the LUT's space as it is
            mine = self.search_space()
            lacking = {k: v for k, v in needed.items() if mine.with_options({k: v}).options() != mine.options()}
        if lacking:
            opts = " ".join(f"--space-opt {k}={json.dumps(v)}" for k, v in lacking.items())
            raise RtsegError(f"{arch.name or 'this arch'} uses layers that LUT {self.name} was not profiled for: profile one with "
                             f"rtseg profile-ops --space {self.space} {opts} (and the LUT's other settings)")
        sigs = space.signatures(arch, h, w)
        per_op = [(s, self.cost(s)) for s in sigs]
        total = self.pricer().price_signatures(sigs).latency_ms
        if not (math.isfinite(total) and total > 0):
            raise RtsegError(f"LUT {self.name} predicts {total:g} ms for {arch.name or 'this arch'}, which no network takes; its entries "
                             "are damaged: re-run rtseg profile-ops")
        return Prediction(total_ms=total, per_op=per_op, constant_ms=self._constant)

    def check_fits(self, *, space: str | None = None, space_options: dict[str, Any] | None = None,
                   input_hw: tuple[int, int] | None = None, num_classes: int | None = None, head: str | None = None,
                   force: bool = False, subject: str = "the arch") -> None:
        """Refuse (RtsegError, unless ``force``) to cost ``subject`` with this LUT when it asks about
        another space, size options, input size, class count or head than the LUT measured: its
        operators would be others. Arguments left ``None`` are not checked. :meth:`predict` and the
        search both check through here."""
        if force:
            return
        if space is not None and space != self.space:
            raise RtsegError(f"LUT {self.name} was measured for space {self.space!r}, {subject} is of space {space!r}; profile that space or pass --force")
        if space_options is not None and space == self.space:
            mine = self.search_space().options()
            if mine != dict(space_options):
                flags = " ".join(f"--space-opt {k}={json.dumps(v)}" for k, v in mine.items()) or "no --space-opt"
                raise RtsegError(f"LUT {self.name} was profiled for the {self.space} space with options {mine or 'default'}, {subject} asks "
                                 f"for {dict(space_options) or 'default'}; give the LUT's ({flags}), profile with the same --space-opt, "
                                 "or pass --force")
        if input_hw is not None and tuple(input_hw) != tuple(self.input_hw):
            (lh, lw), (h, w) = self.input_hw, input_hw
            raise RtsegError(f"LUT {self.name} was measured at {lh}x{lw}, {subject} runs at {h}x{w}; use --input {lh}x{lw} or profile at {h}x{w}")
        if num_classes is not None and num_classes != self.num_classes:
            raise RtsegError(f"LUT {self.name} was measured for {self.num_classes} classes, {subject} has {num_classes}; "
                             f"profile with --classes {num_classes} or pass --force")
        if head is not None and head not in self.heads:
            raise RtsegError(f"LUT {self.name} covers heads {', '.join(self.heads)}, not {head!r}; profile that head or pass --force")

    # -- provenance checks ------------------------------------------------------------------------
    def check_device(self, force: bool = False, device: str | None = None, backend: str | None = None) -> list[str]:
        """Refuse (RtsegError, unless ``force``) to measure against this LUT on another device or backend.

        ``device`` defaults to the device the LUT was measured on (``cpu``, ``cuda:N``); ``backend``,
        when given, must be the LUT's. Returns notes on differences that do not invalidate the LUT
        (library versions), for the caller to show."""
        prov = self.provenance
        lut_dev = self.device
        arg = device or self.device_arg
        problems: list[str] = []
        if backend is not None and backend != self.backend:
            problems.append(f"it was measured with the {self.backend} backend, not {backend}")
        try:
            here = detect_device(arg, threads=None)
        except RtsegError as exc:
            problems.append(f"its device {arg} is not available here ({exc})")
            here = None
        if here is not None:
            if here.kind != lut_dev.get("kind", here.kind) or here.name != lut_dev.get("name"):
                problems.append(f"it was measured on {lut_dev.get('name')!r} ({lut_dev.get('kind')}), this machine's {arg} is {here.name!r}")
            elif here.kind == "cuda" and lut_dev.get("compute_capability") not in (None, here.details.get("compute_capability")):
                problems.append(f"it was measured on compute capability {lut_dev.get('compute_capability')}, this GPU has {here.details.get('compute_capability')}")
            elif here.kind == "cpu" and self.threads and self.threads > (here.details.get("logical_cores") or self.threads):
                problems.append(f"it was measured with {self.threads} threads, this machine has {here.details.get('logical_cores')} cores")
        if problems and not force:
            raise RtsegError(f"LUT {self.name} does not match this run: {'; '.join(problems)}; measure a LUT here with rtseg profile-ops or pass --force")
        notes = [f"forced past: {p}" for p in problems]
        import torch

        if self.backend == "torch" and prov.get("backend_version") not in (None, torch.__version__):
            notes.append(f"LUT measured with torch {prov.get('backend_version')}, this is torch {torch.__version__}")
        return notes

    def mismatches(self, run: dict[str, Any]) -> list[str]:
        """Differences between this LUT's provenance and a profiling run's (``run`` is its provenance)."""
        out = []
        for key in ("space", "num_classes"):
            if run.get(key) is not None and run[key] != self.doc.get(key):
                out.append(f"{key} {self.doc.get(key)!r} vs {run[key]!r}")
        if "space_options" in run and (run["space_options"] or {}) != self.space_options:
            out.append(f"space_options {self.space_options} vs {run['space_options']}")
        prov = self.provenance
        for key in MATCH_FIELDS:
            if key in run and prov.get(key) != run[key]:
                out.append(f"{key} {prov.get(key)!r} vs {run[key]!r}")
        mine = self.device
        theirs = run.get("device") if isinstance(run.get("device"), dict) else {}
        for key in ("kind", "name", "threads", "compute_capability"):
            if mine.get(key) != theirs.get(key):
                out.append(f"device {key} {mine.get(key)!r} vs {theirs.get(key)!r}")
        return out

    # -- reporting --------------------------------------------------------------------------------
    def summary(self, top: int = 5) -> dict[str, Any]:
        rows = sorted(((float(e["median_ms"]), k, e) for k, e in self.entries.items()), key=lambda r: r[0])

        def row(r: tuple[float, str, dict[str, Any]]) -> dict[str, Any]:
            return {"op": r[2].get("op") or OpSignature.from_key(r[1]).short(), "median_ms": r[0], "p10_ms": r[2]["p10_ms"],
                    "p90_ms": r[2]["p90_ms"], "n": r[2]["n"]}

        prov = self.provenance
        return {
            "path": str(self.path) if self.path else None,
            "space": self.space,
            "space_options": self.space_options,
            "num_classes": self.num_classes,
            "heads": self.heads,
            "entries": len(self.entries),
            "complete": bool(self.doc.get("complete")),
            "expected_entries": self.doc.get("expected_entries"),
            "constant_ms": self.constant_ms,
            "skeleton_measured": self.has_skeleton,
            "calibration": {k: v for k, v in (self.doc.get("calibration") or {}).items() if k != "rows"} or None,
            "calibration_rejected": {k: v for k, v in (self.doc.get("calibration_rejected") or {}).items() if k != "rows"} or None,
            "skeletons": {h: {"median_ms": s["median_ms"], "p10_ms": s["p10_ms"], "p90_ms": s["p90_ms"], "n": s["n"]}
                          for h, s in self.skeletons.items()},
            "probe": self.probe_summary(),
            "speed": self.speed_summary(),
            "fastest": [row(r) for r in rows[:top]],
            "slowest": [row(r) for r in rows[::-1][:top]],
            "profiling_s": prov.get("profiling_s"),
            "provenance": copy.deepcopy(prov),
        }

    def speed_summary(self) -> dict[str, Any] | None:
        """The speed reference: its typical time and how far the machine's speed moved beside the entries."""
        import numpy as np

        ref = self.provenance.get("speed_reference")
        if not isinstance(ref, dict) or self._base is None:
            return None
        ratios = [float(e["ref_ms"]) / self._base for e in self.entries.values() if e.get("ref_ms")]
        p10, p90 = np.percentile(ratios, [10, 90])
        return {"op": ref.get("short"), "key": ref.get("op"), "base_ms": self._base, "entries": len(ratios),
                "p10": float(p10), "p90": float(p90), "min": min(ratios), "max": max(ratios)}

    def probe_summary(self) -> dict[str, Any] | None:
        """How steady the machine was while profiling: the reference operator's timings over the run."""
        pr = self.doc.get("probes") or {}
        vals = sorted(float(v) for _, v in pr.get("samples", []))
        if not vals:
            return None
        import statistics

        return {"op": pr.get("short"), "key": pr.get("op"), "n": len(vals), "min_ms": vals[0], "median_ms": statistics.median(vals),
                "max_ms": vals[-1], "spread": vals[-1] / vals[0] - 1.0 if vals[0] > 0 else None}

    # -- what profile-ops writes (the only code that changes a LUT goes through these) -------------
    @property
    def complete(self) -> bool:
        """Every entry and skeleton of the space was measured (a ``signatures`` subset run never is)."""
        return bool(self.doc.get("complete"))

    def set_progress(self, expected_entries: int | None = None, complete: bool | None = None) -> None:
        """Record how many entries the full table has, and whether it is complete."""
        if expected_entries is not None:
            self.doc["expected_entries"] = int(expected_entries)
        if complete is not None:
            self.doc["complete"] = bool(complete)

    def set_entry(self, key: str, entry: dict[str, Any]) -> None:
        """Store one measured entry (call :meth:`refresh` once a batch of them is in)."""
        self.entries[key] = entry

    def set_skeleton(self, head: str, skeleton: dict[str, Any]) -> None:
        self.skeletons[head] = skeleton

    @property
    def has_calibration(self) -> bool:
        """A calibration was fitted (applied, or kept as rejected) and need not be fitted again."""
        return "calibration" in self.doc or "calibration_rejected" in self.doc

    @property
    def calibration(self) -> dict[str, Any] | None:
        """The applied calibration record (None: raw entries)."""
        cal = self.doc.get("calibration")
        return cal if isinstance(cal, dict) else None

    def set_calibration(self, record: dict[str, Any] | None, accepted: bool = True) -> None:
        """Store a calibration record: applied when ``accepted``, else kept as ``calibration_rejected``
        (so a resumed run does not fit it again); ``None`` forgets both (the entries it was fitted
        on changed). Refreshes the model."""
        self.doc.pop("calibration", None)
        self.doc.pop("calibration_rejected", None)
        if record is not None:
            self.doc["calibration" if accepted else "calibration_rejected"] = record
        self.refresh()

    @contextmanager
    def uncalibrated(self) -> Iterator["LUT"]:
        """The model without its calibration factor for the ``with`` block (to fit a new one)."""
        saved = self.doc.pop("calibration", None)
        self.refresh()
        try:
            yield self
        finally:
            if saved is not None:
                self.doc["calibration"] = saved
            self.refresh()

    def probes(self, key: str, short: str) -> list[list[float]] | None:
        """The reference operator's timings over the profiling run (``[seconds into the run, ms]``
        pairs), started for operator ``key`` if the LUT has none yet; append to it in place. None
        when the LUT's probes are of another operator (nothing more is recorded then)."""
        rec = self.doc.setdefault("probes", {"op": key, "short": short, "samples": []})
        return rec["samples"] if rec.get("op") == key else None

    # -- I/O --------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return self.doc

    def save(self, path: str | Path | None = None) -> Path:
        """Write atomically (a crash mid-write leaves the previous file intact)."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise ValueError("no path to save the LUT to")
        atomic_write_text(target, json.dumps(self.doc, indent=1) + "\n")
        return target


def new_lut(space: str, num_classes: int, heads: list[str], provenance: dict[str, Any], path: Path | None = None,
            space_options: dict[str, Any] | None = None) -> LUT:
    doc = {"format": LUT_FORMAT, "schema_version": LUT_SCHEMA_VERSION, "space": space, "num_classes": int(num_classes),
           "heads": list(heads), "complete": False, "provenance": provenance, "entries": {}, "skeletons": {},
           "space_options": dict(space_options or {})}  # always written: its absence marks an older LUT
    return LUT(doc, path)


def load_lut(path: str | Path) -> LUT:
    """Load and check a LUT file (clear RtsegError on a missing file, bad JSON or a wrong schema)."""
    p = Path(path)
    doc = read_json(p, "LUT file")
    return LUT(doc, p)
