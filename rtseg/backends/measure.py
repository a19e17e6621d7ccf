"""Timing whole networks end to end: the one function every caller goes through.

:func:`measure_networks` times a list of networks on one runtime (a :class:`LatencyMeasure`: backend,
device, threads, precision, batch, input size, clock) and returns every sample with the round it
was taken in. ``lut validate`` and the LUT's calibration, the family picker, ``rtseg bench`` and the
searches' measured check all call it; they differ only in the number of rounds.

``rounds > 1``: every network is made ready first, warmed once, and then timed ``repeats //
rounds`` calls per round in a shuffled order, round after round; each network's samples are pooled
into one median. A burst of load from another process then spreads over all networks instead of
inflating the one measured during it, so networks compared with each other see the same machine.
``rounds == 1``: one network after another, each made ready only while it is timed (``warmup``
untimed calls, then ``repeats`` timed ones): ``rtseg bench``'s default protocol, whose models may not
all fit in memory at once.

A network is an arch (an :class:`~rtseg.arch.Arch`, its JSON document, a path or a built-in name),
built with random weights (latency does not depend on weight values); an ``nn.Module``; an ONNX
file (a path ending in ``.onnx``, on the ``onnxruntime`` backend); or a callable that returns a
network made ready by its caller, anything with ``samples(warmup, repeats) -> list[float]`` (ms per
call) and ``close()``, such as a runner (:mod:`rtseg.backends.runner`) opened on a checkpoint, an
ONNX file or a TensorRT engine. Archs, modules and ONNX files are made ready by the runtime's timer
(:func:`rtseg.backends.timers.make_timer`) in the form they are deployed in: the exported graph,
simplified as ``rtseg export`` writes it, on ONNX Runtime; an engine built from it on TensorRT; the
module in inference mode on torch.

This module imports neither torch nor the spaces at import time: ``rtseg bench`` times ONNX files
and engines on a deploy install without PyTorch.
"""

from __future__ import annotations

import random
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from rtseg.backends.device import device_name, keeps_torch_threads
from rtseg.backends.timing import TimingStats
from rtseg.errors import RtsegError


class ReadyNetwork(Protocol):
    """A network made ready on a backend (a timer's ``Prepared``, a runner)."""

    def samples(self, warmup: int, repeats: int) -> list[float]: ...

    def close(self) -> None: ...


@dataclass
class NetworkTimings:
    """End-to-end samples (ms) per network, in the order given; with a speed reference, the
    reference's time (ms) beside each sample (None without one); the round each sample was taken in."""

    samples: list[list[float]]
    sample_refs: list[list[float]] | None = None
    sample_rounds: list[list[int]] | None = None

    @property
    def medians(self) -> list[float]:
        return [statistics.median(s) for s in self.samples]

    def stats(self, index: int = 0) -> TimingStats:
        """Median, percentiles and count of one network's samples."""
        return TimingStats.from_samples(self.samples[index])


@dataclass
class LatencyMeasure:
    """A runtime to time whole networks on, and the protocol's sizes: called on an arch, its median
    latency (ms, one network at a time); :meth:`many` times several interleaved. The default is the
    CPU deploy target: the ONNX export run by ONNX Runtime on one thread."""

    input_hw: tuple[int, int] = (128, 256)
    backend: str = "onnxruntime"
    device: str = "cpu"
    threads: int | None = 1
    precision: str = "fp32"
    warmup: int = 10
    repeats: int = 50
    clock: str = "wall"
    batch: int = 1

    def timer(self) -> Any:
        """The backend's timer on this device (sets torch's thread count: callers restore it, as
        :func:`measure_networks` does)."""
        from rtseg.backends.device import detect_device
        from rtseg.backends.timers import make_timer

        return make_timer(self.backend, detect_device(self.device, self.threads), self.precision, self.batch, self.clock)

    def stats(self, arch: Any) -> TimingStats:
        """End-to-end latency of one network (``warmup`` untimed calls, ``repeats`` timed ones)."""
        return measure_networks([arch], self, warmup=self.warmup, repeats=self.repeats, rounds=1).stats()

    def __call__(self, arch: Any) -> float:
        return self.stats(arch).median_ms

    def many(self, archs: Sequence[Any], rounds: int = 10, repeats: int = 100) -> list[float]:
        """Median latency (ms) of several networks timed in interleaved, shuffled rounds."""
        return measure_networks(archs, self, warmup=self.warmup, repeats=repeats, rounds=rounds).medians

    @property
    def record(self) -> dict[str, Any]:
        return {"backend": self.backend, "device": self.device, "device_name": device_name(self.device),
                "threads": self.threads, "precision": self.precision, "input": f"{self.input_hw[0]}x{self.input_hw[1]}",
                "warmup": self.warmup, "repeats": self.repeats, "clock": self.clock, "statistic": "median"}


def _is_module(network: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(network, torch.nn.Module)


def _made_ready_by_caller(network: Any) -> bool:
    return callable(network) and not _is_module(network)


def measure_networks(networks: Sequence[Any], on: LatencyMeasure | None = None, *, warmup: int = 10, repeats: int = 100,
                     rounds: int = 10, seed: int = 0, timer: Any = None, speed: Any = None,
                     advance: Callable[[], None] | None = None) -> NetworkTimings:
    """Time every network ``repeats`` calls in all, in ``rounds`` shuffled rounds (see the module
    docstring; the shuffle is seeded by ``seed``) on the runtime ``on``.

    ``timer`` reuses a timer the caller made for ``on`` (``lut validate`` times its speed reference
    with the same one); without it one is made, and torch's thread count is restored afterwards.
    ``speed`` (a :class:`rtseg.latency.speed.SpeedReference`) brackets each network's calls of a
    round with reference blocks, and every sample of the round records their median. ``advance`` is
    called once per network made ready and once per network and round."""
    nets = list(networks)
    if timer is None and not all(_made_ready_by_caller(n) for n in nets):
        if on is None:
            raise ValueError("measure_networks needs the runtime (on=LatencyMeasure(...)) to build and time archs or modules")
        return _with_own_timer(nets, on, warmup, repeats, rounds, seed, speed, advance)
    return _measure(nets, lambda n: _make_ready(n, on, timer), warmup, repeats, rounds, seed, speed, advance)


@keeps_torch_threads
def _with_own_timer(nets: list[Any], on: LatencyMeasure, warmup: int, repeats: int, rounds: int, seed: int, speed: Any,
                    advance: Callable[[], None] | None) -> NetworkTimings:
    from rtseg.backends.device import steady_allocator

    steady_allocator()  # as profile-ops does, so the timings are comparable with a LUT's
    timer = on.timer()
    return _measure(nets, lambda n: _make_ready(n, on, timer), warmup, repeats, rounds, seed, speed, advance)


def _make_ready(network: Any, on: LatencyMeasure | None, timer: Any, input_sets: int = 2) -> ReadyNetwork:
    if _made_ready_by_caller(network):
        return network()
    import torch

    from rtseg.spaces import build_model

    if on is None:
        raise ValueError("measure_networks needs the runtime (on=LatencyMeasure(...)) for the input size of archs or modules")
    h, w = on.input_hw
    inputs = [(torch.randn(on.batch, 3, h, w),) for _ in range(input_sets)]
    if isinstance(network, (str, Path)) and str(network).lower().endswith(".onnx"):
        if not callable(getattr(timer, "prepare_onnx", None)):
            raise RtsegError(f"{network} is an ONNX file: time it on the onnxruntime backend, or pass the runner that opens it")
        return timer.prepare_onnx(network, inputs)
    module = network if _is_module(network) else build_model(network)
    return timer.prepare(module, inputs, simplify=True)  # a whole network: in the form rtseg export deploys it


def _measure(nets: list[Any], make_ready: Callable[[Any], ReadyNetwork], warmup: int, repeats: int, rounds: int, seed: int,
             speed: Any, advance: Callable[[], None] | None) -> NetworkTimings:
    per_round = max(1, repeats // max(1, rounds))
    pooled: list[list[float]] = [[] for _ in nets]
    refs: list[list[float]] = [[] for _ in nets]
    taken_in: list[list[int]] = [[] for _ in nets]
    tick = advance or (lambda: None)

    def take(i: int, ready: ReadyNetwork, warm: int, rnd: int) -> None:
        if speed is None:
            got = ready.samples(warm, per_round)
        else:
            got, ref = speed.bracket(lambda: ready.samples(warm, per_round))
            refs[i] += [ref] * len(got)
        pooled[i] += got
        taken_in[i] += [rnd] * len(got)

    if rounds <= 1:  # one at a time, each made ready only while it is timed
        for i, n in enumerate(nets):
            ready = make_ready(n)
            try:
                tick()
                take(i, ready, warmup, 0)
            finally:
                ready.close()
            tick()
    else:
        prepared: list[ReadyNetwork] = []
        try:
            for n in nets:
                prepared.append(make_ready(n))
                prepared[-1].samples(warmup, 1)  # warm every network once before the rounds
                tick()
            order = list(range(len(nets)))
            shuffle = random.Random(seed + 1)
            for rnd in range(rounds):
                shuffle.shuffle(order)
                for i in order:
                    take(i, prepared[i], 2, rnd)
                    tick()
        finally:
            for p in prepared:
                p.close()
    return NetworkTimings(pooled, refs if speed is not None else None, taken_in)


__all__ = ["LatencyMeasure", "NetworkTimings", "ReadyNetwork", "measure_networks"]
