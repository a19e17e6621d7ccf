"""Operator identity: :class:`OpSpec` (what a module is) and :class:`OpSignature` (where it runs).

An operator at one position of a network is fully described by its type, its hyper-parameters,
C_in, C_out, stride, and the input H x W. That tuple is the key of the latency LUT, the key of the
FLOPs cache, and the recipe the profiler, the supernet and the decoded network all build the module
from, so the thing that is measured is, by construction, the thing that runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, Mapping

import torch
from torch import nn

from rtseg.errors import RtsegError


def _freeze(params: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    out = []
    for k in sorted(params):
        v = params[k]
        if isinstance(v, list):
            v = tuple(v)
        out.append((k, v))
    return tuple(out)


@dataclass(frozen=True)
class OpSpec:
    """What an operator is, independent of where it runs: type, hyper-parameters, C_in, C_out, stride."""

    type: str
    c_in: int
    c_out: int
    stride: int = 1
    params: tuple[tuple[str, Any], ...] = ()

    @staticmethod
    def make(type: str, c_in: int, c_out: int, stride: int = 1, **params: Any) -> "OpSpec":
        return OpSpec(type=type, c_in=int(c_in), c_out=int(c_out), stride=int(stride), params=_freeze(params))

    @property
    def hparams(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.params}

    def at(self, h: int, w: int) -> "OpSignature":
        return OpSignature(spec=self, h=int(h), w=int(w))

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "c_in": self.c_in, "c_out": self.c_out, "stride": self.stride, **self.hparams}

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> "OpSpec":
        d = dict(d)
        try:
            return OpSpec.make(d.pop("type"), d.pop("c_in"), d.pop("c_out"), d.pop("stride", 1), **d)
        except KeyError as exc:
            raise RtsegError(f"operator description {dict(d)} lacks the field {exc}") from None


@dataclass(frozen=True)
class OpSignature:
    """An :class:`OpSpec` at an input size: the canonical identity used as a LUT key."""

    spec: OpSpec
    h: int
    w: int
    _key: str = field(default="", compare=False, repr=False)

    @property
    def type(self) -> str:
        return self.spec.type

    def to_dict(self) -> dict[str, Any]:
        return {**self.spec.to_dict(), "h": self.h, "w": self.w}

    @property
    def key(self) -> str:
        """Canonical string form: a JSON object with sorted keys and no spaces."""
        if not self._key:
            object.__setattr__(self, "_key", json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")))
        return self._key

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> "OpSignature":
        d = dict(d)
        try:
            h, w = d.pop("h"), d.pop("w")
        except KeyError as exc:
            raise RtsegError(f"operator signature {dict(d)} lacks the field {exc}") from None
        return OpSpec.from_dict(d).at(h, w)

    @staticmethod
    def from_key(key: str) -> "OpSignature":
        try:
            d = json.loads(key)
        except (json.JSONDecodeError, RecursionError):
            d = None
        if not isinstance(d, dict):
            raise RtsegError(f"malformed operator signature key: {key[:120]!r}")
        return OpSignature.from_dict(d)

    def short(self) -> str:
        """A compact human-readable form for tables."""
        hp = ",".join(f"{k}={v}" for k, v in self.spec.params)
        s = f"{self.type}({self.spec.c_in}->{self.spec.c_out}"
        if self.spec.stride != 1:
            s += f",s{self.spec.stride}"
        if hp:
            s += f",{hp}"
        return s + f")@{self.h}x{self.w}"


class Op(nn.Module):
    """Base class of every registered operator.

    Subclasses take ``(c_in, c_out, stride, **hparams)`` in their constructor and record them in
    :attr:`spec`. :meth:`example_inputs` tells the profiler and FLOPs counter what the operator is fed
    at a given signature (most take one tensor; a few, such as the aggregation head, take several).
    """

    type_name: ClassVar[str] = ""
    spec: OpSpec

    def output_hw(self, h: int, w: int) -> tuple[int, int]:
        s = self.spec.stride
        return (h + s - 1) // s, (w + s - 1) // s

    @classmethod
    def example_inputs(
        cls, sig: OpSignature, batch: int = 1, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
    ) -> tuple[torch.Tensor, ...]:
        return (torch.randn(batch, sig.spec.c_in, sig.h, sig.w, dtype=dtype, device=device),)


_REGISTRY: dict[str, type[Op]] = {}


def register_op(name: str) -> Callable[[type[Op]], type[Op]]:
    """Class decorator: make an operator buildable by name from an :class:`OpSpec`."""

    def deco(cls: type[Op]) -> type[Op]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"operator {name!r} registered twice")
        cls.type_name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def op_class(name: str) -> type[Op]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise RtsegError(f"unknown operator {name!r}; known operators: {', '.join(sorted(_REGISTRY))}") from None


def build_op(spec: OpSpec) -> Op:
    """Build the module an :class:`OpSpec` describes (the one constructor used everywhere)."""
    cls = op_class(spec.type)
    try:
        return cls(spec.c_in, spec.c_out, stride=spec.stride, **spec.hparams)
    except TypeError as exc:
        raise RtsegError(f"cannot build operator {spec.type!r} from {spec.to_dict()}: {exc}") from None


def registered_ops() -> list[str]:
    return sorted(_REGISTRY)


def count_by_key(sigs: Iterable[OpSignature]) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in sigs:
        out[s.key] = out.get(s.key, 0) + 1
    return out
