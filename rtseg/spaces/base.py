"""The search-space interface, the supernet interface, and the registry.

A space (:class:`SearchSpace`) knows four things: which archs are valid (:meth:`~SearchSpace.validate`),
how to draw one (:meth:`~SearchSpace.sample`), how to build the discrete network
(:meth:`~SearchSpace.build`) and the supernet (:meth:`~SearchSpace.supernet`), and which operator
signatures an arch places at an input size (:meth:`~SearchSpace.signatures`) or the space can place at
all (:meth:`~SearchSpace.candidate_signatures`), which is what ``profile-ops`` measures and what
latency/FLOPs predictions sum.

A searchable space's supernet is a :class:`Supernet`: a weight-sharing network whose architecture
choices are :class:`Decision` s kept in one decision table, relaxed into probabilities by
:func:`relax`. The search loop (:mod:`rtseg.search.loop`) calls only what :class:`Supernet` declares.

Writing a fourth space: subclass :class:`SearchSpace` (the six abstract methods, plus
``cheapest_arch`` for a searchable one) and :class:`Supernet` (its abstract methods; override the
hooks whose defaults do not fit), then register a factory with :func:`register_space`.
"""

from __future__ import annotations

import json
import random
from abc import ABC, ABCMeta, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import torch
from torch import nn

from rtseg.arch import Arch, read_arch
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
    """One family of archs: validation, sampling, building, signatures, and (when searchable) a supernet.

    An arch (:class:`rtseg.arch.Arch`) names its space; its ``genotype`` is whatever JSON this space
    defines, and :meth:`validate` is the one place that says what a valid genotype is."""

    #: The registry name (``Arch.space``, ``--space``).
    name: str = ""
    #: Input height and width must be multiples of this.
    size_divisor: int = 1
    heads: tuple[str, ...] = ("classifier",)
    #: The architecture regularizer of the space's own paper, what ``rtseg search`` uses unless
    #: ``--reg`` names another (see :mod:`rtseg.search.objective`).
    default_reg: str = "ssr"
    #: Regularizers only this space has (its supernet's ``regularization()`` terms), by name.
    own_regs: tuple[str, ...] = ()
    #: The hand-designed family (:mod:`rtseg.spaces.families`) whose members are archs of this space:
    #: the default search seeds its evolution with the member scaled to the budget. None: no such family.
    reference_family: str | None = None
    #: Where no family scales in this space: a built-in arch of it (``rtseg/archs``) that the default
    #: search seeds instead, brought into the budget's band by changing operations. None: no such arch.
    reference_arch: str | None = None

    def layer_kind_references(self, price: Callable[[Any], float], high_ms: float, num_classes: int) -> list[tuple[Any, str]]:
        """Uniform nets of each layer kind the space offers beside its reference family's own (``ssr``'s
        STDC layers), each as deep as ``price`` lets it be within ``high_ms``, with a name: the default
        search seeds them beside the family's member. ``[]`` where the space has no such kind."""
        return []

    def options(self) -> dict[str, Any]:
        """The size options (``--space-opt``) that differ from the space's defaults, JSON-ready; ``{}``
        for the default space. A LUT, a search config and an arch record them, so what one run
        measured or searched is rebuilt exactly by the next."""
        return {}

    def unrecorded_options(self) -> dict[str, Any]:
        """The options (``--space-opt``) meant by a LUT that records none (it predates LUTs always
        recording theirs): the defaults of that time, where a default has since changed. ``{}`` where
        none has."""
        return {}

    def options_needed(self, arch: Any) -> dict[str, Any]:
        """The options (``--space-opt``) a LUT must have been profiled with to price ``arch``: ``{}``
        unless the arch uses a choice that some setting of the options leaves out of the space."""
        return {}

    def with_options(self, options: Mapping[str, Any]) -> "SearchSpace":
        """This space with ``options`` (field name -> value) applied over its current config."""
        if options:
            raise RtsegError(f"space {self.name!r} takes no --space-opt options (got {', '.join(sorted(options))}); "
                             "its size is fixed by its paper's backbone")
        return self

    @abstractmethod
    def validate(self, arch: Any, source: str = "arch") -> None:
        """Raise :class:`RtsegError` naming ``source`` and the offending field unless ``arch`` is a valid
        arch of this space (head, genotype shape, every value in range, no unknown fields)."""

    @abstractmethod
    def sample(self, rng: random.Random, num_classes: int = 19, head: str = "classifier") -> Any:
        """A random valid arch drawn with ``rng`` (random baselines, tests); a space that cannot be
        sampled raises :class:`RtsegError`."""

    @abstractmethod
    def build(self, arch: Any) -> Network:
        """The discrete network of ``arch`` (validated first), built only from registered operators."""

    @abstractmethod
    def supernet(self, num_classes: int = 19, relaxation: str | None = None) -> "Supernet":
        """The weight-sharing supernet of the space; ``relaxation`` (:func:`relax`'s ``mode``) replaces
        the space's own when given. A space that cannot be searched raises :class:`RtsegError`."""

    @abstractmethod
    def signatures(self, arch: Any, h: int, w: int) -> list[OpSignature]:
        """The operator signatures ``arch`` executes at input ``h x w``, in execution order: what a LUT
        prediction and a FLOPs count sum."""

    @abstractmethod
    def candidate_signatures(self, h: int, w: int, num_classes: int = 19, heads: tuple[str, ...] | None = None) -> list[OpSignature]:
        """Every distinct signature any arch of the space can place at ``h x w``: what ``profile-ops``
        measures, so that every arch the search can decode has a cost."""

    def cheapest_arch(self, cost: Callable[[OpSignature], float], h: int, w: int, num_classes: int = 19) -> Any:
        """The arch of least total ``cost`` (the search's feasibility check names its latency). Searchable
        spaces override this; the default says the space cannot be searched."""
        raise RtsegError(f"the {self.name!r} space is not searchable: it has no cheapest arch; search a space such as 'ssr'")

    def check_input(self, h: int, w: int) -> None:
        d = self.size_divisor
        if h % d or w % d:
            raise RtsegError(f"input size {h}x{w} is not a multiple of {d}, which the {self.name!r} space needs")


_SPACES: dict[str, Callable[[], SearchSpace]] = {}


def register_space(name: str) -> Callable[[Callable[[], SearchSpace]], Callable[[], SearchSpace]]:
    """Register a space factory under ``name`` (a decorator). A name is taken once: a second
    registration is refused, as :func:`rtseg.ops.register_op` refuses a second operator of a name."""

    def deco(factory: Callable[[], SearchSpace]) -> Callable[[], SearchSpace]:
        if name in _SPACES and _SPACES[name] is not factory:
            raise ValueError(f"search space {name!r} registered twice")
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


def validate_arch(arch: Arch, source: str = "arch") -> None:
    """The arch's space validates its genotype (the check :func:`rtseg.arch.read_arch` is given)."""
    get_space(arch.space).validate(arch, source=source)


def load_arch(path_or_name: str | Mapping[str, Any] | Arch) -> Arch:
    """Load an arch from a JSON path, a built-in name (``baseline1``...), a dict, or return an Arch as
    is; a read genotype is validated by its space (errors name the offending field)."""
    return read_arch(path_or_name, check=validate_arch)


def build_model(arch_or_path_or_name: str | Mapping[str, Any] | Arch, num_classes: int | None = None) -> "Network":
    """Build the discrete network of an arch (path, built-in name, dict or :class:`~rtseg.arch.Arch`)."""
    arch = load_arch(arch_or_path_or_name)
    if num_classes is not None and num_classes != arch.num_classes:
        arch = arch.with_(num_classes=num_classes)
    return get_space(arch.space).build(arch)


def parse_space_options(items: Iterable[str] | None) -> dict[str, Any]:
    """``["width=16", "stem=[16,16,32]", "layout=NRNRN"]`` -> a dict. A value is read as JSON when it
    parses (numbers, lists), as a plain string otherwise."""
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
        except RecursionError:
            raise RtsegError(f"--space-opt {key}: the value nests too deep to be a size option") from None
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


def relax(alpha: torch.Tensor, alive: torch.Tensor, mode: str) -> torch.Tensor:
    """Continuous relaxation of one decision: ``softmax`` (DARTS, Liu et al., ICLR 2019, eq. 2; CAS) or
    ``sigmoid`` then normalize (SSR, Ye et al., IJCV 2022, sec. 3.2).

    Removed candidates get probability exactly 0; a single survivor gets exactly 1."""
    if int(alive.sum()) == 1:
        return alive.to(alpha.dtype)
    if mode == "softmax":
        z = alpha.masked_fill(~alive, float("-inf"))
        return torch.softmax(z, dim=0)
    if mode == "sigmoid":
        s = torch.sigmoid(alpha) * alive.to(alpha.dtype)
        return s / s.sum()
    raise ValueError(f"unknown relaxation {mode!r}")


class Supernet(DecisionTable, nn.Module, metaclass=ABCMeta):
    """A weight-sharing supernet: everything the search loop (:mod:`rtseg.search.loop`), the
    objective (:mod:`rtseg.search.objective`) and the budget fit (:mod:`rtseg.search.budget`) call.

    The architecture is a table of :class:`Decision` s (:class:`DecisionTable`): the constructor calls
    ``nn.Module.__init__``, builds the weights, then :meth:`_init_decisions` and one
    :meth:`_add_decision` per choice. Architecture parameters (:meth:`arch_parameters`) and weights
    (:meth:`weight_parameters`) are optimized apart (bilevel search).

    Abstract (every supernet writes these): :meth:`forward`, :meth:`expected_cost`, :meth:`remove`,
    :meth:`argmax_choices`, :meth:`arch_from_choices`, :meth:`choices_of`, :meth:`fix` and
    :meth:`derive_weights`. Hooks with a default: :meth:`probs` (the :attr:`relaxation` of the
    decision's α), :meth:`decode` (argmax), :meth:`active_decisions` (all), :meth:`on_epoch`
    (nothing), :meth:`regularization` (none), :meth:`can_remove` (always) and :attr:`shrink_levels`
    (the decisions' levels in the order they were added)."""

    #: :func:`relax` mode of the decisions (``softmax`` or ``sigmoid``), set by the constructor.
    relaxation: str = "softmax"
    #: Whether :attr:`sample_paths` (single-path search: one sampled path per training step) is
    #: implemented; the search refuses ``--single-path`` otherwise.
    supports_single_path: bool = False
    #: Single-path mode switch (only meaningful when :attr:`supports_single_path`).
    sample_paths: bool = False
    #: Whether :meth:`forward_path` (run one discrete subnet with the shared weights) is implemented;
    #: the one-shot search refuses a space without it.
    supports_path_forward: bool = False
    #: The order in which shrinking visits levels (:func:`rtseg.search.objective.shrink`); ``None``:
    #: the decisions' levels in the order they were added.
    shrink_levels: tuple[str, ...] | None = None

    def forward_path(self, x: torch.Tensor, choices: dict[str, int]) -> torch.Tensor:
        """Run exactly the discrete subnet ``choices`` (a candidate index per decision) with the shared
        weights, as the decoded net loaded with :meth:`derive_weights` would (one-shot training and
        scoring run through here). Optional: set :attr:`supports_path_forward` when implemented."""
        raise RtsegError(f"{type(self).__name__} cannot run one discrete path; the one-shot search needs a space that can")

    # -- the relaxed distribution ---------------------------------------------------------------
    def probs(self, name: str) -> torch.Tensor:
        """Probabilities of the candidates of decision ``name`` (0 for removed ones), differentiable in α."""
        return relax(self._alpha(name), self._alive(name), self.relaxation)

    def active_decisions(self) -> list[Decision]:
        """Decisions that can still change the decoded network (what the regularizer, the entropy,
        shrinking and the budget fit look at). Default: all of them."""
        return self.decisions()

    def levels_to_shrink(self) -> tuple[str, ...]:
        """:attr:`shrink_levels`, or the decisions' levels in the order they were added."""
        if self.shrink_levels is not None:
            return tuple(self.shrink_levels)
        return tuple(dict.fromkeys(d.level for d in self.decisions()))

    @abstractmethod
    def expected_cost(self, cost: Callable[[OpSignature], float], h: int, w: int) -> torch.Tensor:
        """E[cost] at input ``h x w`` under the current distribution (CAS eq. 5), differentiable in α.
        ``cost`` maps an operator signature to a cost (a LUT's latency, FLOPs...); cache tables per
        ``(cost, h, w)``: the search calls this every arch step."""

    # -- shrinking --------------------------------------------------------------------------------
    def remove(self, name: str, index: int) -> None:
        """Remove candidate ``index`` of decision ``name`` with its weights (progressive shrinking); a
        no-op for a removed candidate, ``ValueError`` for the last survivor. Replaying the removals
        in order on a fresh supernet must give the same ``state_dict`` keys (``--resume``).
        The bookkeeping is the same for every space; each drops the weights in :meth:`drop_weights`."""
        alive = self._alive(name)
        if not bool(alive[index]):
            return
        if int(alive.sum()) <= 1:
            raise ValueError(f"cannot remove the last candidate of {name}")
        alive[index] = False
        self.drop_weights(name, index)

    @abstractmethod
    def drop_weights(self, name: str, index: int) -> None:
        """Free the weights of candidate ``index`` of ``name``, which :meth:`remove` has just marked
        removed (it is not the last survivor)."""

    def can_remove(self, name: str, index: int) -> bool:
        """Whether shrinking may remove candidate ``index`` of ``name``; a supernet whose decisions
        depend on each other vetoes removals here. Default: always."""
        return True

    # -- the search's per-epoch hook and regularizers ---------------------------------------------
    def on_epoch(self, epoch: int, total_epochs: int) -> None:
        """Called at the start of every search epoch (e.g. to anneal a temperature). Default: nothing."""

    def regularization(self) -> dict[str, torch.Tensor]:
        """The supernet's own regularizer terms, already weighted, by name (added to the arch loss
        when ``--reg`` names one of its space's ``own_regs``). Default: none."""
        return {}

    # -- discrete <-> relaxed ---------------------------------------------------------------------
    @abstractmethod
    def argmax_choices(self) -> dict[str, int]:
        """The candidate index per decision that :meth:`decode` takes."""

    @abstractmethod
    def arch_from_choices(self, choices: Mapping[str, int], name: str | None = None) -> Any:
        """The discrete arch given a candidate index per decision."""

    def decode(self, name: str | None = None) -> Any:
        """The most likely discrete arch: :meth:`arch_from_choices` of :meth:`argmax_choices`."""
        return self.arch_from_choices(self.argmax_choices(), name=name)

    @abstractmethod
    def choices_of(self, arch: Any) -> dict[str, int]:
        """The candidate index per decision that ``arch`` makes (the inverse of :meth:`arch_from_choices`)."""

    @abstractmethod
    def fix(self, arch: Any) -> None:
        """Keep only the candidates ``arch`` uses, so the supernet computes exactly that arch."""

    @abstractmethod
    def derive_weights(self, arch: Any) -> dict[str, torch.Tensor]:
        """The ``state_dict`` of ``space.build(arch)`` filled with this supernet's shared weights."""
