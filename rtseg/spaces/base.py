"""The search-space interface and registry.

A space knows four things: which archs are valid (:meth:`validate`), how to draw one
(:meth:`sample`), how to build the discrete network (:meth:`build`) and the supernet
(:meth:`supernet`), and which operator signatures an arch places at an input size
(:meth:`signatures`) or the space can place at all (:meth:`candidate_signatures`), which is what
``profile-ops`` measures and what latency/FLOPs predictions sum.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import torch
from torch import nn

from rtseg.errors import RtsegError
from rtseg.ops import OpSignature


@dataclass
class Decision:
    """One architecture choice of a supernet: a categorical over ``choices`` with a relaxed weight.

    ``level`` groups decisions for per-level regularization and hierarchical shrinking
    (Ye et al., IJCV 2022: ``depth``, ``dilation_spatial``, ``channels``). ``alive`` marks candidates not yet
    removed by shrinking; removed candidates get probability exactly 0.
    """

    name: str
    level: str
    choices: list[Any]
    alpha: nn.Parameter
    alive: torch.Tensor = field(repr=False)

    @property
    def n_alive(self) -> int:
        return int(self.alive.sum())


class Network(nn.Module):
    """Base of decoded networks: remembers its arch and lists the signatures it executes."""

    arch: Any

    def signatures(self, h: int, w: int) -> list[OpSignature]:  # pragma: no cover - overridden
        raise NotImplementedError


class SearchSpace(ABC):
    name: str = ""
    #: Input height and width must be multiples of this.
    size_divisor: int = 1
    heads: tuple[str, ...] = ("classifier",)
    #: The architecture regularizer of the space's own paper, what ``rtseg search`` uses unless
    #: ``--reg`` names another (see :mod:`rtseg.search.objective`).
    default_reg: str = "ssr"
    #: Regularizers only this space has (its supernet's ``regularization()`` terms), by name.
    own_regs: tuple[str, ...] = ()

    def options(self) -> dict[str, Any]:
        """The size options (``--space-opt``) that differ from the space's defaults, JSON-ready; ``{}``
        for the default space. A LUT, a search config and an arch record them, so what one run
        measured or searched is rebuilt exactly by the next."""
        return {}

    def with_options(self, options: Mapping[str, Any]) -> "SearchSpace":
        """This space with ``options`` (field name -> value) applied over its current config."""
        if options:
            raise RtsegError(f"space {self.name!r} takes no --space-opt options (got {', '.join(sorted(options))}); "
                             "its size is fixed by its paper's backbone")
        return self

    @abstractmethod
    def validate(self, arch: Any, source: str = "arch") -> None: ...

    @abstractmethod
    def sample(self, rng: random.Random, num_classes: int = 19, head: str = "classifier") -> Any: ...

    @abstractmethod
    def build(self, arch: Any) -> Network: ...

    @abstractmethod
    def supernet(self, num_classes: int = 19) -> nn.Module: ...

    @abstractmethod
    def signatures(self, arch: Any, h: int, w: int) -> list[OpSignature]: ...

    @abstractmethod
    def candidate_signatures(self, h: int, w: int, num_classes: int = 19, heads: tuple[str, ...] | None = None) -> list[OpSignature]: ...

    def check_input(self, h: int, w: int) -> None:
        d = self.size_divisor
        if h % d or w % d:
            raise RtsegError(f"input size {h}x{w} is not a multiple of {d}, which the {self.name!r} space needs")


_SPACES: dict[str, Callable[[], SearchSpace]] = {}


def register_space(name: str) -> Callable[[Callable[[], SearchSpace]], Callable[[], SearchSpace]]:
    def deco(factory: Callable[[], SearchSpace]) -> Callable[[], SearchSpace]:
        _SPACES[name] = factory
        return factory

    return deco


def get_space(name: str, options: Mapping[str, Any] | None = None) -> SearchSpace:
    """The registered space ``name``, with its size ``options`` applied (see :meth:`SearchSpace.with_options`)."""
    try:
        factory = _SPACES[name]
    except KeyError:
        raise RtsegError(f"unknown search space {name!r}; available: {', '.join(sorted(_SPACES))}") from None
    space = factory()
    return space.with_options(options) if options else space


def parse_space_options(items: Iterable[str] | None) -> dict[str, Any]:
    """``["width=16", "stem=[16,16,32]", "layout=NRNRN"]`` -> a dict. A value is read as JSON when it
    parses (numbers, lists), as a plain string otherwise."""
    import json

    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, text = str(item).partition("=")
        key = key.strip()
        if not sep or not key:
            raise RtsegError(f"--space-opt {item!r} is not KEY=VALUE (e.g. --space-opt width=16)")
        try:
            out[key] = json.loads(text)
        except ValueError:
            out[key] = text.strip()
    return out


def space_slug(name: str, options: Mapping[str, Any] | None = None) -> str:
    """A file-name-safe name of a space and its options: ``cas``, ``cas-width16-nodes4``."""
    parts = [name]
    for key in sorted(options or {}):
        v = options[key]  # type: ignore[index]
        parts.append(f"{key}{'x'.join(map(str, v)) if isinstance(v, (list, tuple)) else v}")
    return "-".join(parts)


def space_names() -> list[str]:
    return sorted(_SPACES)


class DecisionTable:
    """Mixin for supernets (an ``nn.Module``): the architecture parameters and alive masks of their
    decisions, kept in one ``ParameterDict`` (``alphas``) and one bool buffer per decision (so
    ``state_dict`` round-trips shrinking). Subclasses call :meth:`_init_decisions` then
    :meth:`_add_decision`, and define ``probs(name)`` (their relaxation)."""

    alphas: nn.ParameterDict
    _decisions: dict[str, Decision]

    def _init_decisions(self) -> None:
        self.alphas = nn.ParameterDict()
        self._decisions = {}

    def _add_decision(self, name: str, level: str, choices: list[Any], init_std: float = 1e-3) -> Decision:
        key = name.replace(".", "__")
        self.alphas[key] = nn.Parameter(init_std * torch.randn(len(choices)))
        alive = torch.ones(len(choices), dtype=torch.bool)
        self.register_buffer(f"alive__{key}", alive)  # type: ignore[attr-defined]
        dec = Decision(name, level, choices, self.alphas[key], alive)
        self._decisions[name] = dec
        return dec

    def _alive(self, name: str) -> torch.Tensor:
        return getattr(self, "alive__" + name.replace(".", "__"))

    def _alpha(self, name: str) -> nn.Parameter:
        return self.alphas[name.replace(".", "__")]

    def decisions(self) -> list[Decision]:
        for d in self._decisions.values():  # buffers may have moved device: refresh references
            d.alive = self._alive(d.name)
            d.alpha = self._alpha(d.name)
        return list(self._decisions.values())

    def decisions_by_name(self) -> dict[str, Decision]:
        self.decisions()
        return dict(self._decisions)

    def arch_parameters(self) -> list[nn.Parameter]:
        return list(self.alphas.values())

    def weight_parameters(self) -> list[nn.Parameter]:
        arch_ids = {id(p) for p in self.alphas.values()}
        return [p for p in self.parameters() if id(p) not in arch_ids]  # type: ignore[attr-defined]

    def _keep_only(self, name: str, indices: list[int]) -> None:
        """Mark every candidate of ``name`` but ``indices`` as removed (used by ``fix``)."""
        alive = self._alive(name)
        alive.zero_()
        alive[indices] = True
