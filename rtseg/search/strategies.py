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

import os
import shutil
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping

from rtseg.errors import RtsegError
from rtseg.reporting import Reporter
from rtseg.search.common import SearchResult, SearchSettings
from rtseg.rundir import claim_run_dir
from rtseg.search import loop, oneshot, proxy, staged
from rtseg.search.loop import SearchConfig, run_search
from rtseg.search.oneshot import OneShotConfig, run_oneshot
from rtseg.search.proxy import ProxyConfig, run_proxy
from rtseg.search.staged import StagedConfig, run_staged

#: What a search writes into its run folder: all of it is replaced by ``--overwrite``, removed when a
#: search into an empty folder fails before it saved anything, and nothing else is touched.
SEARCH_FILES = ("arch.json", "search.json", "config.json", "state.pt", "state.json", "calibration.json", "evolution.json",
                "evolution.png", "search_log.jsonl", "trajectory.json", "trajectories.png", "entropy.png", "supernet.pt",
                "supernet.json", "gradient", "oneshot", "proxy")
#: How ``rtseg search`` spells the config fields whose flag is not the field's name with dashes.
FIELD_FLAGS = {"shrink": "--no-shrink", "verify_latency": "--no-verify", "band": "--band-low", "seed_archs": "--seed-arch",
               "space_options": "--space-opt", "input_hw": "--input"}


def flag_of(name: str) -> str:
    """The command-line flag of config field ``name``."""
    return FIELD_FLAGS.get(name, "--" + name.replace("_", "-"))


#: What a search saves to resume from.
RESUMABLE = ("state.pt", "state.json", "calibration.json", "gradient", "oneshot", "proxy")


@dataclass(frozen=True)
class Strategy:
    name: str
    config: type[SearchSettings]
    run: Callable[..., SearchResult]
    about: str
    #: Config values this row sets over the dataclass's defaults (two rows may share one config).
    defaults: Mapping[str, Any] = field(default_factory=dict)
    #: Config fields a resumed run may change (limits and resources, not what is searched).
    may_differ: tuple[str, ...] = ()

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
             "scaled to T seed an evolution decided by short training runs; the finalists are measured on the LUT's runtime",
             may_differ=staged.RESUME_MAY_DIFFER),
    Strategy("gradient", SearchConfig, run_search,
             "the space's paper's differentiable search alone (SSR loss and shrinking, CAS cost, DCNAS path sampling)",
             may_differ=loop.RESUME_MAY_DIFFER),
    Strategy("oneshot", OneShotConfig, run_oneshot,
             "a supernet trained on single paths, then evolution scored by its shared weights (ssr)", may_differ=oneshot.RESUME_MAY_DIFFER),
    Strategy("proxy", ProxyConfig, run_proxy,
             "evolution from uniform in-band draws (and --seed-arch), each arch scored by a short training run",
             may_differ=proxy.RESUME_MAY_DIFFER),
    Strategy("oneshot+proxy", StagedConfig, run_staged,
             "the default without its gradient stage and hand-designed seed: one-shot finalists start the proxy evolution",
             defaults={"gradient_stage": False, "reference": False}, may_differ=staged.RESUME_MAY_DIFFER),
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
                 reporter: Reporter | None = None, overwrite: bool = False) -> SearchResult:
    """Run strategy ``name`` with ``cfg`` (made by :meth:`Strategy.make_config`) into ``out_dir``.

    The folder belongs to this search while it runs (:func:`rtseg.rundir.claim_run_dir`: locked; a
    finished or foreign folder refused unless ``resume`` with the same config or ``overwrite``); under
    torchrun rank 0 claims it for every rank."""
    strategy = get_strategy(name)
    if not isinstance(cfg, strategy.config):
        raise RtsegError(f"--strategy {name} takes a {strategy.config.__name__}, not a {type(cfg).__name__}")
    out = Path(out_dir)
    if os.environ.get("RANK", "0") != "0":
        return strategy.run(cfg, out, resume=resume, reporter=reporter)
    config = {"strategy": name, **cfg.to_dict()}
    folder = claim_run_dir(out, "search", config, resume=resume, overwrite=overwrite, may_differ=strategy.may_differ,
                           flags={name: flag_of(name) for name in config},
                           adopt=("config.json", "state.pt", "state.json", "search.json"), start=False)
    try:
        if folder.replacing and not folder.resuming:
            for f in SEARCH_FILES:
                p = out / f
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                elif p.exists() or p.is_symlink():
                    p.unlink()
        folder.start()
        try:
            result = strategy.run(cfg, out, resume=resume, reporter=reporter)
        except BaseException:
            if not any((out / f).exists() for f in RESUMABLE):  # nothing to resume from: as if never started
                folder.discard(SEARCH_FILES)
            raise
        folder.finish()
        return result
    finally:
        folder.release()


__all__ = ["DEFAULT_STRATEGY", "FIELD_FLAGS", "flag_of", "STRATEGIES", "Strategy", "get_strategy", "run_strategy"]
