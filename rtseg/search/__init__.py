"""Latency-constrained architecture search: the strategies (:mod:`rtseg.search.strategies`) and what
they share (:mod:`rtseg.search.common`)."""

from rtseg.search.common import SearchResult, SearchSettings
from rtseg.search.loop import GradientConfig, SearchConfig, run_search
from rtseg.search.strategies import DEFAULT_STRATEGY, STRATEGIES, Strategy, get_strategy, run_strategy

__all__ = ["DEFAULT_STRATEGY", "GradientConfig", "STRATEGIES", "SearchConfig", "SearchResult", "SearchSettings", "Strategy",
           "get_strategy", "run_search", "run_strategy"]
