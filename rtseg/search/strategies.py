"""The search strategies, as one table: name, config dataclass, run function, what it does.

Every strategy's config extends :class:`~rtseg.search.common.SearchSettings` and its run function has
the signature ``run(cfg, out_dir, resume=False, reporter=None) -> SearchResult``; setup and finish are
shared (:mod:`rtseg.search.common`). ``rtseg search`` builds the config of ``--strategy`` from its
dataclass fields (their defaults are the defaults) and refuses a flag the strategy has no field for.

Adding a strategy: write one module with its config (a dataclass extending ``SearchSettings`` or
``EvolutionConfig``) and its run function (calling ``prepare`` first and ``finish`` last), then add a
row to :data:`STRATEGIES`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping

from rtseg.errors import RtsegError
from rtseg.reporting import Reporter
from rtseg.search.common import SearchResult, SearchSettings
from rtseg.search.loop import SearchConfig, run_search
from rtseg.search.oneshot import OneShotConfig, run_oneshot
from rtseg.search.proxy import ProxyConfig, run_proxy
from rtseg.search.staged import StagedConfig, run_staged


@dataclass(frozen=True)
class Strategy:
    name: str
    config: type[SearchSettings]
    run: Callable[..., SearchResult]
    about: str
    #: Config values this row sets over the dataclass's defaults (two rows may share one config).
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def field_names(self) -> set[str]:
        return {f.name for f in fields(self.config)}

    def make_config(self, **values: Any) -> SearchSettings:
        """The config from ``values`` over this row's defaults over the dataclass's; an unknown field is
        refused in one line naming the strategies that have it."""
        unknown = sorted(set(values) - self.field_names())
        if unknown:
            raise RtsegError(f"--strategy {self.name} has no setting {', '.join(unknown)}" + _who_has(unknown[0]))
        return self.config(**{**self.defaults, **values})


STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    Strategy("default", StagedConfig, run_staged,
             "the space's paper's gradient search, a one-shot supernet's best archs and the space's hand-designed net "
             "scaled to T seed an evolution decided by short training runs; the finalists are measured on the LUT's runtime"),
    Strategy("gradient", SearchConfig, run_search,
             "the space's paper's differentiable search alone (SSR loss and shrinking, CAS cost, DCNAS path sampling)"),
    Strategy("oneshot", OneShotConfig, run_oneshot,
             "a supernet trained on single paths, then evolution scored by its shared weights (ssr)"),
    Strategy("proxy", ProxyConfig, run_proxy,
             "evolution from uniform in-band draws (and --seed-arch), each arch scored by a short training run"),
    Strategy("oneshot+proxy", StagedConfig, run_staged,
             "the default without its gradient stage and hand-designed seed: one-shot finalists start the proxy evolution",
             defaults={"gradient_stage": False, "reference": False}),
)}
#: The strategy ``rtseg search`` and the quickstart run unless told otherwise: the one that measured best
#: (``search/README.md``).
DEFAULT_STRATEGY = "default"


def _who_has(name: str) -> str:
    owners = [s.name for s in STRATEGIES.values() if name in s.field_names()]
    return f" (it belongs to --strategy {', '.join(owners)})" if owners else ""


def get_strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise RtsegError(f"unknown --strategy {name!r}: choose {', '.join(STRATEGIES)}") from None


def run_strategy(name: str, cfg: SearchSettings, out_dir: str | Path, resume: bool = False,
                 reporter: Reporter | None = None) -> SearchResult:
    """Run strategy ``name`` with ``cfg`` (made by :meth:`Strategy.make_config`) into ``out_dir``."""
    strategy = get_strategy(name)
    if not isinstance(cfg, strategy.config):
        raise RtsegError(f"--strategy {name} takes a {strategy.config.__name__}, not a {type(cfg).__name__}")
    return strategy.run(cfg, Path(out_dir), resume=resume, reporter=reporter)


__all__ = ["DEFAULT_STRATEGY", "STRATEGIES", "Strategy", "get_strategy", "run_strategy"]
